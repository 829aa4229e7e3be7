"""Teacher forcing below 1.0: the training forward that decodes step by step, each step reading
either the true previous token or the model's own prediction. Written only against the model
protocol (models/protocol.py), so that every architecture and the ensemble share it.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

import torch


def draw_gold_inputs(
    steps: int, teacher_forcing_ratio: float, generator: torch.Generator | None
) -> list[bool]:
    """For each decoder input position, whether it reads the true token (else a prediction).
    A ratio of 0 draws nothing, so that evaluation never moves the random state."""
    if teacher_forcing_ratio <= 0.0:
        return [False] * steps
    return (torch.rand(steps, generator=generator) < teacher_forcing_ratio).tolist()


def mixed_forcing(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    tgt: torch.Tensor,
    teacher_forcing_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-probabilities (B, T-1, V) for tgt[:, 1:] (B, T), decoding step by step: with
    probability `teacher_forcing_ratio` a step reads the true previous token, else the model's
    own prediction (the argmax of the step before). The draw is per step for the whole batch,
    as in the pytorch-seq2seq tutorial; a ratio of 0 is free running, the tutorial's "test
    loss". Log-probabilities serve as logits: cross-entropy's log-softmax leaves them as they
    are."""
    state = model.encode(src, src_lengths)
    steps = tgt.size(1) - 1
    gold = draw_gold_inputs(steps, teacher_forcing_ratio, generator)
    outputs, tokens = [], tgt[:, 0]
    for t in range(steps):
        if t > 0:  # input t is the true token or, as the draw says, the previous prediction
            tokens = tgt[:, t] if gold[t] else outputs[-1].argmax(-1)
        log_probs, state = model.decode_step(tokens, state)  # (B, V)
        outputs.append(log_probs)
    return torch.stack(outputs, dim=1)  # (B, T-1, V)
