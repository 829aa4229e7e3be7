"""Greedy and beam search, written only against the model protocol (models/protocol.py), and
the one result type both return: per sentence, a list of `Hypothesis`, best first.

What a hypothesis is:

- `tokens`: the output ids, without <sos> and <eos>.
- `ended`: whether it emitted <eos>. A hypothesis that reached its sentence's length limit
  first is cut there and has not ended. The limit counts decoding steps: at limit L an ended
  hypothesis has at most L - 1 tokens, a cut one exactly L.
- `log_prob`: the model's log-probability of its tokens, and of the <eos> if it ended; the
  number that teacher-forced scoring of the same tokens (with <eos> if ended) gives.
- `score`: what ranked it, log_prob / length_penalty(len(tokens) + ended, alpha).

Empty hypotheses, decided once for every search (and, through decode.py, for ensembles, the
command line, the server and the Python API):

- A model that emits <eos> first gives the empty hypothesis that has ended, scored like any.
- A length limit of 0 leaves no step to take: the sentence's only hypothesis is the empty
  one, cut (not ended), of log-probability 0 (it has no tokens to score). The model is not
  run for it. Negative limits are refused.
- An empty source (decode.py): no search; `end_at_once` gives the empty hypothesis ended at
  once, scored by the model, so that its log-probability is what scoring an empty target
  gives.
- An n-best list always holds n_best hypotheses, so that n-best output has n lines per input
  line: where only one hypothesis exists (the two cases above), it is repeated.

Shapes: B batch, S source length, V target vocabulary, K beam size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.models.protocol import DecoderState

# The longest output any search writes, in tokens, whatever the length rule says: far past a
# sentence's, and within what every engine can hold (decode.py checks the settings against it).
MAX_LENGTH = 10_000

# What greedy search's output buffer holds where no token was written (past a sentence's end).
_UNWRITTEN = -1


@dataclass(frozen=True)
class Hypothesis:
    """One output of a search: its token ids (without <sos>/<eos>), whether it ended with
    <eos>, its log-probability (the <eos> included if it ended) and the score that ranked it
    (the log-probability over the length penalty; the log-probability when alpha is 0)."""

    tokens: list[int]
    log_prob: float
    score: float
    ended: bool


def hypothesis(tokens: list[int], log_prob: float, *, ended: bool, alpha: float) -> Hypothesis:
    """A hypothesis with its score: the length penalty counts the <eos> if it ended."""
    length = len(tokens) + (1 if ended else 0)
    return Hypothesis(tokens, log_prob, log_prob / length_penalty(length, alpha), ended)


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016), GNMT, eq. 14: ((5 + |Y|) / 6) ** alpha; 1 when alpha is 0 (the paper)."""
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(src_lengths: torch.Tensor, a: float, b: int, limit: int | None = None):
    """Per-sentence output length limits, a * source length + b, capped at `limit` if given
    and always at MAX_LENGTH; reckoned in float64, so no rule overflows an integer."""
    cap = MAX_LENGTH if limit is None else min(limit, MAX_LENGTH)
    lengths = (src_lengths.double() * a).floor() + float(b)
    return lengths.clamp(max=cap).long()


def _cut_at_zero(alpha: float, n_best: int) -> list[Hypothesis]:
    """The n-best list of a sentence whose length limit is 0: the empty hypothesis, cut."""
    return [hypothesis([], 0.0, ended=False, alpha=alpha)] * n_best


def _to_decode(max_length: torch.Tensor) -> list[int]:
    """The sentences with room for a step: limits of 0 are not decoded; negative ones are
    refused."""
    if bool((max_length < 0).any()):
        raise ValueError(f"length limits must be 0 or more (got {max_length.min().item()})")
    return (max_length > 0).nonzero().flatten().tolist()


