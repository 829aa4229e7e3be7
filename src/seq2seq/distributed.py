"""Data parallelism under torchrun: the one module that knows there may be other processes.

`torchrun --nproc-per-node N -m seq2seq train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set. `start` joins them into one process group (gloo on CPU; NCCL on CUDA, each
process on GPU LOCAL_RANK) and `wrap` puts the model under DistributedDataParallel, which
all-reduces the gradients during backward. The trainer then asks one question, `is_main()`:
process 0 logs, validates and writes the run directory. Every other function here is what it
says with many processes and a no-op with one, so the trainer reads the same either way.

Host-side messages (the stop request, process 0's validation figures, barriers) go through a
gloo group even when the gradients go through NCCL: reading them never waits for the GPU. A
process that dies closes its connections, so the others' next collective fails at once; one
that hangs is given up after the timeout passed to `start`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from seq2seq.errors import Seq2SeqError

T = TypeVar("T")

_host_group = None  # gloo: the group for host-side messages (None: the default group is gloo)

# Words in the errors of a collective whose peer is gone or stuck (gloo's "Connection reset by
# peer", NCCL's watchdog "Timeout"), as opposed to a bug in the training step.
_LOST_PEER_WORDS = ("gloo", "nccl", "connection", "timed out", "timeout", "broken pipe")


class ProcessLost(Seq2SeqError):
    """Another training process died or stopped answering."""


def launched() -> bool:
    """Whether torchrun (or anything setting its variables) started this process. One process
    under torchrun joins a group of one too: the same code path as many, so that
    `torchrun --nproc-per-node 1` checks NCCL and DDP on a machine with a single GPU."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(device: torch.device, timeout_seconds: float) -> torch.device:
    """Join the other processes, if there are any, and return this process's device: under
    torchrun on GPUs, cuda:LOCAL_RANK. A collective that waits longer than `timeout_seconds`
    for another process fails."""
    global _host_group
    if not launched():
        return device
    if device.type not in ("cpu", "cuda"):
        raise Seq2SeqError(
            f"training with several processes runs on cpu (gloo) or cuda (NCCL), not "
            f"{device.type}; use device=cpu or device=cuda"
        )
    timeout = datetime.timedelta(seconds=timeout_seconds)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise Seq2SeqError(
                f"process {local_rank} of this machine has no GPU of its own (there are "
                f"{torch.cuda.device_count()}); start at most that many with "
                f"torchrun --nproc-per-node, or use device=cpu"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
        _host_group = dist.new_group(backend="gloo", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    if not is_main():  # process 0 speaks for all; the others only report their own errors
        logging.getLogger("seq2seq").setLevel(logging.ERROR)
    return device


@contextlib.contextmanager
def session() -> Iterator[None]:
    """The lifetime of a training run: the group is left at the end, and a collective that
    failed because another process died or hung becomes a one-line error (non-zero exit)."""
    global _host_group
    try:
        yield
    except RuntimeError as error:
        if not _joined() or not _lost_peer(error):
            raise
        raise ProcessLost(
            f"process {rank()} of {world_size()} lost contact with the others "
            f"({str(error).splitlines()[0][:200]}); the last whole checkpoint is in last/: "
            f"continue with resume=true"
        ) from None
    finally:
        if _joined():
            dist.destroy_process_group()
            _host_group = None


def _joined() -> bool:
    """Whether this process is in a process group (PyTorch builds without torch.distributed
    never are)."""
    return dist.is_available() and dist.is_initialized()


def _lost_peer(error: RuntimeError) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return False
    message = str(error).lower()
    return isinstance(error, dist.DistError) or any(w in message for w in _LOST_PEER_WORDS)


def rank() -> int:
    """This process's number, from 0; before joining and after leaving the group, torchrun's."""
    if _joined():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if _joined() else 1


def is_main() -> bool:
    """Am I process 0, the one that logs, validates and writes the run directory?"""
    return rank() == 0


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the training step calls it: under DDP with several processes, the model
    itself with one. No device_ids: DDP would move every input to the GPU, the source lengths
    too, which packing reads on the CPU."""
    if not _joined():
        return model
    return DistributedDataParallel(model)


def accumulating(model: torch.nn.Module, more_to_come: bool):
    """The context of one micro-batch's forward and backward. Before a step's last micro-batch
    DDP does not all-reduce: gradients add up locally and go out once, with the last."""
    if more_to_come and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor summed over all processes, in place (on the device: NCCL needs no host
    sync)."""
    if _joined():
        dist.all_reduce(tensor)
    return tensor


def max_over_processes(value: int) -> int:
    """The largest of every process's `value`; a host-side message."""
    if not _joined():
        return value
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_host_group)
    return int(tensor.item())


class StoppedOnMain(Seq2SeqError):
    """Process 0 failed at work the others were waiting for; it reports its own error."""


def from_main(compute: Callable[[], dict]) -> dict:
    """`compute()` run by process 0 alone, its result (JSON values) sent to every process; the
    others wait for it. If it fails, process 0 raises its error and every other process a
    one-line `StoppedOnMain` at once, rather than waiting out `train.distributed_timeout`
    for a process that has left. JSON, not torch's pickled objects: nothing here unpickles."""
    if not _joined():
        return compute()
    outcome, failure = None, None
    if is_main():
        try:
            outcome = {"result": compute()}
        except BaseException as error:  # told to every process before it is raised here
            failure = error
            said = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            outcome = {"failed": said}
    outcome = _broadcast_json(outcome)
    if failure is not None:
        raise failure
    if "failed" in outcome:
        raise StoppedOnMain(f"process 0 stopped: {outcome['failed']}")
    return outcome["result"]


def on_main(compute: Callable[[], T]) -> T | None:
    """`compute()` run by process 0 alone while the others wait (its result on process 0, None
    on the others); a failure stops every process at once, as in `from_main`."""
    results = []
    from_main(lambda: results.append(compute()) or {})
    return results[0] if results else None


def _broadcast_json(value) -> dict:
    """Process 0's `value` (JSON), received by every process."""
    payload = json.dumps(value).encode() if is_main() else b""
    size = torch.tensor([len(payload)], dtype=torch.int64)
    dist.broadcast(size, src=0, group=_host_group)
    data = torch.zeros(int(size.item()), dtype=torch.uint8)
    if is_main():
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    dist.broadcast(data, src=0, group=_host_group)
    return json.loads(data.numpy().tobytes().decode())


def barrier() -> None:
    """Wait until every process is here."""
    if _joined():
        dist.barrier(group=_host_group)
