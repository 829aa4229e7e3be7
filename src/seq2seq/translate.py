"""Translating raw text with a trained checkpoint: tokenize, batch, decode, detokenize."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from seq2seq.checkpoint import Checkpoint
from seq2seq.data.dataset import Example, encode_source
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluate import DecodeSettings, greedy_translate


class Translator:
    def __init__(
        self, ckpt: Checkpoint, device: torch.device, settings: DecodeSettings = DecodeSettings()
    ):
        self.ckpt = ckpt
        self.device = device
        self.settings = settings
        data = ckpt.config.data
        self.src_tokenizer = Tokenizer(data.src_lang, lowercase=data.lowercase)
        self.tgt_tokenizer = Tokenizer(data.tgt_lang, lowercase=data.lowercase)

    def translate_tokens(self, lines: list[str]) -> list[list[str]]:
        """Output tokens for each line; a line with no text gives no tokens."""
        ckpt = self.ckpt
        tokens = self.src_tokenizer.tokenize_many(lines)
        keep = [i for i, line in enumerate(lines) if line.strip()]
        examples = [
            Example(encode_source(tokens[i], ckpt.src_vocab, ckpt.config.data), [0, 0])
            for i in keep
        ]
        out: list[list[str]] = [[] for _ in lines]
        if examples:
            vocab = ckpt.tgt_vocab
            ids = greedy_translate(
                ckpt.model,
                examples,
                sos=vocab.sos,
                eos=vocab.eos,
                pad=vocab.pad,
                device=self.device,
                settings=self.settings,
            )
            for i, output in zip(keep, ids, strict=True):
                out[i] = vocab.decode(output)
        return out

    def translate(self, lines: Iterable[str]) -> list[str]:
        """Exactly one output line per input line; an empty line gives an empty line."""
        lines = [line.rstrip("\r\n") for line in lines]
        outputs = self.translate_tokens(lines)
        return [self.tgt_tokenizer.detokenize(tokens).replace("\n", " ") for tokens in outputs]
