"""Token ids framed as a model reads them: `<sos> ids <eos>`, cut to `data.max_length`, and
on the source side reversed if configured. Training (from the prepared corpus), evaluation
(from a split's tokens) and translation (from the user's text) all frame pairs here."""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.config import DataConfig
from seq2seq.data.vocab import Vocab


@dataclass(frozen=True)
class Example:
    """A numericalized pair: `src` is `<sos> tokens <eos>` (tokens reversed if configured)."""

    src: list[int]
    tgt: list[int]


def encode_source(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    return frame(vocab.ids(tokens[: config.max_length]), vocab, config, source=True)


def encode_target(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    return frame(vocab.ids(tokens[: config.max_length]), vocab, config, source=False)


def frame(ids: list[int], vocab: Vocab, config: DataConfig, *, source: bool) -> list[int]:
    """`<sos> ids <eos>`, the ids cut to `data.max_length` and, on the source side, reversed
    if configured."""
    ids = ids[: config.max_length]
    if source and config.reverse_source:
        ids.reverse()  # Sutskever et al. (2014), section 3.3: reversing the source helps.
    return [vocab.sos, *ids, vocab.eos]
