"""Data-parallel training, gradient accumulation and the host-sync cadence.

The multi-process tests start 2 real gloo processes on the CPU, with torchrun or with its
environment variables set by hand (to signal or kill one process), on the tiny recipe over
the first 704 Multi30k pairs: 11 batches of 64 an epoch, so the epoch's last update (2
batches each) is short, and one process sits it out. Each run is bounded in time.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS, ROOT, assert_error, cli, isolated
from helpers import (
    INF,
    NAN,
    assert_same_tensors,
    inject,
    records,
    same_weights,
    tiny,
    write_split,
)
from safetensors.torch import load_file

from seq2seq import checkpoint
from seq2seq.config import ConfigError, load_config
from seq2seq.device import fixed_scale, grad_scaler
from seq2seq.errors import TrainingDiverged
from seq2seq.training import Trainer
from seq2seq.training.loop import MAX_BAD_STEPS_IN_ROW
from seq2seq.training.state import Progress, accumulation, capture, restore
from seq2seq.training.step import counts_as_finite

TINY = CONFIGS / "tiny.yaml"
EPOCHS = 4  # long enough to signal or kill a process in the middle of a run
RECIPE = ["train.precision=float32", "train.num_threads=1", f"train.epochs={EPOCHS}"]
TIMEOUT = 300  # seconds any one multi-process run may take


@pytest.fixture(scope="module")
def parallel_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parallel-corpus")
    write_split(folder, "train", 0, 704)
    write_split(folder, "val", 0, 50)
    return folder


def overrides(data_dir: Path, output_dir: Path, *more: str) -> list[str]:
    return [f"output_dir={output_dir}", f"data.dir={data_dir}", *RECIPE, *more]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment (the tests' private cache) with these sources first."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_processes(argvs: list[list[str]], logs: Path) -> list[subprocess.Popen]:
    """`python -m seq2seq ARGV` once per process, with torchrun's variables set by hand (so
    that a test can signal one process); stdout and stderr go to logs/rank-R.{out,err}."""
    port, processes = free_port(), []
    logs.mkdir(parents=True, exist_ok=True)
    for rank, argv in enumerate(argvs):
        env = environment(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(len(argvs)),
            LOCAL_WORLD_SIZE=str(len(argvs)),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        with (
            open(logs / f"rank-{rank}.out", "wb") as out,
            open(logs / f"rank-{rank}.err", "wb") as err,
        ):
            command = [sys.executable, "-m", "seq2seq", *map(str, argv)]
            processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=err))
    return processes


def wait_all(processes: list[subprocess.Popen], timeout: float = TIMEOUT) -> list[int]:
    """Every process's exit code; any still running after `timeout` is killed (and the test
    fails): no test leaves a process behind."""
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_for(path: Path, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        for rank, process in enumerate(processes):
            assert process.poll() is None, (logs / f"rank-{rank}.err").read_text()
        assert time.monotonic() < deadline, f"{path} did not appear in time"
        time.sleep(0.02)


def stderr(logs: Path, rank: int) -> str:
    return (logs / f"rank-{rank}.err").read_text()


@pytest.fixture(scope="module")
def accumulated(parallel_corpus, tmp_path_factory) -> Path:
    """One process accumulating 2 batches per update: what 2 processes must reproduce."""
    output_dir = tmp_path_factory.mktemp("accumulated")
    config = load_config(TINY, overrides(parallel_corpus, output_dir, "train.accumulate=2"))
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        Trainer(config).train()
    return config.run_dir


@pytest.fixture(scope="module")
def two_processes(parallel_corpus, tmp_path_factory) -> tuple[Path, str]:
    """`torchrun --nproc-per-node 2 -m seq2seq train ...`, as a user runs it; the run
    directory and the launcher's output."""
    output_dir = tmp_path_factory.mktemp("two-processes")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "seq2seq", "train", str(TINY)]
    command += overrides(parallel_corpus, output_dir)
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        done = subprocess.run(
            command, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
        )
    assert done.returncode == 0, done.stderr
    return output_dir / "tiny", done.stdout + done.stderr


