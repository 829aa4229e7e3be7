"""The Trainer: one loop that reads top to bottom.

Each epoch: bucketed batches in random order; for each update, forward with teacher forcing
over `train.accumulate` batches (on each process, under torchrun); cross-entropy
(label-smoothed if asked) that ignores padding, summed over the update's target tokens;
backward; gradient-norm clipping; an optimizer step at the schedule's rate; then validation
loss, free-running loss and BLEU (greedy or beam), the last, (if improved) best and (if kept)
epoch checkpoints, and a log line. Training ends after `train.epochs`, or earlier once the best
metric stops improving for `train.patience`. What survives a stop (progress, random states, the
best score) is resume.py's business; what other processes there are, distributed.py's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from seq2seq import checkpoint, distributed, resume
from seq2seq.config import Config, TrainConfig, config_to_dict
from seq2seq.data.batching import Batch, bucket_batches, collate, padding_share
from seq2seq.data.setup import training_data
from seq2seq.data.vocab import model_sizes
from seq2seq.decode import DecodeSettings
from seq2seq.device import autocast, fixed_scale, grad_scaler, pick_device, pick_precision
from seq2seq.errors import TrainingDiverged, TrainingInterrupted
from seq2seq.evaluate import evaluate_examples, perplexity
from seq2seq.models import build_model
from seq2seq.tensorboard import ScalarLog

log = logging.getLogger(__name__)

MAX_BAD_STEPS_IN_ROW = 5  # non-finite losses in a row before training gives up
MAX_OOM_BATCHES = 20  # GPU batches skipped for memory before training gives up
SYNC_EVERY_ON_GPU = 50  # `train.sync_every` on GPUs when not set


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(config: Config, epoch: float, step: int) -> float:
    """What `train.lr` is multiplied by for update number `step` (1 for the first), made with
    `epoch` epochs done, fractions included (2.5: half of the third).

    - `halving`, the paper's (section 3.4): after `halve_after_epochs`, halve the rate every
      `halve_every_epochs`.
    - `inverse_sqrt`, the Transformer's (Vaswani et al. 2017, section 5.3) scaled to peak at 1:
      step / warmup while warming up, then sqrt(warmup / step), as fairseq's inverse_sqrt.
    """
    train = config.train
    if train.lr_schedule == "inverse_sqrt":
        return min(step / train.warmup_steps, math.sqrt(train.warmup_steps / step))
    if train.lr_schedule == "constant" or epoch < train.halve_after_epochs:
        return 1.0
    return 0.5 ** (math.floor((epoch - train.halve_after_epochs) / train.halve_every_epochs) + 1)


def make_optimizer(train: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam (AdamW when `weight_decay` is set: decay apart from the adaptive step, which would
    otherwise shrink it for the weights with large gradients) or SGD (whose L2 decay is the
    same thing), fused into one kernel where PyTorch has one: on CPU (PyTorch 2.4 and later)
    the fused Adam step takes 8 ms for the tutorial model's 14M parameters, against 28 ms one
    tensor at a time."""
    params = list(params)
    settings = {"lr": train.lr, "weight_decay": train.weight_decay}
    if train.optimizer == "sgd":
        optimizer = torch.optim.SGD
    else:
        optimizer = torch.optim.AdamW if train.weight_decay > 0 else torch.optim.Adam
        settings["betas"] = train.adam_betas
    try:
        return optimizer(params, **settings, fused=device.type in ("cpu", "cuda"))
    except RuntimeError:  # no fused kernel for this device in this PyTorch
        return optimizer(params, **settings)


