"""The data a training run needs, from its config: the prepared training corpus (mapped, and
prepared first if missing or stale), the numericalized validation examples and their
references, the vocabularies, and the target tokenizer that turns hypotheses back into text
for BLEU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

import numpy as np

from seq2seq import distributed
from seq2seq.config import DataConfig
from seq2seq.data.batching import Lengths, bucket_batches
from seq2seq.data.examples import Example, frame
from seq2seq.data.mapped import PreparedCorpus, length_dtype, open_prepared
from seq2seq.data.prepare import prepare, prepared_path
from seq2seq.data.sampling import epoch_order
from seq2seq.data.splits import load_split, numericalize
from seq2seq.data.tokenizer import SentencePieceTokenizer, Tokenizer, tokenizer_for
from seq2seq.data.vocab import Vocab


class TrainCorpus:
    """The training pairs of a prepared corpus. In memory: each pair's two lengths, as the
    examples will have them (cut to `data.max_length`, with <sos> and <eos>); the ids stay on
    disk until a batch asks for them."""

    def __init__(self, prepared: PreparedCorpus, config: DataConfig):
        self.prepared = prepared
        self.config = config
        dtype = length_dtype(config.max_length + 2)
        self.lengths = Lengths(
            *(
                np.minimum(side.lengths, config.max_length).astype(dtype) + dtype.type(2)
                for side in (prepared.src, prepared.tgt)
            )
        )

    def __len__(self) -> int:
        return len(self.prepared)

    def examples(self, indices: Sequence[int]) -> list[Example]:
        src, tgt, config = self.prepared.src, self.prepared.tgt, self.config
        return [
            Example(
                frame(src.ids_of(i).tolist(), src.vocab, config, source=True),
                frame(tgt.ids_of(i).tolist(), tgt.vocab, config, source=False),
            )
            for i in indices
        ]

    def target_tokens(self, indices: Sequence[int]) -> int:
        """The target tokens the decoder predicts for these examples (all but <sos>)."""
        return int(self.lengths.tgt[np.asarray(indices)].sum(dtype=np.int64)) - len(indices)

    def batch_count(self, size: int, unit: str) -> int:
        """An epoch's batches: exact for batches of sentences (each pool of examples gives the
        same number whatever the shuffle), about that for token batches. Counted on the
        unshuffled order: shuffling a large corpus's indices is slow (docs/data-measured.md)."""
        order = np.arange(len(self))
        return len(bucket_batches(self.lengths, size=size, unit=unit, rng=Random(0), order=order))

    def epoch_order(self, rng) -> np.ndarray:
        return epoch_order(self.prepared.part_sizes, self.config.train_weights, rng)


@dataclass(frozen=True)
class TrainingData:
    train: TrainCorpus
    valid: list[Example]
    valid_references: list[str]
    src_vocab: Vocab
    tgt_vocab: Vocab
    tgt_tokenizer: Tokenizer | SentencePieceTokenizer


def training_data(config: DataConfig) -> TrainingData:
    prepared = shared_prepared(config)
    vocabs = (prepared.src.vocab, prepared.tgt.vocab)
    valid = load_split(config, "valid", vocabs=vocabs)
    return TrainingData(
        train=TrainCorpus(prepared, config),
        valid=numericalize(valid, *vocabs, config),
        valid_references=valid.tgt_text,
        src_vocab=vocabs[0],
        tgt_vocab=vocabs[1],
        tgt_tokenizer=tokenizer_for(config, "tgt", vocabs[1]),
    )


def shared_prepared(config: DataConfig) -> PreparedCorpus:
    """The prepared training corpus, one copy for all processes: under torchrun process 0
    prepares it (if needed) while the others wait, then every process maps the same files;
    a data error stops every process at once."""
    prepared = distributed.on_main(lambda: prepare(config))
    return prepared if distributed.is_main() else open_prepared(prepared_path(config))