@pytest.mark.slow
def test_two_processes_train_as_one_process_accumulating_two_batches(two_processes, accumulated):
    run, output = two_processes
    mine, theirs = (load_file(r / "last" / "model.safetensors") for r in (run, accumulated))
    for name in mine:
        assert torch.allclose(mine[name], theirs[name], rtol=0, atol=1e-6), name
    # 11 batches an epoch in updates of 2 batches: 6 updates, the last of one batch.
    assert [(r["epoch"], r["step"]) for r in records(run)] == [
        (epoch, 6 * epoch) for epoch in range(1, EPOCHS + 1)
    ]
    assert [r["step"] for r in records(accumulated)] == [r["step"] for r in records(run)]
    for key in ("train_loss", "val_loss", "val_bleu"):
        assert records(run)[-1][key] == pytest.approx(records(accumulated)[-1][key], abs=1e-5)
    # Process 0 alone logs: one epoch line and one "trained:" line, not one per process.
    assert output.count("epoch   1 |") == 1 and output.count("trained: ") == 1, output
    assert "2 per update (world size 2 x accumulate 1)" in output


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_and_resuming_is_exact(
    parallel_corpus, two_processes, accumulated, tmp_path, caplog
):
    """SIGTERM to process 1 stops both after the same step; process 0 alone writes (process 1
    is told another output_dir, which must stay absent), and resuming, with 2 processes or
    with 1, ends where the unbroken runs end."""
    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    argv = ["train", TINY, *overrides(parallel_corpus, tmp_path)]
    processes = start_processes([argv, [*argv, f"output_dir={elsewhere}"]], logs)
    run = tmp_path / "tiny"
    wait_for(run / "log.jsonl", processes, logs)  # an epoch is done: training is under way
    processes[1].send_signal(signal.SIGTERM)
    assert wait_all(processes) == [130, 130], stderr(logs, 0) + stderr(logs, 1)

    assert not elsewhere.exists()
    for rank in (0, 1):
        last_line = stderr(logs, rank).splitlines()[-1]
        assert last_line.startswith("seq2seq: stopped by SIGTERM at epoch "), last_line
    meta = checkpoint.load(run / "last").meta
    assert meta["metrics"] == {"interrupted": "SIGTERM"} and meta["step"] < 6 * EPOCHS
    assert f"step {meta['step']};" in stderr(logs, 1).splitlines()[-1]  # the same step
    one_process = tmp_path / "one-process"  # the same stop, to be resumed by one process
    shutil.copytree(run, one_process / "tiny")

    resumed = start_processes([[*argv, "resume=true"]] * 2, tmp_path / "logs-resumed")
    assert wait_all(resumed) == [0, 0], stderr(tmp_path / "logs-resumed", 0)
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(run / "last" / name, two_processes[0] / "last" / name)
    assert [r["epoch"] for r in records(run)] == list(range(1, EPOCHS + 1))

    config = load_config(TINY, [*overrides(parallel_corpus, one_process), "resume=true"])
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        Trainer(config).train()
    assert "resuming with 1 process x accumulate 2 = 2 batches per update (saved: 2 " in (
        caplog.text
    )
    mine, theirs = (
        load_file(r / "last" / "model.safetensors") for r in (config.run_dir, accumulated)
    )
    for name in mine:
        assert torch.allclose(mine[name], theirs[name], rtol=0, atol=1e-6), name


@pytest.mark.slow
def test_killing_one_process_ends_the_other_and_leaves_last_loadable(parallel_corpus, tmp_path):
    logs = tmp_path / "logs"
    argv = ["train", TINY, *overrides(parallel_corpus, tmp_path, "train.epochs=1000")]
    processes = start_processes([argv, argv], logs)
    wait_for(tmp_path / "tiny" / "last", processes, logs)
    processes[0].kill()  # the process that writes, at any moment, perhaps mid-save
    killed = time.monotonic()
    codes = wait_all(processes, timeout=60)
    assert time.monotonic() - killed < 60
    assert codes[0] == -signal.SIGKILL and codes[1] not in (0, None)
    assert "lost contact with the others" in stderr(logs, 1).splitlines()[-1]
    assert checkpoint.load(tmp_path / "tiny" / "last").meta["step"] >= 6