def token_losses(
    logits: torch.Tensor, gold: torch.Tensor, *, pad: int, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective and the plain cross-entropy, each summed over the target tokens
    that are not padding (the trainer divides by an update's tokens, over all its batches and
    processes). The objective smooths the labels (Szegedy et al. 2016, section 7):
    the target puts 1 - label_smoothing on the gold token and spreads label_smoothing evenly
    over the vocabulary, as F.cross_entropy's `label_smoothing` does. Both come from one
    log-softmax in float32, whatever the precision: log-softmax over V is sensitive.

    logits: (B, T, V); gold: (B, T)."""
    log_probs = torch.log_softmax(logits.float().flatten(0, 1), dim=-1)  # (B*T, V)
    gold = gold.flatten()  # (B*T,)
    cross_entropy = torch.nn.functional.nll_loss(log_probs, gold, ignore_index=pad, reduction="sum")
    if label_smoothing == 0.0:
        return cross_entropy, cross_entropy
    # Cross-entropy with the uniform; masked, not indexed: indexing would wait for the GPU.
    uniform = -torch.where(gold != pad, log_probs.mean(dim=-1), 0.0).sum()
    return (1 - label_smoothing) * cross_entropy + label_smoothing * uniform, cross_entropy


class Trainer:
    def __init__(self, config: Config):
        self.config = config
        self.run_dir = config.run_dir
        resume.check_run_dir(config)
        self.scalars = ScalarLog(self.run_dir, config.train.tensorboard)
        seed_everything(config.seed)
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

        data = training_data(config.data)
        self.train_corpus = data.train  # lengths in memory, ids mapped from the prepared corpus
        self.valid_split, self.valid_examples = data.valid_split, data.valid_examples
        self.src_vocab, self.tgt_vocab = data.src_vocab, data.tgt_vocab
        self.tgt_tokenizer = data.tgt_tokenizer

        sizes = model_sizes(self.src_vocab, self.tgt_vocab)
        self.model = build_model(config.model, **sizes).to(self.device)
        # Training steps call the model through DDP, which all-reduces the gradients (with one
        # process it is the model itself); validation and checkpoints use the model.
        self.parallel_model = distributed.wrap(self.model)
        self.optimizer = make_optimizer(config.train, self.model.parameters(), self.device)
        self.scaler = grad_scaler(self.precision, self.device)
        self.rng = random.Random(config.seed)  # batch order
        self.generator = torch.Generator()  # teacher-forcing draws, seeded per batch
        self.accumulate = config.train.accumulate
        self.progress = resume.Progress(
            epoch_rng=self.rng.getstate(),
            world_size=distributed.world_size(),
            accumulate=self.accumulate,
        )
        self.best = resume.BestCheckpoint(config.train.best_metric, config.train.patience)
        self.unread_steps: list[tuple] = []  # figures of steps not yet read on the host
        self.gpu_seeded_epoch: int | None = None  # see _seed_batch
        if config.resume:
            self._resume()

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step

    def _resume(self) -> None:
        last = checkpoint.load(self.run_dir / "last", self.device)
        resume.check_resumable(last, self.config, (self.src_vocab, self.tgt_vocab))
        self.model.load_state_dict(last.model.state_dict())
        state = checkpoint.load_training_state(last.path, self.optimizer)
        self.progress = resume.restore(
            state, self.rng, self.generator, last.path, self._scaler_state()
        )
        self.accumulate, change = resume.accumulation(
            self.progress,
            distributed.world_size(),
            self.config.train.accumulate,
            last.config.train.accumulate,
        )
        if change:
            log.info("%s", change)
        self.progress.world_size = distributed.world_size()
        self.progress.accumulate = self.accumulate
        log.info("resumed %s at epoch %d, step %d", self.run_dir, self.epoch, self.step)

    def train(self) -> dict:
        distributed.barrier()  # every process has checked the run directory before it changes
        if distributed.is_main():
            self._prepare_run_dir()
        batches = self._epoch_batches(random.Random(0))
        log.info(
            "training %s on %s in %s: %d examples, %s%d batches per epoch, %d per update "
            "(world size %d x accumulate %d), vocabularies %d / %d",
            self.config.name,
            self.device,
            self.precision,
            len(self.train_corpus),
            "about " if self.config.train.batch_unit == "tokens" else "",
            len(batches),
            distributed.world_size() * self.accumulate,
            distributed.world_size(),
            self.accumulate,
            len(self.src_vocab),
            len(self.tgt_vocab),
        )
        record, progress = {}, self.progress
        with _stop_on_signals() as stop:
            while (batches := self._next_epoch()) is not None:
                # Token-sized batches vary in number from shuffle to shuffle: each epoch runs
                # all of its own, and only a fractional last epoch (7.5) stops early.
                end = self._epoch_length(len(batches))
                started = time.perf_counter()
                self._run_batches(batches, end, stop)
                seconds = time.perf_counter() - started
                # Process 0 validates; the others wait for its figures, since every process
                # must make the same early-stopping decision.
                record = distributed.from_main(functools.partial(self._record, batches, seconds))
                if progress.position == len(batches):
                    progress.position = 0
                self._save(record)
                self._log(record)
        self.scalars.close()
        return record

    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.resume:  # overwrite=true: the replaced run goes, all of it
            (self.run_dir / "log.jsonl").unlink(missing_ok=True)
            for name in ("best", "last", "tensorboard"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
            for kept in checkpoint.epoch_checkpoints(self.run_dir):
                shutil.rmtree(kept)
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(config_to_dict(self.config), sort_keys=False)
        )

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
            progress.epoch_loss, progress.epoch_tokens = 0.0, 0
        self.rng.setstate(progress.epoch_rng)  # the epoch's order, also when resumed inside it
        batches = self._epoch_batches(self.rng)
        if self._epoch_length(len(batches)) <= progress.position < len(batches):
            return None  # a fractional last epoch, already trained
        return batches  # (a whole epoch stopped after its last step still needs its record)

    def _epoch_length(self, batches: int) -> int:
        """How many of an epoch's batches to train on: all, but in a fractional last epoch."""
        share = self.config.train.epochs - (self.progress.epoch - 1)
        return batches if share >= 1.0 else round(share * batches)

    def _epoch_batches(self, rng: random.Random) -> list[np.ndarray]:
        train = self.config.train
        corpus = self.train_corpus
        order = corpus.epoch_order(rng)
        return bucket_batches(
            corpus.lengths, size=train.batch_size, unit=train.batch_unit, rng=rng, order=order
        )

    def _run_batches(self, batches: list[np.ndarray], end: int, stop: dict) -> None:
        """Train on the epoch's `batches` from `progress.position` to `end`, saving and
        stopping cleanly if a signal asks any process to.

        Every process draws the same epoch order, and update g takes the next world size x
        accumulate batches of it: process r trains on its `accumulate` of them (see
        distributed.share). So N processes train on the same sentences per update as one
        process with N times the accumulation. The epoch's last update may be short: it takes
        the batches left, and a process left without one adds a zero gradient."""
        progress = self.progress
        self.model.train()
        per_update = distributed.world_size() * self.accumulate
        starts = range(progress.position, end, per_update)
        bar = tqdm(
            starts,
            desc=f"epoch {self.epoch}",
            leave=False,
            disable=None if distributed.is_main() else True,
        )
        for first in bar:
            positions = list(range(first, min(first + per_update, end)))
            mine = distributed.share(positions, self.accumulate)
            # A process without a batch still joins DDP's all-reduce: it runs the update's
            # first batch at weight 0.
            micro_batches = [(i, self._batch(batches[i])) for i in mine or positions[:1]]
            target_tokens = sum(self._target_tokens(batches[i]) for i in positions)
            weight = 1.0 if mine else 0.0
            self._train_step(micro_batches, target_tokens, len(batches), weight)
            progress.position = positions[-1] + 1
            progress.step += 1
            if progress.step % self.sync_every == 0 or progress.position == end:
                bar.set_postfix(loss=f"{self._read_steps():.3f}")
            if name := self._stop_signal(stop):
                self._read_steps()
                self._save({"interrupted": name})
                raise TrainingInterrupted(
                    f"stopped by {name} at epoch {self.epoch}, step {self.step}; the state is "
                    f"saved in {self.run_dir / 'last'}: continue with seq2seq train CONFIG "
                    f"name={self.config.name} resume=true"
                )

    def _batch(self, indices: list[int]) -> Batch:
        examples = self.train_corpus.examples(indices)
        pin = self.device.type == "cuda"
        batch = collate(examples, indices, self.src_vocab.pad, self.tgt_vocab.pad, pin=pin)
        return batch.to(self.device)

    def _target_tokens(self, indices: list[int]) -> int:
        return self.train_corpus.target_tokens(indices)

    def _train_step(
        self,
        micro_batches: list[tuple[int, Batch]],
        target_tokens: int,
        epoch_size: int,
        weight: float = 1.0,
    ) -> None:
        """One update from this process's (position in the epoch, batch) pairs, of an update
        that covers `target_tokens` target tokens over all processes. Its gradient is that of
        the update's summed token losses over those tokens: the same, up to summation order,
        however the batches are split into processes and micro-batches, and unbiased by
        uneven batches. Its figures wait in `unread_steps` for `_read_steps`."""
        train, progress = self.config.train, self.progress
        # DDP averages the processes' gradients; scaling by the world size makes it a sum.
        scale = weight * distributed.world_size() / target_tokens
        sums = torch.zeros(2, device=self.device)  # the objective's and cross-entropy's
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for number, (position, batch) in enumerate(micro_batches):
                more_to_come = number < len(micro_batches) - 1
                with distributed.accumulating(self.parallel_model, more_to_come):
                    self._seed_batch(position)
                    with autocast(self.precision, self.device):
                        logits = self.parallel_model(
                            batch.src,
                            batch.src_lengths,
                            batch.tgt,
                            train.teacher_forcing_ratio,
                            self.generator,
                        )
                    objective, cross_entropy = token_losses(
                        logits,
                        batch.tgt[:, 1:],
                        pad=self.tgt_vocab.pad,
                        label_smoothing=train.label_smoothing,
                    )
                    self.scaler.scale(objective * scale).backward()
                if weight:
                    sums += torch.stack([objective.detach(), cross_entropy.detach()])
            self.scaler.unscale_(self.optimizer)  # clipping sees the true gradient
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.clip_norm)
        except torch.OutOfMemoryError:
            self._out_of_memory(batch)
            return
        # The rate is a function of the progress alone, so resuming needs no scheduler.
        epochs_done = progress.epoch - 1 + progress.position / epoch_size
        factor = lr_factor(self.config, epochs_done, progress.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = train.lr * factor
        # The scaler leaves the update out, on the device, if a gradient is not finite.
        self.scaler.step(self.optimizer)
        self.scaler.update(fixed_scale(self.precision))
        self.unread_steps.append((progress.step, target_tokens, sums, norm))

    def _seed_batch(self, position: int) -> None:
        """Dropout and teacher forcing draw from a seed of the run's seed, the epoch and the
        batch's position in it: a batch gets the same draws whichever process trains it in
        whichever update, and a resumed run needs no process's random state to go on.

        On a GPU only the CPU's generator is seeded per batch; the GPU's is seeded once an
        epoch (and once when a run resumes), from its first batch: any change to the GPU
        generator's state (a reseed, or moving its offset, both measured) makes cuDNN rebuild
        its LSTM dropout state at the next call, which waits for the GPU
        (benchmarks/cuda_check.py found it every step). So on a GPU a run resumed inside an
        epoch draws other dropout masks for the rest of that epoch, and each process draws
        its own; at epoch boundaries a resume is exact, as on CPUs."""
        seed = np.random.SeedSequence([self.config.seed, self.epoch, position])
        seed = int(seed.generate_state(1, np.uint64)[0])
        self.generator.manual_seed(seed)
        if self.device.type != "cuda":
            torch.manual_seed(seed)
            return
        torch.default_generator.manual_seed(seed)
        if self.gpu_seeded_epoch != self.epoch:  # an epoch's (or a resumed run's) first batch
            torch.cuda.manual_seed(seed)
            self.gpu_seeded_epoch = self.epoch

    def _read_steps(self) -> float:
        """Read the figures of the steps not yet read, with one host sync (every
        `train.sync_every` steps, not each: on a GPU a sync stalls the queue of work): count
        the skipped ones, stop after several in a row, and add the others' loss to the
        epoch's. Returns the last step's loss per target token."""
        if not self.unread_steps:
            return float("nan")
        steps, tokens, sums, norms = zip(*self.unread_steps, strict=True)
        self.unread_steps = []
        sums = distributed.all_reduce_sum(torch.stack(sums))  # (steps, 2), of all processes
        figures = torch.cat([sums, torch.stack(norms).float()[:, None]], dim=1).tolist()
        loss = float("nan")
        for step, target_tokens, (objective, cross_entropy, norm) in zip(
            steps, tokens, figures, strict=True
        ):
            # Plain cross-entropy, comparable with the validation loss and across runs.
            loss = cross_entropy / target_tokens
            if self._finite(step, objective / target_tokens, norm):
                self.progress.epoch_loss += cross_entropy
                self.progress.epoch_tokens += target_tokens
        return loss

    def _finite(self, step: int, loss_value: float, norm: float) -> bool:
        """Whether step `step` (from 0) counts as finite. A non-finite loss or gradient was
        left out of the update (by the scaler) and is counted; several in a row end training.
        In float16 an overflowing gradient is the scaler's business (it skips the step and
        lowers its scale), so only a non-finite loss counts."""
        progress = self.progress
        gradient_ok = math.isfinite(norm) or self.precision == "float16"
        if math.isfinite(loss_value) and gradient_ok:
            progress.bad_steps_in_row = 0
            return True
        progress.bad_steps += 1
        progress.bad_steps_in_row += 1
        log.warning("step %d: non-finite loss or gradient (%s); update skipped", step, loss_value)
        if progress.bad_steps_in_row >= MAX_BAD_STEPS_IN_ROW:
            raise TrainingDiverged(
                f"{progress.bad_steps_in_row} steps in a row had a non-finite loss or gradient "
                f"(step {step}); lower train.lr or train.clip_norm, or use "
                f"train.precision=float32, and start again"
            )
        return False

    def _stop_signal(self, stop: dict) -> str | None:
        """The signal that asked this process or another to stop, if one did: every process
        stops after the same step."""
        number = signal.Signals[stop["signal"]].value if stop["signal"] else 0
        number = distributed.max_over_processes(number)
        return signal.Signals(number).name if number else None

    def _out_of_memory(self, batch: Batch) -> None:
        """On a GPU, skip the batch; unless other processes wait for this one's gradient."""
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
            self.step,
            batch.src.size(0),
        )
        if self.progress.oom_batches > MAX_OOM_BATCHES:
            raise TrainingDiverged(
                f"out of GPU memory on {self.progress.oom_batches} batches; lower train.batch_size"
            )

    def _record(self, batches: list[np.ndarray], seconds: float) -> dict:
        progress = self.progress
        loss = progress.epoch_loss / max(progress.epoch_tokens, 1)
        return {
            "epoch": self.epoch,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": loss,
            "train_ppl": perplexity(loss),
            "padding": padding_share(self.train_corpus.lengths, batches),
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
            self.valid_examples,
            self.valid_split.tgt_text,
            vocab=self.tgt_vocab,
            tokenizer=self.tgt_tokenizer,
            device=self.device,
            settings=settings,
        )
        keys = ("loss", "ppl", "free_loss", "free_ppl", "bleu", "bleu_tokenized", "chrf")
        return {f"val_{key}": figures[key] for key in keys}

    def _save(self, record: dict) -> None:
        """Process 0 saves epoch-K/ (if kept), last/ (resumable at this exact step) and, if the
        metric improved, best/. epoch-K/ goes first: a stop before last/ redoes the epoch, and
        writes it again. Every process keeps the best score, for early stopping."""
        improved = self.best.improves(record, self.progress)
        if self.best.metric in record:
            record["best"] = improved
        if distributed.is_main():
            vocabs = (self.src_vocab, self.tgt_vocab)
            meta = {"epoch": self.epoch, "step": self.step, "metrics": record}
            if self.config.train.keep_checkpoints and "interrupted" not in record:
                self._keep_epoch(vocabs, meta)
            checkpoint.save(
                self.run_dir / "last",
                self.model,
                self.config,
                vocabs,
                meta,
                optimizer=self.optimizer,
                trainer_state=resume.capture(
                    self.progress, self.rng, self.generator, self._scaler_state()
                ),
            )
            if improved:
                checkpoint.save(self.run_dir / "best", self.model, self.config, vocabs, meta)
        # The others wait: one that went on to exit (stopping) would have torchrun end
        # process 0 in the middle of its save.
        distributed.barrier()

    def _scaler_state(self) -> torch.amp.GradScaler | None:
        """The gradient scaler, where it has a state worth saving: in float16."""
        return self.scaler if self.precision == "float16" else None

    def _keep_epoch(self, vocabs: tuple, meta: dict) -> None:
        """This epoch's weights as epoch-K/ (for `seq2seq average`); the oldest beyond
        `train.keep_checkpoints` go."""
        keep = self.config.train.keep_checkpoints
        checkpoint.save(self.run_dir / f"epoch-{self.epoch}", self.model, self.config, vocabs, meta)
        for old in checkpoint.epoch_checkpoints(self.run_dir)[:-keep]:
            checkpoint.remove(old)

    def _log(self, record: dict) -> None:
        if not distributed.is_main():
            return
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.scalars.write(record)
        tqdm.write(
            f"epoch {record['epoch']:>3} | train loss {record['train_loss']:.3f} "
            f"ppl {record['train_ppl']:7.2f} | val loss {record['val_loss']:.3f} "
            f"ppl {record['val_ppl']:7.2f} | free ppl {record['val_free_ppl']:7.2f} | "
            f"BLEU {record['val_bleu']:5.2f} (tok {record['val_bleu_tokenized']:5.2f}) | "
            f"{record['seconds']:.0f}s {record['tokens_per_second']:.0f} tok/s"
            + (" | best" if record["best"] else "")
        )


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the current step, so the saved
    state is always a whole step; a second Ctrl-C stops at once."""
    stop = {"signal": None}

    def request(number, frame):
        if stop["signal"] and number == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(number).name

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def train(config: Config) -> Path:
    with distributed.session():
        Trainer(config).train()
    return config.run_dir
