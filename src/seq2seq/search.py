"""Decoding, written only against the model interface `encode()` / `decode_step()`.

Shapes: B batch, S source length, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Hypotheses:
    """Decoded token ids per sentence (without <sos>/<eos>) and their log-probabilities."""

    tokens: list[list[int]]
    scores: list[float]


def max_lengths(src_lengths: torch.Tensor, a: float, b: int, limit: int | None = None):
    """Per-sentence output length limits, a * source length + b (optionally capped)."""
    lengths = (src_lengths.float() * a).long() + b
    return lengths.clamp(max=limit) if limit is not None else lengths


@torch.inference_mode()
def greedy_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    sos: int,
    eos: int,
    max_length: torch.Tensor,
) -> Hypotheses:
    """Pick the most probable token at every step, for a whole batch at once.

    src: (B, S); src_lengths, max_length: (B,) on the CPU. A sentence stops at <eos> or at its
    max_length; the batch stops when every sentence has.
    """
    batch_size = src.size(0)
    device = src.device
    state = model.encode(src, src_lengths)
    tokens = torch.full((batch_size,), sos, dtype=torch.long, device=device)
    limit = max_length.to(device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    scores = torch.zeros(batch_size, device=device)
    outputs = []
    for step in range(int(max_length.max())):
        log_probs, state = model.decode_step(tokens, state)  # (B, V)
        best, tokens = log_probs.max(dim=-1)  # (B,)
        scores += best.masked_fill(finished, 0.0)
        outputs.append(tokens.masked_fill(finished, eos))
        finished |= (tokens == eos) | (step + 1 >= limit)
        if bool(finished.all()):
            break
    columns = torch.stack(outputs, dim=1).tolist()  # (B, steps)
    result = [row[: row.index(eos)] if eos in row else row for row in columns]
    return Hypotheses(result, scores.tolist())
