"""The splits a run is evaluated on (validation and test), read and tokenized whole, with
every line kept, and numericalized with a run's vocabularies. Training reads its corpora
through `data/prepare.py` instead, streamed into a prepared corpus.

Tokenizing with spaCy is slow; the tokens of each file are cached under `cache/tokens/`
(keyed by the lines and the tokenizer settings), so a second evaluation does not tokenize
again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import DataConfig
from seq2seq.data.examples import Example, encode_source, encode_target
from seq2seq.data.files import cache_dir, data_dirs, locate
from seq2seq.data.holdout import Part
from seq2seq.data.reading import read_split
from seq2seq.data.subword import CACHE_FORMAT
from seq2seq.data.tokenizer import SentencePieceTokenizer, Tokenizer, tokenizer_for
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError
from seq2seq.writing import write_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """One split: raw text (for references), tokens, and the files it came from."""

    name: str
    src_text: list[str]
    tgt_text: list[str]
    src_tokens: list[list[str]]
    tgt_tokens: list[list[str]]
    src_path: Path
    tgt_path: Path


# The configured splits' names; with `data.holdout` each is a part of the training corpus.
PARTS: dict[str, Part] = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


def split_prefix(config: DataConfig, name: str) -> str:
    """`train`, `valid`/`val` and `test` name the configured splits (with `data.holdout`, all
    three are in the training corpus); anything else is a prefix."""
    if config.holdout is not None and name in PARTS:
        name = "train"
    corpora = config.train_corpora
    if name == "train" and len(corpora) > 1:
        raise DataError(
            f"data.train lists {len(corpora)} corpora ({', '.join(corpora)}); "
            f"name one of them as the split"
        )
    aliases = {
        "train": corpora[0],
        "valid": config.valid,
        "val": config.valid,
        "test": config.test,
    }
    return aliases.get(name, name)


def load_split(
    config: DataConfig,
    name: str,
    data_dir: str | None = None,
    *,
    vocabs: tuple[Vocab, Vocab] | None = None,
) -> Split:
    """The split `name`. The training split drops pairs with an empty side; every other split
    keeps all its lines, so that BLEU is computed on the whole, official reference set.

    SentencePiece cuts the text with the models of `vocabs` (a run's); spaCy needs none."""
    prefix = split_prefix(config, name)
    part = PARTS.get(name) if config.holdout is not None else None
    files = locate(config, prefix, data_dirs(data_dir or config.dir), part)
    text = read_split(files, skip_empty=name == "train")
    src_vocab, tgt_vocab = vocabs or (None, None)
    src_tokens = tokenized(text.src, text.src_path, tokenizer_for(config, "src", src_vocab))
    tgt_tokens = tokenized(text.tgt, text.tgt_path, tokenizer_for(config, "tgt", tgt_vocab))
    return Split(prefix, text.src, text.tgt, src_tokens, tgt_tokens, text.src_path, text.tgt_path)


def numericalize(
    split: Split, src_vocab: Vocab, tgt_vocab: Vocab, config: DataConfig, limit: int | None = None
) -> list[Example]:
    pairs = list(zip(split.src_tokens, split.tgt_tokens, strict=True))[:limit]
    return [
        Example(encode_source(s, src_vocab, config), encode_target(t, tgt_vocab, config))
        for s, t in pairs
    ]


def tokenized(
    lines: list[str], path: Path, tokenizer: Tokenizer | SentencePieceTokenizer
) -> list[list[str]]:
    """The tokens of `lines` (read from `path`), tokenized or read from the cache."""
    # Keyed by the lines themselves: the same file paired differently may drop other lines.
    digest = hashlib.sha256("\n".join(lines).encode())
    digest.update(f"{CACHE_FORMAT}|{tokenizer.cache_key}".encode())
    cache_file = cache_dir() / "tokens" / f"{digest.hexdigest()[:32]}.json.gz"
    if cache_file.is_file():
        try:
            with gzip.open(cache_file, "rt", encoding="utf-8") as handle:
                tokens = json.load(handle)
            if len(tokens) == len(lines):
                return tokens
        except (OSError, ValueError, EOFError):
            pass  # A damaged cache entry is rebuilt below.
    # The count says how much is tokenized: a held-out part is a small share of its file.
    log.info("tokenizing %s lines of %s (cached for later runs)", f"{len(lines):,}", path)
    tokens = tokenizer.tokenize_many(lines)
    write_cache(cache_file, gzip.compress(json.dumps(tokens, ensure_ascii=False).encode()))
    return tokens
