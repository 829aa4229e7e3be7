"""One update: the loss, accumulation over micro-batches, gradient scaling and clipping, the
per-batch seeding, and the guards against non-finite steps and exhausted GPU memory.

The step's figures stay on the device until `read`, which fetches those of every step since
the last read with one host sync: on a GPU a sync stalls the queue of work.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from seq2seq import distributed
from seq2seq.config import Config
from seq2seq.data.batching import Batch
from seq2seq.device import autocast, fixed_scale
from seq2seq.errors import TrainingDiverged
from seq2seq.training.optim import set_lr
from seq2seq.training.state import Progress

log = logging.getLogger(__name__)

MAX_BAD_STEPS_IN_ROW = 5  # non-finite losses in a row before training gives up
MAX_OOM_BATCHES = 20  # GPU batches skipped for memory before training gives up


def token_losses(
    logits: torch.Tensor, gold: torch.Tensor, *, pad: int, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training objective and the plain cross-entropy, each summed over the target tokens
    that are not padding (an update divides by its tokens, over all its batches and
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


class Updater:
    """Makes updates of `model` (through `parallel_model`, DDP's wrapper or the model itself)
    and keeps the counts of `progress` that they change."""

    def __init__(
        self,
        *,
        config: Config,
        model: torch.nn.Module,
        parallel_model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        generator: torch.Generator,
        precision: str,
        pad: int,
        progress: Progress,
    ):
        self.config, self.model, self.parallel_model = config, model, parallel_model
        self.optimizer, self.scaler, self.generator = optimizer, scaler, generator
        self.precision, self.pad, self.progress = precision, pad, progress
        self.device = next(model.parameters()).device
        self.unread_steps: list[tuple] = []  # figures of steps not yet read on the host
        self.gpu_seeded_epoch: int | None = None  # see seed_batch
        self.in_flight: Batch | None = None  # the micro-batch being computed

    def update(
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
        uneven batches. `weight` 0 joins DDP's all-reduce without contributing."""
        progress = self.progress
        # DDP averages the processes' gradients; scaling by the world size makes it a sum.
        scale = weight * distributed.world_size() / target_tokens
        self.optimizer.zero_grad(set_to_none=True)
        try:
            sums = self._backward(micro_batches, scale, weight)
            self.scaler.unscale_(self.optimizer)  # clipping sees the true gradient
            norm = torch.nn.utils.clip_grad_norm_(
                self.model.parameters(), self.config.train.clip_norm
            )
        except torch.OutOfMemoryError:
            self._out_of_memory(self.in_flight)
            return
        epochs_done = progress.epoch - 1 + progress.position / epoch_size
        set_lr(self.optimizer, self.config, epochs_done, progress.step + 1)
        # The scaler leaves the update out, on the device, if a gradient is not finite.
        self.scaler.step(self.optimizer)
        self.scaler.update(fixed_scale(self.precision))
        self.unread_steps.append((progress.step, target_tokens, sums, norm))

    def _backward(
        self, micro_batches: list[tuple[int, Batch]], scale: float, weight: float
    ) -> torch.Tensor:
        """Accumulate the micro-batches' gradients; DDP all-reduces after the last one only.
        Returns the summed objective and cross-entropy, on the device."""
        train = self.config.train
        sums = torch.zeros(2, device=self.device)
        for number, (position, batch) in enumerate(micro_batches):
            self.in_flight = batch  # the one an out-of-memory error names
            more_to_come = number < len(micro_batches) - 1
            with distributed.accumulating(self.parallel_model, more_to_come):
                self.seed_batch(position)
                with autocast(self.precision, self.device):
                    logits = self.parallel_model(
                        batch.src,
                        batch.src_lengths,
                        batch.tgt,
                        train.teacher_forcing_ratio,
                        self.generator,
                    )
                objective, cross_entropy = token_losses(
                    logits, batch.tgt[:, 1:], pad=self.pad, label_smoothing=train.label_smoothing
                )
                self.scaler.scale(objective * scale).backward()
            if weight:
                sums += torch.stack([objective.detach(), cross_entropy.detach()])
        return sums

    def seed_batch(self, position: int) -> None:
        """Dropout and teacher forcing draw from a seed of the run's seed, the epoch and the
        batch's position in it: a batch gets the same draws whichever process trains it in
        whichever update, and a resumed run needs no process's random state to go on.

        On a GPU only the CPU's generator is seeded per batch; the GPU's is seeded once an
        epoch (and once when a run resumes), from its first batch: any change to the GPU
        generator's state (a reseed, or moving its offset) makes cuDNN rebuild its LSTM
        dropout state at the next call, which waits for the GPU. So on a GPU a run resumed
        inside an epoch draws other dropout masks for the rest of that epoch, and each process
        draws its own; at epoch boundaries a resume is exact, as on CPUs."""
        epoch = self.progress.epoch
        seed = np.random.SeedSequence([self.config.seed, epoch, position])
        seed = int(seed.generate_state(1, np.uint64)[0])
        self.generator.manual_seed(seed)
        if self.device.type != "cuda":
            torch.manual_seed(seed)
            return
        torch.default_generator.manual_seed(seed)
        if self.gpu_seeded_epoch != epoch:  # an epoch's (or a resumed run's) first batch
            torch.cuda.manual_seed(seed)
            self.gpu_seeded_epoch = epoch

    def read(self) -> float:
        """Read the figures of the steps not yet read, with one host sync (every
        `train.sync_every` steps): count the skipped ones, stop after several in a row, and
        add the others' loss to the epoch's. Returns the last step's loss per target token."""
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
            if self.finite(step, objective / target_tokens, norm):
                self.progress.epoch_loss += cross_entropy
                self.progress.epoch_tokens += target_tokens
        return loss

    def finite(self, step: int, loss_value: float, norm: float) -> bool:
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
            self.progress.step,
            batch.src.size(0),
        )
        if self.progress.oom_batches > MAX_OOM_BATCHES:
            raise TrainingDiverged(
                f"out of GPU memory on {self.progress.oom_batches} batches; lower train.batch_size"
            )
