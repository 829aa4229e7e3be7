"""From corpus files to numericalized examples, with a cache of the tokenized text.

Tokenizing Multi30k with spaCy takes most of a minute; the tokens of each file are cached
(keyed by the file's SHA-256 and the tokenizer settings), so a second run starts in seconds.
Numericalizing against a vocabulary is cheap and is done on every run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import spacy

from seq2seq.config import DataConfig
from seq2seq.data.corpus import cache_dir, data_dirs, locate_split, read_parallel
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


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


@dataclass(frozen=True)
class Example:
    """A numericalized pair: `src` is `<sos> tokens <eos>` (tokens reversed if configured)."""

    src: list[int]
    tgt: list[int]


def split_prefix(config: DataConfig, name: str) -> str:
    """`train`, `valid`/`val` and `test` name the configured splits; anything else is a prefix."""
    aliases = {
        "train": config.train,
        "valid": config.valid,
        "val": config.valid,
        "test": config.test,
    }
    return aliases.get(name, name)


def load_split(config: DataConfig, name: str, data_dir: str | None = None) -> Split:
    """The split `name`. The training split drops pairs with an empty side; every other split
    keeps all its lines, so that BLEU is computed on the whole, official reference set."""
    prefix = split_prefix(config, name)
    langs = (config.src_lang, config.tgt_lang)
    src_path, tgt_path = locate_split(
        prefix, langs, data_dirs(data_dir or config.dir), config.corpus
    )
    text = read_parallel(src_path, tgt_path, skip_empty=name == "train")
    src_tokens = _tokenize_cached(
        text.src, src_path, Tokenizer(config.src_lang, lowercase=config.lowercase)
    )
    tgt_tokens = _tokenize_cached(
        text.tgt, tgt_path, Tokenizer(config.tgt_lang, lowercase=config.lowercase)
    )
    return Split(prefix, text.src, text.tgt, src_tokens, tgt_tokens, src_path, tgt_path)


def build_vocabs(config: DataConfig, train: Split) -> tuple[Vocab, Vocab]:
    limit = config.train_limit
    return tuple(
        Vocab.build(tokens[:limit], min_freq=config.min_freq, max_size=config.max_size)
        for tokens in (train.src_tokens, train.tgt_tokens)
    )


def encode_source(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    ids = vocab.encode(tokens[: config.max_length])
    if config.reverse_source:
        ids.reverse()  # Sutskever et al. (2014), section 3.3: reversing the source helps.
    return [vocab.sos, *ids, vocab.eos]


def encode_target(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    return [vocab.sos, *vocab.encode(tokens[: config.max_length]), vocab.eos]


def numericalize(
    split: Split, src_vocab: Vocab, tgt_vocab: Vocab, config: DataConfig, limit: int | None = None
) -> list[Example]:
    pairs = list(zip(split.src_tokens, split.tgt_tokens, strict=True))[:limit]
    return [
        Example(encode_source(s, src_vocab, config), encode_target(t, tgt_vocab, config))
        for s, t in pairs
    ]


def _tokenize_cached(lines: list[str], path: Path, tokenizer: Tokenizer) -> list[list[str]]:
    # Keyed by the lines themselves: the same file paired differently may drop other lines.
    digest = hashlib.sha256("\n".join(lines).encode())
    digest.update(
        f"{CACHE_FORMAT}|{tokenizer.lang}|{tokenizer.lowercase}|{spacy.__version__}".encode()
    )
    cache_file = cache_dir() / "prepared" / f"{digest.hexdigest()[:32]}.json.gz"
    if cache_file.is_file():
        try:
            with gzip.open(cache_file, "rt", encoding="utf-8") as handle:
                tokens = json.load(handle)
            if len(tokens) == len(lines):
                return tokens
        except (OSError, ValueError, EOFError):
            pass  # A damaged cache entry is rebuilt below.
    log.info("tokenizing %s (cached for later runs)", path)
    tokens = tokenizer.tokenize_many(lines)
    _write_atomic(cache_file, tokens)
    return tokens


def _write_atomic(path: Path, tokens: list[list[str]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as out:
            json.dump(tokens, out, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError as error:  # A read-only or full cache only costs speed.
        log.warning("cannot write the token cache %s: %s", path, error)
