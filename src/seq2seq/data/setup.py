"""The data a training run needs, from its config: the numericalized training and validation
examples, the validation references, the vocabularies, and the target tokenizer that turns
hypotheses back into text for BLEU."""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.config import DataConfig
from seq2seq.data.dataset import Example, build_vocabs, load_split, numericalize
from seq2seq.data.tokenizer import SentencePieceTokenizer, Tokenizer, tokenizer_for
from seq2seq.data.vocab import Vocab


@dataclass(frozen=True)
class TrainingData:
    train: list[Example]
    valid: list[Example]
    valid_references: list[str]
    src_vocab: Vocab
    tgt_vocab: Vocab
    tgt_tokenizer: Tokenizer | SentencePieceTokenizer


def training_data(data: DataConfig) -> TrainingData:
    """Vocabularies from the training split; `data.train_limit` caps the training examples."""
    train_split = load_split(data, "train")
    valid_split = load_split(data, "valid")
    src_vocab, tgt_vocab = build_vocabs(data, train_split)
    return TrainingData(
        train=numericalize(train_split, src_vocab, tgt_vocab, data, limit=data.train_limit),
        valid=numericalize(valid_split, src_vocab, tgt_vocab, data),
        valid_references=valid_split.tgt_text,
        src_vocab=src_vocab,
        tgt_vocab=tgt_vocab,
        tgt_tokenizer=tokenizer_for(data, "tgt", tgt_vocab),
    )
