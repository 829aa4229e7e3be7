"""What each epoch reports, behind one `Report.write(record)`: the console line, a line of
`log.jsonl` in the run directory, and (`train.tensorboard: true`) every number of the record
as a TensorBoard scalar under `tensorboard/`, with the epoch as its step.

An epoch has one record. A fractional last epoch (`train.epochs=2.5`) that a resume later
completes is reported again: its new record replaces the old one in `log.jsonl`, and
TensorBoard is told to drop the old points (`purge_step`), so plots draw one point per epoch.

The `tensorboard` package is an optional extra (`pip install -e ".[tensorboard]"`); asking for
it without the package is refused before training starts. A record is reported after its
checkpoint is saved, so a write that fails (a full disk) ends the run in one line with the
epoch safe, to continue with `resume=true`.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

from tqdm import tqdm

from seq2seq import distributed, writing
from seq2seq.config import ConfigError


class Report:
    """Writes epoch records; does nothing where `enabled` is false (processes but the first)."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, enabled: bool = True):
        self.path = run_dir / "log.jsonl"
        self.enabled = enabled
        # Every process checks for the package, so all refuse alike; only the first writes.
        self.scalars = ScalarLog(run_dir, tensorboard)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        replaced = self._write_line(record)
        self.scalars.write(record, purge=replaced)
        tqdm.write(console_line(record))

    def close(self) -> None:
        self.scalars.close()

    def _write_line(self, record: dict) -> bool:
        """Add the record, or replace the epoch's earlier one; says whether it replaced. The
        log is written whole (it has a line an epoch), so a full disk never leaves half a
        line."""
        earlier = read_log(self.path)
        kept = [line for line in earlier if line.get("epoch") != record["epoch"]]
        writing.write_file(self.path, "".join(json.dumps(line) + "\n" for line in [*kept, record]))
        return len(kept) < len(earlier)


def start_line(config, device, precision: str, data, batches: int, accumulate: int) -> str:
    """What a run trains, where, and in what batches: the line it starts with."""
    world_size = distributed.world_size()
    about = "about " if config.train.batch_unit == "tokens" else ""
    return (
        f"training {config.name} on {device} in {precision}: {len(data.train)} examples, "
        f"{about}{batches} batches per epoch, {world_size * accumulate} per update "
        f"(world size {world_size} x accumulate {accumulate}), vocabularies "
        f"{len(data.src_vocab)} / {len(data.tgt_vocab)}"
    )


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def console_line(record: dict) -> str:
    def figure(key: str, width: int) -> str:  # "-" for a figure the epoch skipped
        value = record.get(key)
        return "-".rjust(width) if value is None else f"{value:{width}.2f}"

    return (
        f"epoch {record['epoch']:>3} | train loss {record['train_loss']:.3f} "
        f"ppl {record['train_ppl']:7.2f} | val loss {record['val_loss']:.3f} "
        f"ppl {record['val_ppl']:7.2f} | free ppl {figure('val_free_ppl', 7)} | "
        f"BLEU {figure('val_bleu', 5)} (tok {figure('val_bleu_tokenized', 5)}) | "
        f"{record['seconds']:.0f}s {record['tokens_per_second']:.0f} tok/s"
        + (" | best" if record.get("best") else "")
    )


class ScalarLog:
    """Writes records as TensorBoard scalars; does nothing when not enabled."""

    def __init__(self, run_dir: Path, enabled: bool):
        """Checks at once that the package is there; the folder is made at the first write."""
        self.writer = self.writer_class = None
        self.folder = run_dir / "tensorboard"
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.tensorboard=true needs the tensorboard package; install it with "
                "pip install 'seq2seq[tensorboard]', or set train.tensorboard=false"
            ) from None
        self.writer_class = SummaryWriter
        _quiet_writer_threads()

    def write(self, record: dict, *, purge: bool = False) -> None:
        """Every finite number of an epoch's record (booleans and text left out). `purge`
        hides the points written before at this epoch and later."""
        if self.writer_class is None:
            return
        with writing.errors(self.folder):
            self._write(record, purge)

    def _write(self, record: dict, purge: bool) -> None:
        if purge and self.writer is not None:
            self.writer.close()
        if self.writer is None or purge:
            purge_step = record["epoch"] if purge else None
            self.writer = self.writer_class(log_dir=str(self.folder), purge_step=purge_step)
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key != "epoch" and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            with writing.errors(self.folder):
                self.writer.close()


def _quiet_writer_threads() -> None:
    """TensorBoard writes in a thread of its own, which re-raises an I/O error for `threading`
    to print as a traceback; the same error reaches the training thread at the next flush,
    where it becomes one line. So the thread's copy is not printed."""
    if getattr(threading.excepthook, "quiets_tensorboard", False):
        return  # installed by an earlier run in this process
    previous = threading.excepthook

    def hook(args) -> None:
        writer_thread = type(args.thread).__name__ == "_AsyncWriterThread"
        if not (writer_thread and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.quiets_tensorboard = True
    threading.excepthook = hook