@pytest.mark.slow
def test_a_data_error_on_process_0_stops_every_process_at_once(parallel_corpus, tmp_path):
    """Process 0 prepares the corpus while the others wait; its error reaches them at once,
    not after train.distributed_timeout."""
    logs = tmp_path / "logs"
    bad_data = ["data.filter_long=true", "data.max_length=1", "train.distributed_timeout=600"]
    argv = ["train", TINY, *overrides(parallel_corpus, tmp_path, *bad_data)]
    started = time.monotonic()
    with isolated(tmp_path / "cache"):
        codes = wait_all(start_processes([argv, argv], logs), timeout=120)
    assert time.monotonic() - started < 120 and codes == [2, 2]
    assert stderr(logs, 0).splitlines()[-1].startswith("seq2seq: error: no training pair is left")
    last = stderr(logs, 1).splitlines()[-1]
    assert last.startswith("seq2seq: error: process 0 stopped: no training pair is left"), last
    assert not (tmp_path / "tiny").exists()  # the data is checked before the run folder exists


# Gradient accumulation, without processes.

MODELS = {
    "lstm": ["model.embedding_size=16", "model.hidden_size=24", "model.num_layers=2"],
    "transformer": [
        "model.type=transformer",
        "model.d_model=16",
        "model.heads=2",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "model.ff_size=32",
    ],
}


@pytest.mark.parametrize("model", MODELS)
def test_accumulating_k_batches_gives_the_gradient_of_one_k_times_larger_batch(
    corpus,  # noqa: F811 (the fixture)
    tmp_path,
    model,
):
    """Two micro-batches of different token counts (so that averaging their two means would
    differ) against one batch holding both: the same gradient, the same reported loss."""
    settings = [f"data.dir={corpus}", "data.train_limit=96", f"output_dir={tmp_path}"]
    settings += ["model.dropout=0.0", "train.clip_norm=1e9", "train.precision=float32"]
    settings += [
        "train.teacher_forcing_ratio=1.0",
        "train.batch_size=32",
        "train.label_smoothing=0.1",
    ]
    trainer = Trainer(load_config(None, [*settings, *MODELS[model]]))
    first, second = sorted(trainer._epoch_batches(trainer.rng)[:2], key=trainer._target_tokens)
    assert trainer._target_tokens(first) < trainer._target_tokens(second)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    gradients, losses = [], []
    for batches, accumulate in (([first, second], 2), ([np.concatenate([first, second])], 1)):
        trainer.model.load_state_dict(weights)
        trainer.accumulate, trainer.progress = accumulate, Progress()
        trainer._run_updates(batches, len(batches), stop={"signal": None})  # one update
        gradients.append([p.grad.clone() for p in trainer.model.parameters()])
        losses.append(trainer.progress.epoch_loss / trainer.progress.epoch_tokens)
    for accumulated, whole in zip(*gradients, strict=True):
        assert torch.allclose(accumulated, whole, rtol=1e-5, atol=1e-7)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert max(g.abs().max() for g in gradients[0]) > 1e-3  # a gradient worth comparing


def test_accumulate_and_the_new_keys_are_checked():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["train.accumulate=0", "train.sync_every=0", "train.precision=fp16"])
    message = str(error.value)
    assert "train.accumulate=0 must be at least 1" in message
    assert "train.sync_every=0 must be at least 1 or null" in message
    assert "one of auto, float32, bfloat16, float16" in message
    config = load_config(None)
    assert (config.train.accumulate, config.train.sync_every) == (1, None)


def test_float16_on_the_cpu_is_one_line(corpus, tmp_path, capsys):  # noqa: F811
    argv = ["train", TINY, f"data.dir={corpus}", f"output_dir={tmp_path}", "device=cpu"]
    code = cli([*argv, "train.precision=float16"])
    assert_error(capsys, code, "train.precision=float16 needs a CUDA GPU", "bfloat16 or float32")


@pytest.mark.parametrize(
    ("saved", "now", "expected"),
    [
        ((2, 1, 1), (2, 1), (1, None)),  # the same world size: exactly as before
        ((2, 1, 1), (1, 1), (2, "1 process x accumulate 2 = 2 batches per update")),
        ((2, 2, 2), (4, 2), (1, "4 processes x accumulate 1 = 4 batches per update")),
        ((2, 1, 1), (3, 1), (1, "an update now covers 3 batches, not 2")),
        ((2, 1, 1), (2, 3), (3, "an update now covers 6 batches, not 2")),  # asked for
    ],
)
def test_resuming_at_another_world_size_keeps_the_update_where_it_can(saved, now, expected):
    world_size, accumulate, configured = saved
    progress = Progress(world_size=world_size, accumulate=accumulate)
    kept, note = accumulation(progress, now[0], now[1], configured)
    assert kept == expected[0]
    assert note is None if expected[1] is None else expected[1] in note


