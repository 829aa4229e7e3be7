"""The Python API: load a model once, then translate, list n-best translations, score, or
read attention maps.

    import seq2seq
    model = seq2seq.load("runs/tutorial")
    model.translate(["Ein Hund rennt."], beam_size=5)

It is the command line's machinery (`Translator`, `load_ensemble`, `pick_device`) behind
keyword arguments, and it raises the same one-line `Seq2SeqError`s the command line prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seq2seq.analysis.attention_maps import AttentionMap, attention_maps, check_attention
from seq2seq.checkpoint import Checkpoint
from seq2seq.decode import checked_settings, is_whole
from seq2seq.device import pick_device
from seq2seq.errors import Seq2SeqError
from seq2seq.loader import load_ensemble
from seq2seq.translate import Translator


@dataclass(frozen=True)
class Hypothesis:
    """One n-best entry: the text, its log-probability (`<eos>` included if it ended), the
    score it was ranked by (the log-probability divided by the length penalty), and whether
    it ended with `<eos>` (False: search cut it at its length limit)."""

    text: str
    log_prob: float
    score: float
    ended: bool


class Model:
    """A loaded checkpoint, or an ensemble of several, ready to decode on one device."""

    def __init__(self, ckpt: Checkpoint, device):
        self.checkpoint = ckpt
        self.device = device

    @property
    def config(self):
        return self.checkpoint.config

    def __repr__(self) -> str:
        return f"seq2seq.Model({str(self.checkpoint.path)!r}, device={str(self.device)!r})"

    def translate(
        self,
        sentences: str | list[str],
        *,
        beam_size: int = 1,
        alpha: float = 0.0,
        min_length: int = 0,
        max_length: int | None = None,
        batch_size: int = 128,
    ) -> str | list[str]:
        """One translation per sentence (a string for a string); greedy at beam_size 1.
        Options are those of `seq2seq translate`."""
        lines = _sentences(sentences, "sentences")
        translator = self._translator(
            beam_size=beam_size,
            alpha=alpha,
            min_length=min_length,
            max_length=max_length,
            batch_size=batch_size,
        )
        texts = [hypotheses[0][0] for hypotheses in translator.nbest(lines)]
        return texts[0] if isinstance(sentences, str) else texts

    def nbest(
        self,
        sentences: str | list[str],
        *,
        n: int = 5,
        beam_size: int | None = None,
        alpha: float = 0.0,
        min_length: int = 0,
        max_length: int | None = None,
        batch_size: int = 128,
    ) -> list[Hypothesis] | list[list[Hypothesis]]:
        """The n best translations of each sentence, best first, by beam search of beam_size
        (n if not given; at least n). An empty sentence gives the empty translation, n times,
        of the log-probability `score` gives it (docs/search.md)."""
        lines = _sentences(sentences, "sentences")
        beam_size = n if beam_size is None else beam_size
        translator = self._translator(
            beam_size=beam_size,
            n_best=n,
            alpha=alpha,
            min_length=min_length,
            max_length=max_length,
            batch_size=batch_size,
        )
        out = [
            [Hypothesis(text, h.log_prob, h.score, h.ended) for text, h in line]
            for line in translator.nbest(lines)
        ]
        return out[0] if isinstance(sentences, str) else out

    def attention(
        self,
        sentences: str | list[str],
        *,
        layer: int | None = None,
        head: int | None = None,
        beam_size: int = 1,
        alpha: float = 0.0,
        min_length: int = 0,
        max_length: int | None = None,
        batch_size: int = 128,
    ) -> AttentionMap | list[AttentionMap]:
        """The attention map of each sentence's translation (found as `translate` finds it):
        an `AttentionMap` of the translation, source and target tokens and the weights, one
        row per output token. A Transformer's `layer` and `head` pick one (by default the
        last layer, the mean of its heads); an RNN attention model has one attention."""
        lines = _sentences(sentences, "sentences")
        for name, value in (("layer", layer), ("head", head)):
            if value is not None and not is_whole(value):
                raise Seq2SeqError(f"{name} must be a whole number or None (got {value!r})")
        check_attention(self.checkpoint)
        translator = self._translator(
            beam_size=beam_size,
            alpha=alpha,
            min_length=min_length,
            max_length=max_length,
            batch_size=batch_size,
        )
        best = [hypotheses[0] for hypotheses in translator.nbest(lines)]
        maps = attention_maps(translator, lines, best, layer=layer, head=head)
        return maps[0] if isinstance(sentences, str) else maps

    def score(
        self, sources: str | list[str], targets: str | list[str], *, batch_size: int = 128
    ) -> float | list[float]:
        """log P(target | source) for each aligned pair, `<eos>` included."""
        src, tgt = _sentences(sources, "sources"), _sentences(targets, "targets")
        if isinstance(sources, str) != isinstance(targets, str):
            raise Seq2SeqError(
                f"sources is {_type(sources)} but targets is {_type(targets)}; give a string "
                f"for each, or a list for each"
            )
        if len(src) != len(tgt):
            raise Seq2SeqError(
                f"{len(src)} sources but {len(tgt)} targets; give one target per source"
            )
        out = self._translator(beam_size=1, batch_size=batch_size).score(src, tgt)
        return out[0] if isinstance(sources, str) else out

    def _translator(self, **settings) -> Translator:
        """A translator with these settings, each checked as `seq2seq translate` checks its
        options, and against this model (before any work)."""
        return Translator(self.checkpoint, self.device, checked_settings(_NAMES, **settings))


def load(
    path: str | Path | list[str | Path], device: str = "auto", *, quantize: str = "none"
) -> Model:
    """A run directory (its best checkpoint), a checkpoint directory or a CTranslate2 export
    (`seq2seq export`); a list of runs is decoded as an ensemble. device: "auto" (cuda, then
    mps, then cpu), "cpu", "cuda", "mps". quantize: "int8" decodes with int8 weights (PyTorch
    dynamic quantization on the CPU, or CTranslate2's int8), "auto" where that pays, "none"."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise Seq2SeqError("no checkpoint given; give a run directory or a list of them")
    for given in paths:
        if not isinstance(given, str | os.PathLike):
            raise Seq2SeqError(
                f"load takes a run or checkpoint directory (a str or Path) or a list of them, "
                f"not {_type(given)}"
            )
    chosen = pick_device(device)
    return Model(load_ensemble(paths, chosen, quantize=quantize), chosen)


def _sentences(value, name: str) -> list[str]:
    lines = [value] if isinstance(value, str) else value
    if not isinstance(lines, list | tuple):
        raise Seq2SeqError(f"{name} must be a string or a list of strings, not {_type(lines)}")
    for number, line in enumerate(lines):
        if not isinstance(line, str):
            raise Seq2SeqError(f"{name}[{number}] is {_type(line)}; give strings")
    return list(lines)


def _type(value) -> str:
    return type(value).__name__


# How the API's keyword arguments are named in its errors (`n` is nbest's name for n_best).
_NAMES = {
    "batch_size": "batch_size",
    "beam_size": "beam_size",
    "n_best": "n",
    "alpha": "alpha",
    "min_length": "min_length",
    "max_length": "max_length",
}
