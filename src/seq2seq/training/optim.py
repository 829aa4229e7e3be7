"""The optimizer and the learning-rate schedules.

The rate is a function of the progress alone (epochs done and the update's number), so a
resumed run needs no scheduler state: `lr_factor` gives it again from the saved progress.
"""

from __future__ import annotations

import math

import torch

from seq2seq.config import Config, TrainConfig


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


def set_lr(optimizer: torch.optim.Optimizer, config: Config, epoch: float, step: int) -> None:
    """Put the scheduled rate for update `step`, made `epoch` epochs in, on every group."""
    rate = config.train.lr * lr_factor(config, epoch, step)
    for group in optimizer.param_groups:
        group["lr"] = rate


def make_optimizer(train: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """Adam (AdamW when `weight_decay` is set: decay apart from the adaptive step, which would
    otherwise shrink it for the weights with large gradients) or SGD (whose L2 decay is the
    same thing), fused into one kernel where PyTorch has one (on CPU from PyTorch 2.4): one
    kernel for all tensors instead of one launch per tensor."""
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