# Reading the figures every N steps.


def test_reading_every_few_steps_trains_and_counts_as_every_step(corpus, tmp_path):  # noqa: F811
    """On the CPU the figures are read every step by default; every 4 steps, the same
    weights, the same skipped steps and the same logged loss."""
    runs = {}
    for sync_every in (1, 4):
        trainer = Trainer(
            tiny(
                corpus,
                tmp_path / str(sync_every),
                "train.epochs=1",
                f"train.sync_every={sync_every}",
            )
        )
        assert trainer.sync_every == sync_every
        before = inject(trainer, {3: NAN, 6: NAN})
        runs[sync_every] = trainer.train(), before, trainer.model.state_dict()
    (record, before, weights), (record_4, before_4, weights_4) = runs[1], runs[4]
    assert record["skipped_steps"] == record_4["skipped_steps"] == 2
    assert same_weights(before_4[3], before_4[4]) and not same_weights(before_4[4], before_4[5])
    assert record["train_loss"] == record_4["train_loss"]
    assert same_weights(weights, weights_4)


def test_non_finite_steps_in_a_row_stop_training_at_the_next_read(corpus, tmp_path):  # noqa: F811
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1", "train.sync_every=4"))
    inject(trainer, {step: NAN for step in range(1, 10)})
    with pytest.raises(TrainingDiverged, match=re.escape(f"(step {MAX_BAD_STEPS_IN_ROW});")):
        trainer.train()
    # Steps 1 to 5 (from 0) made 5 in a row; the read after the 8th step found them.
    assert trainer.step == 8 and trainer.progress.bad_steps == MAX_BAD_STEPS_IN_ROW


# float16's gradient scaler (CUDA only; its logic runs on the CPU too).


@pytest.mark.parametrize(
    ("precision", "counted"), [("float16", [False, True]), ("float32", [True, True])]
)
def test_in_float16_an_overflowing_gradient_is_the_scalers_and_not_a_bad_step(precision, counted):
    """A finite loss with an infinite gradient norm: in float16 the scaler skips the step
    and lowers its scale, which is routine and not counted; elsewhere it is a bad step. A
    non-finite loss always counts."""
    bad = [not counts_as_finite(loss, norm, precision) for loss, norm in ((2.0, INF), (NAN, 1.0))]
    assert bad == counted


def test_float16_s_scaler_is_saved_and_restored_and_the_others_are_not(tmp_path):
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], fused=True)
    scaler = grad_scaler("float16", torch.device("cpu"))
    for gradient in (INF, 1.0, 1.0):  # an overflow halves the scale; good steps are counted
        scaler.scale((weight * gradient).sum()).backward()
        scaler.step(optimizer)
        scaler.update(fixed_scale("float16"))
        optimizer.zero_grad()
    state = json.loads(json.dumps(capture(Progress(), random.Random(0), torch.Generator(), scaler)))
    assert state["grad_scaler"]["scale"] == 2.0**15
    assert "grad_scaler" not in capture(Progress(), random.Random(0), torch.Generator())

    again = grad_scaler("float16", torch.device("cpu"))
    restore(state, random.Random(), torch.Generator(), tmp_path, again)
    assert again.state_dict() == scaler.state_dict()
    assert grad_scaler("float32", torch.device("cpu")).get_scale() == 1.0
    assert fixed_scale("float32") == 1.0 and fixed_scale("float16") is None


def test_one_process_under_torchrun_joins_a_group_of_one_and_none_without_it(monkeypatch):
    """`torchrun --nproc-per-node 1` takes the many-process path (a process group, DDP), so a
    single-GPU machine can check it; a plain `seq2seq train` joins nothing."""
    from torch.nn.parallel import DistributedDataParallel

    from seq2seq import distributed

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    model = torch.nn.Linear(2, 2)
    assert distributed.start(torch.device("cpu"), 60) == torch.device("cpu")
    assert not torch.distributed.is_initialized() and distributed.wrap(model) is model
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with distributed.session():
        distributed.start(torch.device("cpu"), 60)
        assert torch.distributed.is_initialized() and distributed.world_size() == 1
        assert isinstance(distributed.wrap(model), DistributedDataParallel)
        assert distributed.is_main()
    assert not torch.distributed.is_initialized()
