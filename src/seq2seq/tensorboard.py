"""TensorBoard logging (`train.tensorboard: true`): every number of each epoch's log line, as
scalars under `runs/NAME/tensorboard/`, with the epoch as their step.

The `tensorboard` package is an optional extra (`pip install -e ".[tensorboard]"`); asking for
it without the package is refused before training starts.
"""

from __future__ import annotations

import math
from pathlib import Path

from seq2seq.config import ConfigError


class ScalarLog:
    """Writes log records as TensorBoard scalars; does nothing when not enabled."""

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

    def write(self, record: dict) -> None:
        """Every finite number of an epoch's record (booleans and text left out)."""
        if self.writer_class is None:
            return
        if self.writer is None:
            self.writer = self.writer_class(log_dir=str(self.folder))
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key != "epoch" and math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
