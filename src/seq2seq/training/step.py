"""The parts of an update that hold no progress: the loss, the per-batch seeds, what counts as a
finite step, and fetching the figures of several steps with one host sync. The update itself
reads top to bottom in `Trainer._run_updates` (loop.py); the Trainer alone changes the progress.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from seq2seq import distributed


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


class BatchSeeds:
    """Dropout and teacher forcing draw from a seed of the run's seed, the epoch and the
    batch's position in it: a batch gets the same draws whichever process trains it in
    whichever update, and a resumed run needs no process's random state to go on.

    On a GPU only the CPU's generator is seeded per batch; the GPU's is seeded once an epoch
    (and once when a run resumes), from its first batch: any change to the GPU generator's
    state (a reseed, or moving its offset) makes cuDNN rebuild its LSTM dropout state at the
    next call, which waits for the GPU. So on a GPU a run resumed inside an epoch draws other
    dropout masks for the rest of that epoch, and each process draws its own; at epoch
    boundaries a resume is exact, as on CPUs."""

    def __init__(self, seed: int, generator: torch.Generator, device: torch.device):
        self.seed, self.generator, self.device = seed, generator, device
        self.gpu_seeded_epoch: int | None = None

    def __call__(self, epoch: int, position: int) -> None:
        seed = np.random.SeedSequence([self.seed, epoch, position])
        seed = int(seed.generate_state(1, np.uint64)[0])
        self.generator.manual_seed(seed)
        if self.device.type != "cuda":
            torch.manual_seed(seed)
            return
        torch.default_generator.manual_seed(seed)
        if self.gpu_seeded_epoch != epoch:  # an epoch's (or a resumed run's) first batch
            torch.cuda.manual_seed(seed)
            self.gpu_seeded_epoch = epoch


def counts_as_finite(loss: float, norm: float, precision: str) -> bool:
    """Whether a step's loss (per target token) and gradient norm make it a finite step. A
    non-finite one was left out of the update by the scaler. In float16 an overflowing
    gradient is the scaler's business (it skips the step and lowers its scale), so there only
    a non-finite loss counts."""
    return math.isfinite(loss) and (math.isfinite(norm) or precision == "float16")


def fetch(unread: list[tuple]) -> list[tuple]:
    """The figures of steps kept on the device, each (step, target tokens, summed objective
    and cross-entropy (2,), gradient norm), as host numbers (step, target tokens, objective,
    cross-entropy, norm), the sums added over all processes: one host sync for them all, since
    on a GPU each sync stalls the queue of work."""
    if not unread:
        return []
    steps, tokens, sums, norms = zip(*unread, strict=True)
    sums = distributed.all_reduce_sum(torch.stack(sums))  # (steps, 2), of all processes
    figures = torch.cat([sums, torch.stack(norms).float()[:, None]], dim=1).tolist()
    return [(step, count, *row) for step, count, row in zip(steps, tokens, figures, strict=True)]
