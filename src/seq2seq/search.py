"""Decoding loops, written only against the model protocol (models/protocol.py): greedy and
beam search, and the step-by-step loop of training with teacher forcing below 1.0.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    batch_size, device = src.size(0), src.device
    state = model.encode(src, src_lengths)
    tokens = torch.full((batch_size,), sos, dtype=torch.long, device=device)
    limits = max_length.to(device)
    scores = torch.zeros(batch_size, device=device)
    outputs = torch.full((batch_size, int(max_length.max())), eos, dtype=torch.long, device=device)
    # Rows still decoding, by their index in the batch; finished rows leave the batch, so the
    # model's work shrinks as sentences end.
    ids = torch.arange(batch_size, device=device)
    for step in range(outputs.size(1)):
        log_probs, state = model.decode_step(tokens, state)  # (B', V)
        best, tokens = log_probs.max(dim=-1)  # (B',)
        scores.index_add_(0, ids, best)
        outputs[ids, step] = tokens
        running = (tokens != eos) & (step + 1 < limits)
        if not bool(running.all()):
            if not bool(running.any()):
                break
            keep = running.nonzero().flatten()
            ids, tokens, limits = ids[keep], tokens[keep], limits[keep]
            state = state.select(keep)
    rows = outputs.tolist()
    result = [row[: row.index(eos)] if eos in row else row for row in rows]
    return Hypotheses(result, scores.tolist())


@dataclass(frozen=True)
class Scored:
    """One hypothesis: token ids (without <sos>/<eos>), its log-probability (including the
    <eos> it ended with, if any) and the score that ranked it (log-probability divided by the
    length penalty; equal to the log-probability when alpha is 0)."""

    tokens: list[int]
    log_prob: float
    score: float


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016), GNMT, eq. 14: ((5 + |Y|) / 6) ** alpha; 1 when alpha is 0 (the paper)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    sos: int,
    eos: int,
    beam_size: int,
    max_length: torch.Tensor,
    min_length: int = 0,
    alpha: float = 0.0,
    n_best: int = 1,
) -> list[list[Scored]]:
    """Left-to-right beam search (Sutskever et al. 2014, section 3.3), all sentences and beams
    in one batch of B * K rows.

    Each step extends every live hypothesis by every token and keeps the K best per sentence.
    A hypothesis that picks <eos> among the K best leaves the beam as finished, without stopping
    the others. A sentence is done when it has K finished hypotheses, when (with alpha 0, where
    scores only fall) no live hypothesis can beat its n_best-th finished one, or at its
    max_length, where live hypotheses finish without <eos>. <eos> is barred before min_length
    tokens. Returns, per sentence, up to n_best hypotheses, best first.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best ({n_best}) must be between 1 and beam_size ({beam_size})")
    batch_size, beams, device = src.size(0), beam_size, src.device
    rows = torch.arange(batch_size, device=device).repeat_interleave(beams)  # (B*K,)
    state = model.encode(src, src_lengths).select(rows)
    scores = torch.full((batch_size, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step is not repeated
    tokens = torch.full((batch_size * beams,), sos, dtype=torch.long, device=device)
    history = torch.empty((batch_size * beams, 0), dtype=torch.long, device=device)
    finished: list[list[Scored]] = [[] for _ in range(batch_size)]
    # Sentences still searching: their ids in the input batch, and their length limits.
    # Done sentences leave the batch, so the model's work shrinks as sentences finish.
    ids = list(range(batch_size))
    limits = max_length.cpu()
    rank_in_beam = torch.arange(2 * beams, device=device) < beams  # (2K,)
    for step in range(1, int(limits.max()) + 1):
        live = len(ids)  # B' sentences, B' * K rows
        log_probs, state = model.decode_step(tokens, state)  # (B'*K, V)
        vocab_size = log_probs.size(-1)
        if step <= min_length:
            log_probs[:, eos] = float("-inf")
        candidates = scores.unsqueeze(-1) + log_probs.view(live, beams, vocab_size)
        top_scores, top_ids = candidates.view(live, -1).topk(2 * beams, dim=-1)  # (B', 2K)
        top_beams, top_tokens = top_ids // vocab_size, top_ids % vocab_size
        is_eos = top_tokens == eos

        # Hypotheses ending in <eos> among the K best leave the beam.
        ending = is_eos & rank_in_beam & top_scores.isfinite()
        for b, j in ending.nonzero().tolist():
            prefix = history[b * beams + top_beams[b, j]].tolist()
            _finish(finished[ids[b]], prefix, float(top_scores[b, j]), alpha, ended=True)

        # The K best continuations that do not end carry on (at most K of 2K can be <eos>).
        kept_scores, kept = top_scores.masked_fill(is_eos, float("-inf")).topk(beams, dim=-1)
        offsets = torch.arange(live, device=device).unsqueeze(1) * beams  # (B', 1)
        source_rows = (offsets + top_beams.gather(1, kept)).view(-1)  # (B'*K,)
        tokens = top_tokens.gather(1, kept).view(-1)
        history = torch.cat([history.index_select(0, source_rows), tokens.unsqueeze(1)], dim=1)
        state = state.select(source_rows)
        scores = kept_scores

        at_limit = limits <= step
        for b in at_limit.nonzero().flatten().tolist():
            for k in range(beams):
                if torch.isfinite(scores[b, k]):
                    prefix = history[b * beams + k].tolist()
                    _finish(finished[ids[b]], prefix, float(scores[b, k]), alpha, ended=False)
        done = at_limit | torch.tensor([len(finished[i]) >= beams for i in ids])
        if alpha == 0.0:
            done |= _cannot_improve([finished[i] for i in ids], scores.max(-1).values.cpu(), n_best)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().flatten()  # (B'',)
            rows = keep.to(device).unsqueeze(1) * beams + torch.arange(beams, device=device)
            rows = rows.view(-1)  # (B''*K,)
            state, tokens, history = state.select(rows), tokens[rows], history[rows]
            scores, limits = scores[keep.to(device)], limits[keep]
            ids = [ids[i] for i in keep.tolist()]
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


def _finish(
    bucket: list[Scored], tokens: list[int], log_prob: float, alpha: float, ended: bool
) -> None:
    length = len(tokens) + (1 if ended else 0)
    bucket.append(Scored(tokens, log_prob, log_prob / length_penalty(length, alpha)))


def _cannot_improve(finished: list[list[Scored]], best_live: torch.Tensor, n_best: int):
    """Without length normalisation a live hypothesis only loses probability as it grows."""
    threshold = torch.tensor(
        [
            sorted((h.score for h in f), reverse=True)[n_best - 1]
            if len(f) >= n_best
            else float("-inf")
            for f in finished
        ]
    )
    return (threshold > float("-inf")) & (best_live <= threshold)
