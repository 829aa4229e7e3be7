"""Decoding whole lists of examples: batching by length, greedy or beam search as the settings
say, and the results back in the examples' order. Written only against the model protocol,
except for an engine that decodes and scores whole lists itself (a CTranslate2 export,
export/engine.py), to which the work is handed as it is.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from seq2seq.config import TrainConfig
from seq2seq.data.batching import Batch, iterate, sorted_batches
from seq2seq.data.examples import Example
from seq2seq.errors import Seq2SeqError
from seq2seq.search import (
    MAX_LENGTH,
    Hypothesis,
    beam_search,
    end_at_once,
    greedy_search,
    max_lengths,
)


@dataclass(frozen=True)
class DecodeSettings:
    """How to decode: greedy when beam_size is 1, else beam search. Output is at most
    max_length_a * source length + max_length_b tokens, and at most max_length if set. The
    length rule left None is the checkpoint's own, `train.max_length_a/b`, the one validation
    decoded with (`for_checkpoint`); without a checkpoint, those keys' defaults."""

    batch_size: int = 128
    beam_size: int = 1
    alpha: float = 0.0
    n_best: int = 1
    min_length: int = 0
    max_length_a: float | None = None
    max_length_b: int | None = None
    max_length: int | None = None

    def for_checkpoint(self, ckpt) -> DecodeSettings:
        """These settings for one checkpoint (or ensemble, or export), checked against it
        before any work: a beam no wider than its target vocabulary (wider only costs memory:
        10**9 would exhaust it), and what a model that decodes whole lists itself cannot honour
        (its `check_settings`: an export's length penalty). The length rule left unset is the
        checkpoint's."""
        tgt_vocab_size = len(ckpt.tgt_vocab)
        if self.beam_size > tgt_vocab_size:
            raise Seq2SeqError(
                f"beam size {self.beam_size} is larger than the model's target vocabulary "
                f"({tgt_vocab_size} tokens); give a beam size of at most {tgt_vocab_size}"
            )
        if check := getattr(ckpt.model, "check_settings", None):
            check(self)
        return self.with_length_rule(ckpt.config.train)

    def with_length_rule(self, train: TrainConfig) -> DecodeSettings:
        a, b = self.max_length_a, self.max_length_b
        return replace(
            self,
            max_length_a=train.max_length_a if a is None else a,
            max_length_b=train.max_length_b if b is None else b,
        )

    def limits(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B,) output length limits for sources of these lengths (without <sos>/<eos>); a rule
        left None, with no checkpoint to read it from, is train.max_length_a/b's default."""
        rule = self.with_length_rule(TrainConfig())
        return max_lengths(src_lengths, rule.max_length_a, rule.max_length_b, self.max_length)


# The ranges the search can honour. The length penalty's ((5 + length) / 6) ** alpha stays a
# float32 for any output up to MAX_LENGTH at alpha 10, and GNMT's best was below 1.
MAX_ALPHA = 10
# A batch far past what memory holds is refused before it is tried (CTranslate2 reserves its
# memory up front, and fails at 2**31).
MAX_BATCH_SIZE = 100_000
UPPER = {
    "batch_size": MAX_BATCH_SIZE,
    "min_length": MAX_LENGTH,
    "max_length": MAX_LENGTH,
    "max_length_b": MAX_LENGTH,
    "max_length_a": MAX_LENGTH,
    "alpha": MAX_ALPHA,
}


def checked_settings(names: Mapping[str, str], **values) -> DecodeSettings:
    """Decoding settings from a user's values, each checked against the range the search can
    honour, the one check for the command line, the Python API and the server (the checkpoint
    adds its own, `DecodeSettings.for_checkpoint`). `names` says how the user wrote each setting
    (`--beam-size`, `beam_size`), for the error: one line naming the setting, what it must be
    and the value."""

    def fail(name: str, requirement: str) -> None:
        raise Seq2SeqError(f"{names[name]} must be {requirement} (got {values[name]!r})")

    for name, minimum in (("batch_size", 1), ("beam_size", 1), ("n_best", 1), ("min_length", 0)):
        value = values.get(name, minimum)
        if not is_whole(value) or value < minimum:
            fail(name, f"a whole number, at least {minimum}")
    for name, minimum in (("max_length", 1), ("max_length_b", 0)):
        value = values.get(name)
        if value is not None and (not is_whole(value) or value < minimum):
            fail(name, f"a whole number, at least {minimum}")
    if not is_finite_number(values.get("alpha", 0.0)):
        fail("alpha", "a finite number, 0 or more")
    if values.get("max_length_a") is not None and not is_finite_number(values["max_length_a"]):
        fail("max_length_a", "a finite number, 0 or more")
    for name, most in UPPER.items():
        if name in values and values[name] is not None and values[name] > most:
            fail(name, f"at most {most}")
    if values.get("n_best", 1) > values["beam_size"]:
        fail("n_best", f"between 1 and {names['beam_size']}={values['beam_size']}")
    max_length = values.get("max_length")
    if max_length is not None and values.get("min_length", 0) > max_length:
        fail("min_length", f"at most {names['max_length']}={max_length}")
    return DecodeSettings(**{**values, "alpha": float(values.get("alpha", 0.0))})


