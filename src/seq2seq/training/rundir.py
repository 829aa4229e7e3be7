"""The run directory: checked before anything changes, created by process 0, and the
checkpoints saved into it.

    runs/NAME/config.yaml     the effective config
    runs/NAME/last/           resumable at the exact step (weights, optimizer, trainer.json)
    runs/NAME/best/           the best epoch by `train.best_metric`
    runs/NAME/epoch-K/        the last `train.keep_checkpoints` epochs (for `seq2seq average`)
    runs/NAME/log.jsonl       one record per epoch (report.py)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from seq2seq import checkpoint, writing
from seq2seq.config import Config, ConfigError, config_to_dict
from seq2seq.errors import CheckpointError


def check(config: Config) -> None:
    """Never train over a finished model by accident; never resume what is not there."""
    run_dir, last = config.run_dir, config.run_dir / "last"
    if config.resume:
        try:
            checkpoint.resolve(last)  # also finds a save interrupted mid-swap
        except CheckpointError:
            raise ConfigError(
                f"cannot resume: {last} does not exist; start the run without resume=true"
            ) from None
        return
    if holds_checkpoint(run_dir) and not config.overwrite:
        raise ConfigError(
            f"run directory {run_dir} already holds a run; continue it with "
            f"resume=true, replace it with overwrite=true, or pick another name=..."
        )


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a model. One without (a start that failed, or stopped,
    before its first save) is as good as empty: it holds nothing that a new start would lose."""
    if checkpoint.epoch_checkpoints(run_dir):
        return True
    for name in ("last", "best"):
        try:
            checkpoint.resolve(run_dir / name)  # also finds a save interrupted mid-swap
        except CheckpointError:
            continue
        return True
    return False


def create(config: Config) -> None:
    """Make the directory and write the effective config; with overwrite=true (not resuming),
    the replaced run goes, all of it."""
    run_dir = writing.make_dirs(config.run_dir)
    if not config.resume:
        (run_dir / "log.jsonl").unlink(missing_ok=True)
        for name in ("best", "last", "tensorboard"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        for kept in checkpoint.epoch_checkpoints(run_dir):
            shutil.rmtree(kept)
    writing.write_file(
        run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False)
    )


def save(
    config: Config,
    model: torch.nn.Module,
    vocabs: tuple,
    meta: dict,
    *,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    best: bool,
    keep_epoch: bool,
) -> None:
    """Save epoch-K/ (if `keep_epoch`), last/ and (if `best`) best/. epoch-K/ goes first: a
    stop before last/ redoes the epoch, and writes it again."""
    run_dir = config.run_dir
    if keep_epoch and config.train.keep_checkpoints:
        checkpoint.save(run_dir / f"epoch-{meta['epoch']}", model, config, vocabs, meta)
        for old in checkpoint.epoch_checkpoints(run_dir)[: -config.train.keep_checkpoints]:
            checkpoint.remove(old)
    checkpoint.save(
        run_dir / "last",
        model,
        config,
        vocabs,
        meta,
        optimizer=optimizer,
        trainer_state=trainer_state,
    )
    if best:
        checkpoint.save(run_dir / "best", model, config, vocabs, meta)
