"""What the benchmarks share, written once: where Multi30k is, a corpus's examples and batches
as training and decoding read them, timing as the median of runs, and printing a table. Each
script keeps only what it measures.

seq2seq (and with it PyTorch) is imported by the functions that need it, so that a script
that only times subprocesses or reads text starts without it.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from seq2seq.config import DataConfig
    from seq2seq.data.batching import Batch
    from seq2seq.data.examples import Example
    from seq2seq.data.splits import Split
    from seq2seq.data.train_data import TrainCorpus
    from seq2seq.data.vocab import Vocab

ROOT = Path(__file__).resolve().parents[1]


def multi30k_dir() -> Path:
    """Multi30k's files: `$SEQ2SEQ_DATA`, else `$SEQ2SEQ_TEST_DATA`, else the shared copy
    beside the project."""
    for name in ("SEQ2SEQ_DATA", "SEQ2SEQ_TEST_DATA"):
        if os.environ.get(name):
            return Path(os.environ[name])
    return ROOT.parent / "shared" / "data" / "multi30k"


@dataclass
class TrainingSet:
    """A training corpus as `seq2seq train` reads it (prepared once, then mapped), and one
    epoch of its batches of sentences, bucketed by length, as index arrays."""

    corpus: TrainCorpus
    src_vocab: Vocab
    tgt_vocab: Vocab
    epoch: list[np.ndarray]

    def batches(self, chosen: list[np.ndarray]) -> list[Batch]:
        """The chosen index arrays as padded tensors, on the CPU."""
        from seq2seq.data.batching import collate

        pads = self.src_vocab.pad, self.tgt_vocab.pad
        return [collate(self.corpus.examples(indices), indices, *pads) for indices in chosen]


def training_set(data: DataConfig | None = None, batch_size: int = 128) -> TrainingSet:
    """Multi30k's training pairs with the default data settings (or `data`), and an epoch of
    batches of `batch_size` sentences drawn with seed 0."""
    from seq2seq.config import DataConfig
    from seq2seq.data.batching import bucket_batches
    from seq2seq.data.train_data import training_data

    found = training_data(data or DataConfig())
    lengths = found.train.lengths
    epoch = bucket_batches(lengths, size=batch_size, unit="sentences", rng=random.Random(0))
    return TrainingSet(found.train, found.src_vocab, found.tgt_vocab, epoch)


def split_examples(
    data: DataConfig, vocabs: tuple[Vocab, Vocab], name: str, limit: int | None = None
) -> tuple[Split, list[Example]]:
    """Split `name` (test, val, ...) and its first `limit` examples, as a checkpoint with
    these vocabularies reads them."""
    from seq2seq.data.splits import load_split, numericalize

    split = load_split(data, name, vocabs=vocabs)
    return split, numericalize(split, *vocabs, data)[:limit]


def seconds(function: Callable[[], object]) -> float:
    """The wall-clock seconds of one call."""
    return timed(function)[1]


def timed(function: Callable[[], object]) -> tuple[object, float]:
    """What one call returns, and its wall-clock seconds."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """The median wall-clock seconds of `repeats` calls: one slow call, from whatever else
    the machine did meanwhile, moves it little."""
    return statistics.median(seconds(function) for _ in range(repeats))


class Table:
    """Rows printed under a header as each is measured. A column is (name, width) for text,
    left-aligned, or (name, width, format) for numbers, right-aligned (format ".1f", ",d",
    ".1%"). `markdown` prints a Markdown table instead, for a docs page."""

    def __init__(self, *columns: tuple, separator: str = " ", markdown: bool = False):
        self.columns = [(name, width, *rest) for name, width, *rest in columns]
        self.separator, self.markdown = separator, markdown
        if markdown:
            print("| " + " | ".join(name for name, *_ in self.columns) + " |")
            print("|" + " --- |" * len(self.columns))
        else:
            self._print([name for name, *_ in self.columns], header=True)

    def row(self, *values) -> None:
        if self.markdown:
            cells = [
                _format(value, rest)
                for value, (_, _, *rest) in zip(values, self.columns, strict=True)
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
        else:
            self._print(values)

    def _print(self, values, header: bool = False) -> None:
        cells = []
        for value, (_, width, *rest) in zip(values, self.columns, strict=True):
            text = value if header else _format(value, rest)
            cells.append(f"{text:>{width}}" if rest else f"{text:<{width}}")
        print(self.separator.join(cells).rstrip(), flush=True)


def _format(value, rest: list) -> str:
    return format(value, rest[0]) if rest and isinstance(value, int | float) else str(value)
