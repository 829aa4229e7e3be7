"""The training loop, top to bottom.

Each epoch: bucketed batches in random order; for each update, the next world size x
`train.accumulate` batches (step.py does the forward with teacher forcing, the loss, backward,
clipping and the optimizer step); at the epoch's end, validation loss, free-running loss and
BLEU (greedy or beam), the checkpoints (rundir.py) and the epoch's record (report.py).
Training ends after `train.epochs`, or earlier once the best metric stops improving for
`train.patience`. What survives a stop is state.py's business; what other processes there
are, distributed.py's.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seq2seq import distributed
from seq2seq.config import Config
from seq2seq.data.batching import Batch, bucket_batches, collate, padding_share
from seq2seq.data.setup import training_data
from seq2seq.data.vocab import model_sizes
from seq2seq.decode import DecodeSettings
from seq2seq.device import grad_scaler, pick_device, pick_precision
from seq2seq.errors import TrainingInterrupted
from seq2seq.evaluate import evaluate_examples, perplexity
from seq2seq.models import build_model
from seq2seq.training import rundir, state
from seq2seq.training.optim import make_optimizer
from seq2seq.training.report import Report, start_line
from seq2seq.training.signals import stop_on_signals, stop_requested
from seq2seq.training.step import Updater

log = logging.getLogger(__name__)

SYNC_EVERY_ON_GPU = 50  # `train.sync_every` on GPUs when not set


class Trainer:
    def __init__(self, config: Config):
        self.config = config
        rundir.check(config)
        self.report = Report(
            config.run_dir, tensorboard=config.train.tensorboard, enabled=distributed.is_main()
        )
        if config.train.num_threads:
            torch.set_num_threads(config.train.num_threads)
        # Under torchrun: a process group with the others, and this process's own GPU.
        self.device = distributed.start(
            pick_device(config.device), config.train.distributed_timeout
        )
        self.precision = pick_precision(config.train.precision, self.device, config.model.type)
        self.sync_every = config.train.sync_every or (
            SYNC_EVERY_ON_GPU if self.device.type == "cuda" else 1
        )
        self.data = training_data(config.data)
        # Seeded once the data is ready: preparing it may import libraries that draw from
        # Python's random numbers (rich does), and a run must draw the same numbers whether
        # its corpus was prepared now or found prepared.
        seed_everything(config.seed)
        self.model = build_model(
            config.model, **model_sizes(self.data.src_vocab, self.data.tgt_vocab)
        ).to(self.device)
        # Training steps call the model through DDP, which all-reduces the gradients (with one
        # process it is the model itself); validation and checkpoints use the model.
        parallel_model = distributed.wrap(self.model)
        self.optimizer = make_optimizer(config.train, self.model.parameters(), self.device)
        self.scaler = grad_scaler(self.precision, self.device)
        self.rng = random.Random(config.seed)  # batch order
        self.generator = torch.Generator()  # teacher-forcing draws, seeded per batch
        self.accumulate = config.train.accumulate
        self.progress = state.Progress(
            epoch_rng=self.rng.getstate(),
            world_size=distributed.world_size(),
            accumulate=self.accumulate,
        )
        self.best = state.BestCheckpoint(config.train.best_metric, config.train.patience)
        if config.resume:
            self.progress, self.accumulate = state.resume(
                config,
                self.model,
                self.optimizer,
                self.rng,
                self.generator,
                scaler=self._scaler_state(),
                vocabs=(self.data.src_vocab, self.data.tgt_vocab),
            )
        self.updater = Updater(
            config=config,
            model=self.model,
            parallel_model=parallel_model,
            optimizer=self.optimizer,
            scaler=self.scaler,
            generator=self.generator,
            precision=self.precision,
            pad=self.data.tgt_vocab.pad,
            progress=self.progress,
        )

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step

    def train(self) -> dict:
        distributed.barrier()  # every process has checked the run directory before it changes
        if distributed.is_main():
            rundir.prepare(self.config)
        train = self.config.train
        batches = self.data.train.batch_count(train.batch_size, train.batch_unit)
        log.info(
            "%s",
            start_line(
                self.config, self.device, self.precision, self.data, batches, self.accumulate
            ),
        )
        record, progress = {}, self.progress
        with stop_on_signals() as stop:
            while (batches := self._next_epoch()) is not None:
                # Token-sized batches vary in number from shuffle to shuffle: each epoch runs
                # all of its own, and only a fractional last epoch (7.5) stops early.
                end = self._epoch_length(len(batches))
                started = time.perf_counter()
                self._run_batches(batches, end, stop)
                # The epoch's time over every session, so a resumed epoch's speed is right.
                progress.epoch_seconds += time.perf_counter() - started
                # Process 0 validates; the others wait for its figures, since every process
                # must make the same early-stopping decision.
                record = distributed.from_main(functools.partial(self._record, batches))
                if progress.position == len(batches):
                    progress.position = 0
                self._save(record)
                self.report.write(record)
        self.report.close()
        return record

    def _next_epoch(self) -> list[np.ndarray] | None:
        """The batches of the epoch to train on next (a new one, or the one a resume left
        unfinished), or None when `train.epochs` are done or patience has run out. A stopped
        run stays stopped on resume: more `train.epochs` do not restart it, a larger
        `train.patience` (or null) does."""
        progress = self.progress
        if progress.position == 0:
            if progress.epoch >= math.ceil(self.config.train.epochs):
                return None
            if self.best.patience_lost(progress):
                log.info(
                    "stopped early after epoch %d: %s has not improved for %d epochs (best: "
                    "epoch %d); to train on, resume with a larger train.patience or null",
                    progress.epoch,
                    self.best.metric,
                    progress.epoch - progress.best_epoch,
                    progress.best_epoch,
                )
                return None
            progress.epoch += 1
            progress.epoch_rng = self.rng.getstate()
            progress.epoch_loss, progress.epoch_tokens, progress.epoch_seconds = 0.0, 0, 0.0
        self.rng.setstate(progress.epoch_rng)  # the epoch's order, also when resumed inside it
        batches = self._epoch_batches(self.rng)
        if self._epoch_length(len(batches)) <= progress.position < len(batches):
            return None  # a fractional last epoch, already trained
        return batches  # (a whole epoch stopped after its last step still needs its record)

    def _run_batches(self, batches: list[np.ndarray], end: int, stop: dict) -> None:
        """Train on the epoch's `batches` from `progress.position` to `end`, saving and
        stopping cleanly if a signal asks any process to.

        Every process draws the same epoch order, and each update takes the next world size x
        accumulate batches of it: process r trains on its `accumulate` of them (see
        distributed.share). So N processes train on the same sentences per update as one
        process with N times the accumulation. The epoch's last update may be short: it takes
        the batches left, and a process left without one adds a zero gradient."""
        progress = self.progress
        self.model.train()
        per_update = distributed.world_size() * self.accumulate
        starts = range(progress.position, end, per_update)
        bar = tqdm(starts, desc=f"epoch {self.epoch}", leave=False, disable=_bar_disabled())
        for first in bar:
            positions = list(range(first, min(first + per_update, end)))
            mine = distributed.share(positions, self.accumulate)
            # A process without a batch still joins DDP's all-reduce: it runs the update's
            # first batch at weight 0.
            micro_batches = [(i, self._batch(batches[i])) for i in mine or positions[:1]]
            target_tokens = sum(self._target_tokens(batches[i]) for i in positions)
            self.updater.update(micro_batches, target_tokens, len(batches), 1.0 if mine else 0.0)
            progress.position = positions[-1] + 1
            progress.step += 1
            if progress.step % self.sync_every == 0 or progress.position == end:
                bar.set_postfix(loss=f"{self.updater.read():.3f}")
            if name := stop_requested(stop):
                self.updater.read()
                self._save({"interrupted": name})
                raise TrainingInterrupted(
                    f"stopped by {name} at epoch {self.epoch}, step {self.step}; the state is "
                    f"saved in {self.config.run_dir / 'last'}: continue with seq2seq train "
                    f"CONFIG name={self.config.name} resume=true"
                )

    def _record(self, batches: list[np.ndarray]) -> dict:
        progress = self.progress
        loss = progress.epoch_loss / max(progress.epoch_tokens, 1)
        seconds = progress.epoch_seconds
        return {
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss,
            "train_ppl": perplexity(loss),
            "padding": padding_share(self.data.train.lengths, batches),
            "precision": self.precision,
            "seconds": seconds,
            "tokens_per_second": progress.epoch_tokens / seconds if seconds else 0.0,
            "skipped_steps": progress.bad_steps,
            "oom_batches": progress.oom_batches,
            **self.validate(),
        }

    def validate(self) -> dict:
        train = self.config.train
        settings = DecodeSettings(
            beam_size=train.valid_beam_size,
            max_length_a=train.max_length_a,
            max_length_b=train.max_length_b,
        )
        figures = evaluate_examples(
            self.model,
            self.data.valid,
            self.data.valid_references,
            vocab=self.data.tgt_vocab,
            tokenizer=self.data.tgt_tokenizer,
            device=self.device,
            settings=settings,
        )
        keys = ("loss", "ppl", "free_loss", "free_ppl", "bleu", "bleu_tokenized", "chrf")
        return {f"val_{key}": figures[key] for key in keys}

    def _save(self, record: dict) -> None:
        """Process 0 saves; every process keeps the best score, for early stopping."""
        improved = self.best.improves(record, self.progress)
        if self.best.metric in record:
            record["best"] = improved
        if distributed.is_main():
            rundir.save(
                self.config,
                self.model,
                (self.data.src_vocab, self.data.tgt_vocab),
                {"epoch": self.epoch, "step": self.step, "metrics": record},
                optimizer=self.optimizer,
                trainer_state=state.capture(
                    self.progress, self.rng, self.generator, self._scaler_state()
                ),
                best=improved,
                keep_epoch="interrupted" not in record,
            )
        # The others wait: one that went on to exit (stopping) would have torchrun end
        # process 0 in the middle of its save.
        distributed.barrier()

    def _epoch_length(self, batches: int) -> int:
        """How many of an epoch's batches to train on: all, but in a fractional last epoch."""
        share = self.config.train.epochs - (self.progress.epoch - 1)
        return batches if share >= 1.0 else round(share * batches)

    def _epoch_batches(self, rng: random.Random) -> list[np.ndarray]:
        train, corpus = self.config.train, self.data.train
        order = corpus.epoch_order(rng)
        return bucket_batches(
            corpus.lengths, size=train.batch_size, unit=train.batch_unit, rng=rng, order=order
        )

    def _batch(self, indices: list[int]) -> Batch:
        examples = self.data.train.examples(indices)
        pin = self.device.type == "cuda"
        pads = self.data.src_vocab.pad, self.data.tgt_vocab.pad
        return collate(examples, indices, *pads, pin=pin).to(self.device)

    def _target_tokens(self, indices: list[int]) -> int:
        return self.data.train.target_tokens(indices)

    def _scaler_state(self) -> torch.amp.GradScaler | None:
        """The gradient scaler, where it has a state worth saving: in float16."""
        return self.scaler if self.precision == "float16" else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _bar_disabled() -> bool | None:
    """The progress bar shows on process 0 where there is a terminal (None: tqdm decides)."""
    return None if distributed.is_main() else True


def train(config: Config) -> Path:
    with distributed.session():
        Trainer(config).train()
    return config.run_dir
