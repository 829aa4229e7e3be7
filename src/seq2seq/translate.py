"""Translating raw text with a trained checkpoint: tokenize, batch, decode, detokenize."""

from __future__ import annotations

import copy
import logging

import torch

from seq2seq.checkpoint import Checkpoint
from seq2seq.data.examples import Example, encode_source, encode_target
from seq2seq.data.tokenizer import tokenizer_for
from seq2seq.decode import DecodeSettings, decode_examples, score_examples
from seq2seq.search import Hypothesis

log = logging.getLogger(__name__)


class Translator:
    def __init__(
        self, ckpt: Checkpoint, device: torch.device, settings: DecodeSettings = DecodeSettings()
    ):
        self.ckpt = ckpt
        self.device = device
        self.settings = settings.for_checkpoint(ckpt)
        data = ckpt.config.data
        self.src_tokenizer = tokenizer_for(data, "src", ckpt.src_vocab)
        self.tgt_tokenizer = tokenizer_for(data, "tgt", ckpt.tgt_vocab)

    def with_settings(self, settings: DecodeSettings) -> Translator:
        """This translator with other decoding settings (the length rule left unset is the
        checkpoint's); a shallow copy shares the model and tokenizers, which cost far more to
        build than a decode of a few sentences."""
        translator = copy.copy(self)
        translator.settings = settings.for_checkpoint(self.ckpt)
        return translator

    def nbest(self, lines: list[str]) -> list[list[tuple[str, Hypothesis]]]:
        """n_best (translation, hypothesis) pairs per line, best first. A line without text
        has no tokens: it gives the empty translation (n_best times), ended at once, of the
        log-probability `score` gives it (decode.decode_examples)."""
        ckpt, vocab = self.ckpt, self.ckpt.tgt_vocab
        lines = _strip(lines)
        tokens = self.src_tokenizer.tokenize_many(lines)
        self._warn_truncated(tokens, "input")
        examples = [self._example(t, []) for t in tokens]
        found = decode_examples(
            ckpt.model,
            examples,
            sos=vocab.sos,
            eos=vocab.eos,
            pad=vocab.pad,
            device=self.device,
            settings=self.settings,
        )
        return [[(self._detokenize(h.tokens), h) for h in hypotheses] for hypotheses in found]

    def translate(self, lines: list[str]) -> list[str]:
        """Exactly one output line per input line; an empty line gives an empty line."""
        return [hypotheses[0][0] for hypotheses in self.nbest(lines)]

    def score(self, sources: list[str], targets: list[str]) -> list[float]:
        """log P(target | source) under the model, one per pair, <eos> included."""
        src_tokens = self.src_tokenizer.tokenize_many(_strip(sources))
        tgt_tokens = self.tgt_tokenizer.tokenize_many(_strip(targets))
        self._warn_truncated(src_tokens, "source")
        self._warn_truncated(tgt_tokens, "target")
        examples = [self._example(s, t) for s, t in zip(src_tokens, tgt_tokens, strict=True)]
        return score_examples(
            self.ckpt.model,
            examples,
            pad=self.ckpt.tgt_vocab.pad,
            device=self.device,
            batch_size=self.settings.batch_size,
        )

    def _warn_truncated(self, tokens: list[list[str]], what: str) -> None:
        """encode_source and encode_target truncate at data.max_length (so long lines never
        exhaust memory); say so, since a truncated target is scored as a shorter sentence."""
        limit = self.ckpt.config.data.max_length
        too_long = sum(len(t) > limit for t in tokens)
        if too_long:
            log.warning(
                "%d %s lines have more than data.max_length=%d tokens and were truncated to it",
                too_long,
                what,
                limit,
            )

    def _example(self, src_tokens: list[str], tgt_tokens: list[str]) -> Example:
        data = self.ckpt.config.data
        return Example(
            encode_source(src_tokens, self.ckpt.src_vocab, data),
            encode_target(tgt_tokens, self.ckpt.tgt_vocab, data),
        )

    def _detokenize(self, ids: list[int]) -> str:
        text = self.tgt_tokenizer.detokenize(self.ckpt.tgt_vocab.tokens(ids))
        return " ".join(text.split())  # never a line break or tab inside one output line


def _strip(lines: list[str]) -> list[str]:
    return [line.rstrip("\r\n") for line in lines]
