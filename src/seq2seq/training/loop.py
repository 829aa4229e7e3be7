"""The training loop, top to bottom.

Each epoch: bucketed batches in random order; updates of the next world size x
`train.accumulate` batches each, read top to bottom in `Trainer._run_updates` (the learning
rate, the forward with teacher forcing, the loss, accumulation, the scaler, clipping, the
optimizer step, the guards and the running loss); at the epoch's end, validation loss,
free-running loss and BLEU (greedy or beam), the checkpoints (rundir.py) and the epoch's
record (report.py). Training ends after `train.epochs`, or earlier once the best metric stops
improving for `train.patience`. The Trainer alone changes the progress (state.Progress); what
of it survives a stop is state.py's business; what other processes there are, distributed.py's.
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
from seq2seq.data.train_data import training_data
from seq2seq.data.vocab import model_sizes
from seq2seq.decode import DecodeSettings
from seq2seq.device import autocast, fixed_scale, grad_scaler, pick_device, pick_precision
from seq2seq.errors import TrainingDiverged, TrainingInterrupted
from seq2seq.evaluate import evaluate_examples, perplexity
from seq2seq.models import build_model
from seq2seq.training import rundir, state
from seq2seq.training.optim import make_optimizer, set_lr
from seq2seq.training.report import Report, start_line
from seq2seq.training.signals import stop_on_signals, stop_requested
from seq2seq.training.step import BatchSeeds, counts_as_finite, fetch, token_losses

log = logging.getLogger(__name__)

SYNC_EVERY_ON_GPU = 50  # `train.sync_every` on GPUs when not set
MAX_BAD_STEPS_IN_ROW = 5  # non-finite losses in a row before training gives up
MAX_OOM_BATCHES = 20  # GPU batches skipped for memory before training gives up


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
        self.pad = self.data.tgt_vocab.pad  # the target padding, which the loss leaves out
        self.model = build_model(
            config.model, **model_sizes(self.data.src_vocab, self.data.tgt_vocab)
        ).to(self.device)
        # Training steps call the model through DDP, which all-reduces the gradients (with one
        # process it is the model itself); validation and checkpoints use the model.
        self.parallel_model = distributed.wrap(self.model)
        self.optimizer = make_optimizer(config.train, self.model.parameters(), self.device)
        self.scaler = grad_scaler(self.precision, self.device)
        self.rng = random.Random(config.seed)  # batch order
        self.generator = torch.Generator()  # teacher-forcing draws, seeded per batch
        self.seed_batch = BatchSeeds(config.seed, self.generator, self.device)
        self.accumulate = config.train.accumulate
        self.progress = state.Progress(epoch_rng=self.rng.getstate())
        self.best = state.BestCheckpoint(
            config.train.best_metric, config.train.patience, config.train.bleu_from_epoch
        )
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
        self.progress.world_size = distributed.world_size()
        self.progress.accumulate = self.accumulate
        self.unread: list[tuple] = []  # the figures of updates not yet read on the host
        self.bad_steps_in_row = 0  # not saved: a resumed run starts counting anew

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step

    def train(self) -> dict:
        distributed.barrier()  # every process has checked the run directory before it changes
        distributed.on_main(lambda: rundir.create(self.config))
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
                self._run_updates(batches, end, stop)
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

    def _run_updates(self, batches: list[np.ndarray], end: int, stop: dict) -> None:
        """Train on the epoch's `batches` from `progress.position` to `end`, one update after
        another, each read here top to bottom; stop cleanly, saved, if a signal asks any
        process to.

        Every process draws the same epoch order, and each update takes the next world size x
        accumulate batches of it: process r trains on its `accumulate` of them. So N processes
        train on the same sentences per update as one process with N times the accumulation.
        The epoch's last update may be short: it takes the batches left, and a process left
        without one adds a zero gradient."""
        progress, train = self.progress, self.config.train
        forcing, smoothing = train.teacher_forcing_ratio, train.label_smoothing
        rank, world_size = distributed.rank(), distributed.world_size()
        per_update = world_size * self.accumulate
        self.model.train()
        starts = range(progress.position, end, per_update)
        bar = tqdm(starts, desc=f"epoch {progress.epoch}", leave=False, disable=_bar_disabled())
        for first in bar:
            positions = list(range(first, min(first + per_update, end)))
            mine = positions[rank * self.accumulate : (rank + 1) * self.accumulate]
            # A process without a batch still joins DDP's all-reduce: it runs the update's
            # first batch at weight 0.
            weight = 1.0 if mine else 0.0
            micro_batches = [(i, self._batch(batches[i])) for i in mine or positions[:1]]
            # The gradient is that of the update's summed token losses over its target tokens
            # (of all processes): the same, up to summation order, however the batches are
            # split, and unbiased by uneven batches. DDP averages the processes' gradients;
            # times the world size, that is a sum.
            tokens = sum(self._target_tokens(batches[i]) for i in positions)
            scale = weight * world_size / tokens
            sums = torch.zeros(2, device=self.device)  # the objective, the cross-entropy
            self.optimizer.zero_grad(set_to_none=True)
            try:
                for number, (position, batch) in enumerate(micro_batches):
                    # Gradients add up here; DDP all-reduces them with the last micro-batch.
                    more_to_come = number < len(micro_batches) - 1
                    with distributed.accumulating(self.parallel_model, more_to_come):
                        self.seed_batch(progress.epoch, position)
                        src, lengths, tgt = batch.src, batch.src_lengths, batch.tgt
                        with autocast(self.precision, self.device):
                            logits = self.parallel_model(src, lengths, tgt, forcing, self.generator)
                        objective, cross_entropy = token_losses(
                            logits, tgt[:, 1:], pad=self.pad, label_smoothing=smoothing
                        )
                        self.scaler.scale(objective * scale).backward()
                    if weight:
                        sums += torch.stack([objective.detach(), cross_entropy.detach()])
                self.scaler.unscale_(self.optimizer)  # clipping sees the true gradient
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.clip_norm)
            except torch.OutOfMemoryError:
                self._skip_out_of_memory(batch)
            else:
                # The rate is a function of the progress (optim.py): a resume needs no state.
                epochs_done = progress.epoch - 1 + first / len(batches)
                set_lr(self.optimizer, self.config, epochs_done, progress.step + 1)
                # The scaler leaves the update out, on the device, if a gradient is not finite.
                self.scaler.step(self.optimizer)
                self.scaler.update(fixed_scale(self.precision))
                self.unread.append((progress.step, tokens, sums, norm))
            progress.position, progress.step = positions[-1] + 1, progress.step + 1
            # A stop asked of any process stops them all after this update.
            stopping = stop_requested(stop)
            # The figures stay on the device until read, as a read on a GPU stalls its queue of
            # work: every `train.sync_every` updates, at the end, and before a stop's save.
            if progress.step % self.sync_every and progress.position != end and not stopping:
                continue
            bar.set_postfix(loss=f"{self._read_figures():.3f}")
            if stopping:
                self._stop(stopping)

    def _read_figures(self) -> float:
        """Read the unread updates' figures on the host: add the finite ones to the epoch's
        loss, count and warn of the others, and stop a run that keeps diverging. Returns the
        last update's cross-entropy per target token, for the progress bar."""
        progress = self.progress
        loss = math.nan
        for step, count, objective, cross_entropy, norm in fetch(self.unread):
            loss = cross_entropy / count  # plain cross-entropy, comparable with validation's
            if counts_as_finite(objective / count, norm, self.precision):
                progress.epoch_loss += cross_entropy
                progress.epoch_tokens += count
                self.bad_steps_in_row = 0
                continue
            progress.bad_steps += 1
            self.bad_steps_in_row += 1
            log.warning(
                "step %d: non-finite loss or gradient (%s); update skipped",
                step,
                objective / count,
            )
            if self.bad_steps_in_row >= MAX_BAD_STEPS_IN_ROW:
                raise TrainingDiverged(
                    f"{self.bad_steps_in_row} steps in a row had a non-finite loss or "
                    f"gradient (step {step}); lower train.lr or train.clip_norm, or use "
                    f"train.precision=float32, and start again"
                )
        self.unread = []
        return loss

    def _stop(self, signal_name: str) -> None:
        """Save the whole state in last/ and end the run, which a signal asked to stop."""
        self._save({"interrupted": signal_name})
        raise TrainingInterrupted(
            f"stopped by {signal_name} at epoch {self.epoch}, step {self.step}; the state is "
            f"saved in {self.config.run_dir / 'last'}: continue with seq2seq train CONFIG "
            f"name={self.config.name} resume=true"
        )

    def _skip_out_of_memory(self, batch: Batch) -> None:
        """On a GPU, skip the batch that ran out of memory, unless other processes wait for
        this one's gradient; elsewhere, stop with advice."""
        if self.device.type != "cuda" or distributed.world_size() > 1:
            raise TrainingDiverged(
                f"out of memory on a batch of {batch.src.size(0)} sentences; lower "
                f"train.batch_size (or use train.batch_unit=tokens)"
            )
        self.progress.oom_batches += 1
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        log.warning(
            "step %d: out of GPU memory on a batch of %d sentences; batch skipped",
            self.progress.step,
            batch.src.size(0),
        )
        if self.progress.oom_batches > MAX_OOM_BATCHES:
            raise TrainingDiverged(
                f"out of GPU memory on {self.progress.oom_batches} batches; lower train.batch_size"
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
            free_running=train.free_running_validation,
            translate=self.epoch >= train.bleu_from_epoch,
        )
        # Every record has every key, null where this epoch skipped the figure.
        keys = ("loss", "ppl", "free_loss", "free_ppl", "bleu", "bleu_tokenized", "chrf")
        return {f"val_{key}": figures.get(key) for key in keys}

    def _save(self, record: dict) -> None:
        """Process 0 saves; every process keeps the best score, for early stopping."""
        score = self.best.beats(record, self.progress.best)
        improved = score is not None
        if improved:
            self.progress.best, self.progress.best_epoch = score, self.progress.epoch
        if self.best.metric in record:
            record["best"] = improved
        # The others wait: one that went on to exit (stopping) would have torchrun end
        # process 0 in the middle of its save.
        distributed.on_main(
            lambda: rundir.save(
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
        )
        # And process 0 waits for the others to have read its answer: a process that left the
        # group while another still read from it would abort that one's exit (gloo).
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
        pads = self.data.src_vocab.pad, self.pad
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
