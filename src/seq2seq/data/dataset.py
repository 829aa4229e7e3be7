"""From corpus files to numericalized examples, with a cache of the tokenized text.

Tokenizing with spaCy is slow; the tokens of each file are cached (keyed by the file's SHA-256
and the tokenizer settings), so a second run does not tokenize again.
SentencePiece models are cached too (keyed by their training text and settings), and so are
the pieces of each file (keyed by the model's bytes). Numericalizing against a vocabulary is
cheap and is done on every run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from seq2seq.config import DataConfig
from seq2seq.data import subword
from seq2seq.data.corpus import ParallelText, cache_dir, data_dirs, locate, read_split
from seq2seq.data.holdout import Part
from seq2seq.data.tokenizer import (
    SentencePieceTokenizer,
    Tokenizer,
    sentencepiece_input,
    tokenizer_for,
)
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError
from seq2seq.writing import write_cache

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


# The configured splits' names; with `data.holdout` each is a part of the training corpus.
PARTS: dict[str, Part] = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


def split_prefix(config: DataConfig, name: str) -> str:
    """`train`, `valid`/`val` and `test` name the configured splits (with `data.holdout`, all
    three are in the training corpus); anything else is a prefix."""
    if config.holdout is not None and name in PARTS:
        name = "train"
    if name == "train" and not isinstance(config.train, str):
        if len(config.train) > 1:
            raise DataError(
                f"data.train lists {len(config.train)} corpora ({', '.join(config.train)}); "
                f"name one of them as the split"
            )
        return config.train[0]
    aliases = {
        "train": config.train,
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

    SentencePiece cuts the text with the models of `vocabs` (a checkpoint's) or, without them,
    with the models trained on the training split (cached after the first time)."""
    prefix = split_prefix(config, name)
    part = PARTS.get(name) if config.holdout is not None else None
    text = _read(config, prefix, data_dir, skip_empty=name == "train", part=part)
    if vocabs is None and config.tokenizer == "sentencepiece":
        vocabs = (
            _subword_vocabs(config, text) if name == "train" else subword_vocabs(config, data_dir)
        )
    src_vocab, tgt_vocab = vocabs or (None, None)
    src_tokens = _tokenize_cached(text.src, text.src_path, tokenizer_for(config, "src", src_vocab))
    tgt_tokens = _tokenize_cached(text.tgt, text.tgt_path, tokenizer_for(config, "tgt", tgt_vocab))
    return Split(prefix, text.src, text.tgt, src_tokens, tgt_tokens, text.src_path, text.tgt_path)


def build_vocabs(config: DataConfig, train: Split) -> tuple[Vocab, Vocab]:
    """Vocabularies from the training split only (its first `data.train_limit` pairs): spaCy
    tokens counted, or the pieces of the SentencePiece models trained on its text."""
    if config.tokenizer == "sentencepiece":
        text = ParallelText(train.src_text, train.tgt_text, train.src_path, train.tgt_path)
        return _subword_vocabs(config, text)
    limit = config.train_limit
    sides = (train.src_tokens[:limit], train.tgt_tokens[:limit])
    if config.joint_vocab:
        sides = (sides[0] + sides[1],)
    vocabs = [
        Vocab.build(tokens, min_freq=config.min_freq, max_size=config.max_size) for tokens in sides
    ]
    return vocabs[0], vocabs[-1]


