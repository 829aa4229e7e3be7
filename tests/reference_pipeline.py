"""The training data read the simple way, whole and in memory, as a reference that the
streamed preparation (`seq2seq.data.prepare`) must agree with: the training split read and
tokenized at once, its vocabularies counted from the tokens or trained on the text. Tests
only: training reads its corpora through the prepared corpus."""

from __future__ import annotations

import hashlib

from seq2seq.config import DataConfig
from seq2seq.data import splits
from seq2seq.data.files import data_dirs, locate
from seq2seq.data.reading import ParallelText, read_split
from seq2seq.data.subword import train_cached
from seq2seq.data.tokenizer import Tokenizer, sentencepiece_input
from seq2seq.data.vocab import Vocab


def load_split(config: DataConfig, name: str, data_dir: str | None = None) -> splits.Split:
    """Split `name`, cut by the SentencePiece models trained on the training split (the
    training split's own, for `train`) where the config asks for them."""
    if config.tokenizer != "sentencepiece":
        return splits.load_split(config, name, data_dir)
    train = _train_text(config, data_dir)
    vocabs = _subword_vocabs(config, train)
    return splits.load_split(config, name, data_dir, vocabs=vocabs)


def build_vocabs(config: DataConfig, train: splits.Split) -> tuple[Vocab, Vocab]:
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


def subword_vocabs(config: DataConfig, data_dir: str | None = None) -> tuple[Vocab, Vocab]:
    """The SentencePiece vocabularies the config trains on its training split (cached)."""
    return _subword_vocabs(config, _train_text(config, data_dir))


def _train_text(config: DataConfig, data_dir: str | None) -> ParallelText:
    prefix = splits.split_prefix(config, "train")
    files = locate(config, prefix, data_dirs(data_dir or config.dir), "train")
    return read_split(files, skip_empty=True)


def _subword_vocabs(config: DataConfig, train: ParallelText) -> tuple[Vocab, Vocab]:
    """The SentencePiece vocabularies of the training text's first `data.train_limit` pairs:
    one model for both sides with `data.joint_vocab`, else one each."""
    limit = config.train_limit
    src = _subword_text(config, train.src[:limit], train.src_path, config.src_lang)
    tgt = _subword_text(config, train.tgt[:limit], train.tgt_path, config.tgt_lang)
    if config.joint_vocab:
        joint = _train(config, src + tgt, f"{config.src_lang}+{config.tgt_lang}")
        return joint, joint
    return _train(config, src, config.src_lang), _train(config, tgt, config.tgt_lang)


def _subword_text(config: DataConfig, lines: list[str], path, lang: str) -> list[str]:
    words = None
    if config.sp_pretokenize:
        words = splits.tokenized(lines, path, Tokenizer(lang, lowercase=config.lowercase))
    return sentencepiece_input(lines, lowercase=config.lowercase, words=words)


def _train(config: DataConfig, lines: list[str], name: str) -> Vocab:
    return train_cached(config, hashlib.sha256("\n".join(lines).encode()), lines, name, len(lines))