def is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """A real number (not a bool), finite, 0 or more."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value) and value >= 0


def decode_examples(
    model,
    examples: list[Example],
    *,
    sos: int,
    eos: int,
    pad: int,
    device: torch.device,
    settings: DecodeSettings = DecodeSettings(),
) -> list[list[Hypothesis]]:
    """The n-best hypotheses for each example, in the examples' order (search.py says what a
    hypothesis is). A source without tokens (`<sos> <eos>`) is not searched, whatever the
    settings: it gives the empty hypothesis (n_best times), ended at once and scored by the
    model (`search.end_at_once`), so an empty line translates to an empty line whose
    log-probability is the one `score_examples` gives an empty target."""
    if whole := getattr(model, "decode_examples", None):  # an engine decoding lists itself
        return whole(examples, settings)
    model.eval()
    out: list[list[Hypothesis]] = [[] for _ in examples]
    searched = [i for i, example in enumerate(examples) if len(example.src) > 2]
    empty = [i for i, example in enumerate(examples) if len(example.src) <= 2]
    for indices, decode in ((searched, _search), (empty, _end_at_once)):
        for batch in length_batches([examples[i] for i in indices], settings.batch_size, pad):
            found = decode(model, batch, sos=sos, eos=eos, device=device, settings=settings)
            for index, hypotheses in zip(batch.indices, found, strict=True):
                out[indices[index]] = hypotheses
    return out


def _search(model, batch: Batch, *, sos, eos, device, settings) -> list[list[Hypothesis]]:
    """Greedy or beam search of one batch, as the settings say."""
    limits = settings.limits(batch.src_lengths - 2)
    batch = batch.to(device)
    options = {"sos": sos, "eos": eos, "max_length": limits, "alpha": settings.alpha}
    if settings.beam_size == 1 and settings.min_length == 0:  # greedy is beam 1, faster
        return greedy_search(model, batch.src, batch.src_lengths, **options)
    return beam_search(
        model,
        batch.src,
        batch.src_lengths,
        beam_size=settings.beam_size,
        min_length=settings.min_length,
        n_best=settings.n_best,
        **options,
    )


def _end_at_once(model, batch: Batch, *, sos, eos, device, settings) -> list[list[Hypothesis]]:
    batch = batch.to(device)
    options = {"sos": sos, "eos": eos, "alpha": settings.alpha, "n_best": settings.n_best}
    return end_at_once(model, batch.src, batch.src_lengths, **options)


def best_translations(
    model,
    examples: list[Example],
    *,
    sos: int,
    eos: int,
    pad: int,
    device: torch.device,
    settings: DecodeSettings = DecodeSettings(),
) -> list[list[int]]:
    """The best output ids for each example, in the examples' order."""
    nbest = decode_examples(
        model, examples, sos=sos, eos=eos, pad=pad, device=device, settings=settings
    )
    return [hypotheses[0].tokens for hypotheses in nbest]


@torch.inference_mode()
def score_examples(
    model, examples: list[Example], *, pad: int, device: torch.device, batch_size: int = 128
) -> list[float]:
    """log P(target | source) of each example, <eos> included, in the examples' order."""
    if whole := getattr(model, "score_examples", None):  # an engine scoring lists itself
        return whole(examples, batch_size)
    model.eval()
    out = [0.0] * len(examples)
    for batch in length_batches(examples, batch_size, pad):
        batch = batch.to(device)
        logits = model(batch.src, batch.src_lengths, batch.tgt, 1.0)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, T-1, V)
        gold = batch.tgt[:, 1:]
        token_scores = log_probs.gather(-1, gold.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        sums = token_scores.masked_fill(gold == pad, 0.0).sum(dim=1).tolist()
        for index, value in zip(batch.indices, sums, strict=True):
            out[index] = value
    return out


def length_batches(examples: list[Example], batch_size: int, pad: int):
    """Batches of similar source lengths (fast to decode); each carries its examples' indices."""
    batches = sorted_batches(examples, size=batch_size, unit="sentences")
    yield from iterate(examples, batches, pad, pad)