def encode_source(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    return frame(vocab.encode(tokens[: config.max_length]), vocab, config, source=True)


def encode_target(tokens: list[str], vocab: Vocab, config: DataConfig) -> list[int]:
    return frame(vocab.encode(tokens[: config.max_length]), vocab, config, source=False)


def frame(ids: list[int], vocab: Vocab, config: DataConfig, *, source: bool) -> list[int]:
    """`<sos> ids <eos>`, the ids cut to `data.max_length` and, on the source side, reversed
    if configured."""
    ids = ids[: config.max_length]
    if source and config.reverse_source:
        ids.reverse()  # Sutskever et al. (2014), section 3.3: reversing the source helps.
    return [vocab.sos, *ids, vocab.eos]


def numericalize(
    split: Split, src_vocab: Vocab, tgt_vocab: Vocab, config: DataConfig, limit: int | None = None
) -> list[Example]:
    pairs = list(zip(split.src_tokens, split.tgt_tokens, strict=True))[:limit]
    return [
        Example(encode_source(s, src_vocab, config), encode_target(t, tgt_vocab, config))
        for s, t in pairs
    ]


def _read(
    config: DataConfig,
    prefix: str,
    data_dir: str | None,
    *,
    skip_empty: bool,
    part: Part | None = None,
) -> ParallelText:
    files = locate(config, prefix, data_dirs(data_dir or config.dir), part)
    return read_split(files, skip_empty=skip_empty)


def subword_vocabs(config: DataConfig, data_dir: str | None = None) -> tuple[Vocab, Vocab]:
    """The SentencePiece vocabularies the config trains on its training split (cached)."""
    prefix = split_prefix(config, "train")
    return _subword_vocabs(config, _read(config, prefix, data_dir, skip_empty=True, part="train"))


def _subword_vocabs(config: DataConfig, train: ParallelText) -> tuple[Vocab, Vocab]:
    """The SentencePiece vocabularies of the training text's first `data.train_limit` pairs:
    one model for both sides with `data.joint_vocab`, else one each."""
    limit = config.train_limit
    src = _subword_text(config, train.src[:limit], train.src_path, config.src_lang)
    tgt = _subword_text(config, train.tgt[:limit], train.tgt_path, config.tgt_lang)
    if config.joint_vocab:
        joint = _train_cached(config, src + tgt, f"{config.src_lang}+{config.tgt_lang}")
        return joint, joint
    return _train_cached(config, src, config.src_lang), _train_cached(config, tgt, config.tgt_lang)


def _subword_text(config: DataConfig, lines: list[str], path: Path, lang: str) -> list[str]:
    """What SentencePiece trains on; spaCy's tokens, where it reads them, come from the cache."""
    words = None
    if config.sp_pretokenize:
        words = _tokenize_cached(lines, path, Tokenizer(lang, lowercase=config.lowercase))
    return sentencepiece_input(lines, lowercase=config.lowercase, words=words)


def _train_cached(config: DataConfig, lines: list[str], name: str) -> Vocab:
    return train_cached(config, hashlib.sha256("\n".join(lines).encode()), lines, name, len(lines))


def train_cached(config: DataConfig, digest, lines: Iterable[str], name: str, count: int) -> Vocab:
    """The SentencePiece vocabulary of `count` lines, trained or read from the cache; `digest`
    is the SHA-256 of the lines joined by newlines, which keys the cache."""
    settings = {"model_type": config.sp_model_type, "vocab_size": config.vocab_size}
    digest.update(f"{CACHE_FORMAT}|{subword.cache_key(**settings)}".encode())
    cache_file = cache_dir() / "subword" / f"{digest.hexdigest()[:32]}.model"
    if cache_file.is_file():
        try:
            return subword.subword_vocab(cache_file.read_bytes())
        except (OSError, ValueError):
            pass  # A damaged cache entry is trained again below.
    log.info(
        "training a SentencePiece %s model of %d pieces on %d lines of %s (cached for later runs)",
        config.sp_model_type,
        config.vocab_size,
        count,
        name,
    )
    model = subword.train(lines, **settings, name=name)
    write_cache(cache_file, model)
    return subword.subword_vocab(model)


def _tokenize_cached(
    lines: list[str], path: Path, tokenizer: Tokenizer | SentencePieceTokenizer
) -> list[list[str]]:
    # Keyed by the lines themselves: the same file paired differently may drop other lines.
    digest = hashlib.sha256("\n".join(lines).encode())
    digest.update(f"{CACHE_FORMAT}|{tokenizer.cache_key}".encode())
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
    if isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.pretokenizer:
        # spaCy's tokens come from their own cache entry, which training has filled.
        words = _tokenize_cached(lines, path, tokenizer.pretokenizer)
        prepared = sentencepiece_input(lines, lowercase=tokenizer.lowercase, words=words)
        tokens = tokenizer.encode(prepared)
    else:
        tokens = tokenizer.tokenize_many(lines)
    write_cache(cache_file, gzip.compress(json.dumps(tokens, ensure_ascii=False).encode()))
    return tokens
