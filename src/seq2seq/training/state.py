"""What a run keeps between sessions: the training progress that an exact resume needs, the
checks before resuming, and which checkpoint is the best.

The loop (loop.py) owns the order of things and is the one that changes the progress; this
module defines the state it carries across a stop, and saves and restores it.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq import checkpoint, distributed
from seq2seq.config import (
    Config,
    ConfigError,
    DataConfig,
    changed_keys,
    config_diff,
    config_to_dict,
)
from seq2seq.data.prepare import prepared_path
from seq2seq.data.vocab import Vocab
from seq2seq.errors import CheckpointError

log = logging.getLogger(__name__)

# Config keys that may change when a run is resumed. `name` and `output_dir` only say where
# the run directory is (a moved run resumes); `model.cpu_fast_path` computes the same model;
# `train.patience` and `train.keep_checkpoints` only decide when to stop and what to keep;
# `train.sync_every` and `train.distributed_timeout` only when to look; `train.accumulate`
# changes the batch of an update, as a new number of processes does (see `accumulation`).
# Data keys are not listed: see `prepares_alike`.
RESUMABLE_CHANGES = {
    "resume",
    "overwrite",
    "train.epochs",
    "train.patience",
    "train.keep_checkpoints",
    "device",
    "train.num_threads",
    "train.accumulate",
    "train.sync_every",
    "train.distributed_timeout",
    "name",
    "output_dir",
    "model.cpu_fast_path",
    "train.tensorboard",
    "train.bleu_from_epoch",  # what validation measures, never what is trained
    "train.free_running_validation",
}

# The data keys that a run reads besides its prepared corpus: which files, in what format and
# columns (the corpus's key holds their digests, not their paths), each corpus's share of an
# epoch, the evaluation splits (or the held-out ones), and what reading does to every pair
# (the source's reversal, the cut to max_length).
READ_BY_THE_RUN = frozenset(
    {
        *("corpus", "dir", "train", "columns", "train_weights"),
        *("valid", "test", "holdout", "holdout_by", "reverse_source", "max_length"),
    }
)


@dataclass
class Progress:
    """Where training stands: counters, the running loss of the epoch, and the best score. Only
    the Trainer changes it."""

    epoch: int = 0
    step: int = 0
    position: int = 0  # batches of the current epoch already trained on, by all processes
    epoch_rng: tuple = ()  # the batch-order RNG's state when the epoch began
    epoch_loss: float = 0.0
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0  # training time of the epoch so far, over every session
    bad_steps: int = 0
    oom_batches: int = 0
    best: float | None = None  # the best score so far, higher is better (see BestCheckpoint)
    best_epoch: int = 0  # the epoch that scored it; patience counts the epochs since
    world_size: int = 1  # processes, and batches each accumulates per update: an update
    accumulate: int = 1  # covers world_size x accumulate batches


def capture(
    progress: Progress,
    batch_rng: random.Random,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """Everything beyond weights and optimizer that an exact resume needs, as JSON values:
    the progress, every random number generator the run draws from, and float16's gradient
    scaler (given only in float16: at other precisions its scale stays 1). Process 0's alone:
    the others hold the same progress, and their random draws are seeded per batch
    (step.BatchSeeds), so no process has a random state of its own to keep."""
    state = asdict(progress)
    state.update(
        batch_rng=batch_rng.getstate(),
        generator=generator.get_state().tolist(),
        torch_rng=torch.get_rng_state().tolist(),
        python_rng=random.getstate(),
        numpy_rng=_numpy_state(),
    )
    if scaler is not None:
        state["grad_scaler"] = scaler.state_dict()
    if torch.cuda.is_available():  # this process's GPU: asking all would occupy each of them
        state["cuda_rng"] = [torch.cuda.get_rng_state().tolist()]
    return state


def restore(
    state: dict,
    batch_rng: random.Random,
    generator: torch.Generator,
    source: Path,
    scaler: torch.amp.GradScaler | None = None,
) -> Progress:
    """The progress saved by `capture`, with every random number generator set back, and
    float16's gradient scaler if one is given and one was saved."""
    if "best_epoch" not in state:  # saved before early stopping existed: count from here
        state = {**state, "best_epoch": state.get("epoch")}
    # Saved before data parallelism, and before epochs kept their time across a resume.
    state = {"world_size": 1, "accumulate": 1, "epoch_seconds": 0.0, **state}
    try:
        progress = Progress(**{key: state[key] for key in Progress.__dataclass_fields__})
        progress.epoch_rng = _tuplify(state["epoch_rng"])
        batch_rng.setstate(_tuplify(state["batch_rng"]))
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        random.setstate(_tuplify(state["python_rng"]))
        np.random.set_state(_numpy_unstate(state["numpy_rng"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{source}/trainer.json lacks part of the training state ({error}); "
            f"the checkpoint is damaged"
        ) from None
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda_rng"][0], dtype=torch.uint8))
    return progress


def resume(
    config: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_rng: random.Random,
    generator: torch.Generator,
    *,
    scaler: torch.amp.GradScaler | None,
    vocabs: tuple[Vocab, Vocab],
) -> tuple[Progress, int]:
    """Load `last/` of the run into the model, the optimizer, the random number generators
    and the scaler, after checking that it continues the same run. Returns the saved progress
    and the batches each process accumulates per update from now on."""
    device = next(model.parameters()).device
    last = checkpoint.load(config.run_dir / "last", device)
    check_resumable(last, config, vocabs)
    model.load_state_dict(last.model.state_dict())
    saved = checkpoint.load_training_state(last.path, optimizer)
    progress = restore(saved, batch_rng, generator, last.path, scaler)
    world_size = distributed.world_size()
    accumulate, change = accumulation(
        progress, world_size, config.train.accumulate, last.config.train.accumulate
    )
    if change:
        log.info("%s", change)
    log.info("resumed %s at epoch %d, step %d", config.run_dir, progress.epoch, progress.step)
    return progress, accumulate


def accumulation(
    progress: Progress, world_size: int, accumulate: int, saved_accumulate: int
) -> tuple[int, str | None]:
    """The batches each process accumulates per update when a run resumes with `world_size`
    processes and `train.accumulate` = `accumulate` (`saved_accumulate` before), and a line
    saying what changed, if anything did. At the saved world size the run goes on as it was.
    At another, the update keeps its batches (world size x accumulate) where the new world
    size divides them, and comes as near as it can where it does not. An accumulate set anew
    on resuming is taken as asked."""
    before = progress.world_size * progress.accumulate
    if accumulate != saved_accumulate:
        kept = accumulate
    elif world_size == progress.world_size:
        return progress.accumulate, None
    else:
        kept = max(1, round(before / world_size))
    after = world_size * kept
    if (world_size, kept) == (progress.world_size, progress.accumulate):
        return kept, None
    return kept, (
        f"resuming with {_processes(world_size)} x accumulate {kept} = {after} batches per "
        f"update (saved: {_processes(progress.world_size)} x {progress.accumulate} = {before})"
        + ("" if after == before else f"; an update now covers {after} batches, not {before}")
    )


def _processes(count: int) -> str:
    return f"{count} process" + ("es" if count != 1 else "")


def check_resumable(last: checkpoint.Checkpoint, config: Config, vocabs: tuple[Vocab, Vocab]):
    """Resuming must continue the same run: same config (but RESUMABLE_CHANGES and data keys
    that `prepares_alike`), same vocabularies, and never another model shape, even with
    overwrite=true."""
    changes = [
        f"{key}: {old!r} -> {new!r}"
        for key, (old, new) in changed_keys(
            config_to_dict(last.config), config_to_dict(config)
        ).items()
        if key not in RESUMABLE_CHANGES and not prepares_alike(key, old, config.data)
    ]
    if changes and not config.overwrite:
        raise ConfigError(
            "cannot resume with a changed config (" + "; ".join(changes) + "); undo the "
            "changes, or add overwrite=true to resume anyway"
        )
    if (last.src_vocab, last.tgt_vocab) != vocabs:
        raise ConfigError(f"cannot resume: the data gives other vocabularies than {last.path}")
    model_changes = config_diff(
        config_to_dict(last.config)["model"],
        config_to_dict(config)["model"],
        "model.",
        ignore=RESUMABLE_CHANGES,
    )
    if model_changes:
        raise ConfigError(
            f"cannot resume: the model in {last.path} was built with other model.* "
            f"settings; a run's model cannot change shape, start a new run instead"
        )


def prepares_alike(key: str, old: Any, data: DataConfig) -> bool:
    """Whether `key`, changed from `old` to its value in `data`, changes only how the prepared
    corpus is made, not what the run trains on: a data key that the run does not read
    (READ_BY_THE_RUN) and that leaves the prepared corpus's key alone, which holds everything
    the corpus's contents depend on (data/prepare.py). So `data.num_workers` may change, as may
    a SentencePiece setting in a spaCy run; the next key of either kind needs no list."""
    name = key.removeprefix("data.")
    if name == key or name in READ_BY_THE_RUN:
        return False
    return prepared_path(replace(data, **{name: old})) == prepared_path(data)


class BestCheckpoint:
    """Picks the best epoch by `train.best_metric`: BLEU is better higher, losses lower, and a
    non-finite figure never becomes the best. With a `patience`, says when to stop early."""

    def __init__(self, metric: str, patience: int | None = None, bleu_from_epoch: int = 1):
        self.metric = metric
        self.patience = patience
        # Patience counts from the first epoch that measures the metric.
        self.first_epoch = bleu_from_epoch if metric == "val_bleu" else 1

    def beats(self, record: dict, best: float | None) -> float | None:
        """The score of an epoch's record (higher is better) if it beats the `best` so far."""
        if self.metric not in record:
            return None
        value = record[self.metric]
        if value is None:  # not measured this epoch
            return None
        score = value if self.metric == "val_bleu" else -value
        if not math.isfinite(score) or (best is not None and score <= best):
            return None
        return score

    def patience_lost(self, progress: Progress) -> bool:
        """Whether `patience` whole epochs have passed since the best (or since the start, when
        no epoch scored a finite figure). It counts epochs, not validations: an epoch validated
        twice (stopped inside and resumed) counts once."""
        since = max(progress.best_epoch, self.first_epoch - 1)
        return self.patience is not None and progress.epoch - since >= self.patience


def _numpy_state() -> list:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), position, has_gauss, gauss]


def _numpy_unstate(state: list) -> tuple:
    name, keys, position, has_gauss, gauss = state
    return name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss


def _tuplify(value):
    """JSON turns the tuples of random.getstate() into lists; setstate wants them back."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value