@torch.inference_mode()
def end_at_once(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    sos: int,
    eos: int,
    alpha: float = 0.0,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Per sentence, the empty hypothesis ended at once, of log-probability log P(<eos> | src),
    n_best times: what an empty source gets instead of a search (one model step, no choice)."""
    tokens = torch.full((src.size(0),), sos, dtype=torch.long, device=src.device)
    log_probs, _ = model.decode_step(tokens, model.encode(src, src_lengths))  # (B, V)
    ends = log_probs[:, eos].tolist()
    return [[hypothesis([], p, ended=True, alpha=alpha)] * n_best for p in ends]


@torch.inference_mode()
def greedy_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    sos: int,
    eos: int,
    max_length: torch.Tensor,
    alpha: float = 0.0,
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step, for a whole batch at once; per sentence, a
    list of its one hypothesis. alpha only sets the score (the choice is the argmax).

    src: (B, S); src_lengths, max_length: (B,) on the CPU. A sentence stops at <eos> or at its
    max_length; the batch stops when every sentence has.
    """
    batch_size, device = src.size(0), src.device
    todo = _to_decode(max_length)
    if not todo:
        return [_cut_at_zero(alpha, 1) for _ in range(batch_size)]
    # Rows still decoding, by their index in the batch; finished rows leave the batch, so the
    # model's work shrinks as sentences end.
    ids = torch.tensor(todo, device=device)
    state = model.encode(src, src_lengths)
    if len(todo) < batch_size:
        state = state.select(ids)
    tokens = torch.full((len(todo),), sos, dtype=torch.long, device=device)
    limits = max_length.to(device)[ids]
    scores = torch.zeros(batch_size, device=device)
    written = []  # per step: (the rows still decoding, the tokens they wrote)
    for step in range(int(max_length.max())):
        log_probs, state = model.decode_step(tokens, state)  # (B', V)
        best, tokens = log_probs.max(dim=-1)  # (B',)
        scores.index_add_(0, ids, best)
        written.append((ids, tokens))
        running = (tokens != eos) & (step + 1 < limits)
        if not bool(running.all()):
            if not bool(running.any()):
                break
            keep = running.nonzero().flatten()
            ids, tokens, limits = ids[keep], tokens[keep], limits[keep]
            state = state.select(keep)
    # As wide as the steps taken, not the limit: a generous limit costs no memory.
    outputs = torch.full((batch_size, len(written)), _UNWRITTEN, dtype=torch.long, device=device)
    for step, (rows, tokens) in enumerate(written):
        outputs[rows, step] = tokens
    return [
        _greedy_hypothesis(row, score, eos, alpha)
        for row, score in zip(outputs.tolist(), scores.tolist(), strict=True)
    ]


def _greedy_hypothesis(row: list[int], log_prob: float, eos: int, alpha: float):
    ended = eos in row
    tokens = row[: row.index(eos)] if ended else [t for t in row if t != _UNWRITTEN]
    return [hypothesis(tokens, log_prob, ended=ended, alpha=alpha)]


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
) -> list[list[Hypothesis]]:
    """Left-to-right beam search (Sutskever et al. 2014, section 3.3), all sentences and beams
    in one batch of B * K rows.

    Each step extends every live hypothesis by every token and keeps the K best per sentence.
    A hypothesis that picks <eos> among the K best leaves the beam as finished, without stopping
    the others. A sentence is done at its max_length, where live hypotheses finish without
    <eos>, and before it: with alpha 0, where scores only fall, when no live hypothesis can
    beat its n_best-th finished one (K finished ones do not stop it: the best may still be
    live, and CTranslate2's search, which goes on, found it); with a length penalty, when it
    has K finished hypotheses. <eos> is barred before min_length
    tokens. Returns, per sentence, n_best hypotheses, best first.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best ({n_best}) must be between 1 and beam_size ({beam_size})")
    ids = _to_decode(max_length)
    finished = [_cut_at_zero(alpha, n_best) for _ in range(src.size(0))]
    for i in ids:
        finished[i] = []
    if not ids:
        return finished
    beams = _Beams.start(model, src, src_lengths, ids, max_length, sos=sos, size=beam_size)
    for step in range(1, int(beams.limits.max()) + 1):
        log_probs, beams.state = model.decode_step(beams.tokens, beams.state)  # (B'*K, V)
        if step <= min_length:
            log_probs[:, eos] = float("-inf")
        for i, tokens, log_prob in beams.advance(log_probs, eos):
            finished[i].append(hypothesis(tokens, log_prob, ended=True, alpha=alpha))
        at_limit = beams.limits <= step
        for i, tokens, log_prob in beams.live(at_limit):
            finished[i].append(hypothesis(tokens, log_prob, ended=False, alpha=alpha))
        if alpha == 0.0:  # scores only fall: done when no live hypothesis can do better
            best_live = beams.scores.max(-1).values.cpu()
            done = at_limit | _cannot_improve([finished[i] for i in beams.ids], best_live, n_best)
        else:  # a live score may still rise: done at K finished (fairseq's rule)
            done = at_limit | torch.tensor([len(finished[i]) >= beam_size for i in beams.ids])
        if bool(done.all()):
            break
        if bool(done.any()):
            beams.keep((~done).nonzero().flatten())
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]


@dataclass
class _Beams:
    """The live hypotheses of the B' sentences still searching, K rows per sentence. Done
    sentences leave, so the model's work shrinks as sentences finish."""

    ids: list[int]  # the sentences' indices in the input batch
    limits: torch.Tensor  # (B',) their length limits, on the CPU
    state: DecoderState  # the model's, of the B' * K rows
    tokens: torch.Tensor  # (B'*K,) each row's last token
    history: torch.Tensor  # (B'*K, t) each row's tokens so far
    scores: torch.Tensor  # (B', K) each row's log-probability so far

    @classmethod
    def start(cls, model, src, src_lengths, ids: list[int], max_length, *, sos: int, size: int):
        """K copies of each sentence in ids, of which only the first is live: all beams start
        identical, and keeping one keeps the first step from being repeated."""
        device, rows = src.device, len(ids) * size
        state = model.encode(src, src_lengths).select(
            torch.tensor(ids, device=device).repeat_interleave(size)
        )
        scores = torch.full((len(ids), size), float("-inf"), device=device)
        scores[:, 0] = 0.0
        tokens = torch.full((rows,), sos, dtype=torch.long, device=device)
        history = torch.empty((rows, 0), dtype=torch.long, device=device)
        return cls(list(ids), max_length.cpu()[ids], state, tokens, history, scores)

    @property
    def size(self) -> int:
        return self.scores.size(1)

    def advance(self, log_probs: torch.Tensor, eos: int) -> list[tuple[int, list[int], float]]:
        """Extend every row by every token (log_probs (B'*K, V)); keep the K best of each
        sentence that do not end. Returns those that end with <eos> among the K best, as
        (sentence id, tokens, log-probability)."""
        live, beams, device = len(self.ids), self.size, log_probs.device
        vocab_size = log_probs.size(-1)
        candidates = self.scores.unsqueeze(-1) + log_probs.view(live, beams, vocab_size)
        top_scores, top_ids = candidates.view(live, -1).topk(2 * beams, dim=-1)  # (B', 2K)
        top_beams, top_tokens = top_ids // vocab_size, top_ids % vocab_size
        is_eos = top_tokens == eos
        rank_in_beam = torch.arange(2 * beams, device=device) < beams  # (2K,)
        ending = is_eos & rank_in_beam & top_scores.isfinite()
        ended = [
            (
                self.ids[b],
                self.history[b * beams + top_beams[b, j]].tolist(),
                float(top_scores[b, j]),
            )
            for b, j in ending.nonzero().tolist()
        ]
        # The K best continuations that do not end carry on (at most K of 2K can be <eos>).
        kept_scores, kept = top_scores.masked_fill(is_eos, float("-inf")).topk(beams, dim=-1)
        offsets = torch.arange(live, device=device).unsqueeze(1) * beams  # (B', 1)
        source_rows = (offsets + top_beams.gather(1, kept)).view(-1)  # (B'*K,)
        self.tokens = top_tokens.gather(1, kept).view(-1)
        self.history = torch.cat(
            [self.history.index_select(0, source_rows), self.tokens.unsqueeze(1)], dim=1
        )
        self.state = self.state.select(source_rows)
        self.scores = kept_scores
        return ended

    def live(self, sentences: torch.Tensor) -> list[tuple[int, list[int], float]]:
        """The live hypotheses (not -inf) of the sentences where `sentences` (B',) is True."""
        return [
            (self.ids[b], self.history[b * self.size + k].tolist(), float(self.scores[b, k]))
            for b in sentences.nonzero().flatten().tolist()
            for k in range(self.size)
            if torch.isfinite(self.scores[b, k])
        ]

    def keep(self, keep: torch.Tensor) -> None:
        """Keep only the sentences keep (B'',), on the CPU, with all their rows."""
        device = self.scores.device
        rows = keep.to(device).unsqueeze(1) * self.size + torch.arange(self.size, device=device)
        rows = rows.view(-1)  # (B''*K,)
        self.state = self.state.select(rows)
        self.tokens, self.history = self.tokens[rows], self.history[rows]
        self.scores, self.limits = self.scores[keep.to(device)], self.limits[keep]
        self.ids = [self.ids[i] for i in keep.tolist()]


def _cannot_improve(finished: list[list[Hypothesis]], best_live: torch.Tensor, n_best: int):
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
