"""Writing a prepared corpus's token ids: spaCy's tokens numbered provisionally in order of
first appearance (the vocabulary is known only once the whole corpus is counted), and each
side's id file, appended chunk by chunk and remapped to vocabulary ids in a second, numpy pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from seq2seq.config import DataConfig
from seq2seq.data.mapped import SIDES, id_dtype, length_dtype, offset_dtype
from seq2seq.data.vocab import Vocab

REMAP_CHUNK = 1 << 22  # ids remapped at a time in the second pass


class Provisional:
    """spaCy's tokens numbered in order of first appearance, and counted per side, while the
    vocabulary is not yet known."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.counts = [np.zeros(0, np.int64), np.zeros(0, np.int64)]

    def number(self, words: list[str], ids: np.ndarray, side: int) -> np.ndarray:
        """A chunk's ids (indices into its `words`) as provisional ids, counted."""
        index = self.index
        table = np.fromiter(
            (index.setdefault(word, len(index)) for word in words), np.uint32, len(words)
        )
        ids = table[ids]
        counts = np.bincount(ids, minlength=len(index))
        counts[: len(self.counts[side])] += self.counts[side]
        self.counts[side] = counts
        return ids

    def vocabs(self, data: DataConfig) -> tuple[Vocab, Vocab]:
        tokens = list(self.index)
        size = len(tokens)
        src, tgt = (np.pad(c, (0, size - len(c))) for c in self.counts)
        sides = [src + tgt] if data.joint_vocab else [src, tgt]
        built = [
            Vocab.from_counts(
                Counter({tokens[i]: int(c[i]) for i in np.flatnonzero(c)}),
                min_freq=data.min_freq,
                max_size=data.max_size,
            )
            for c in sides
        ]
        return built[0], built[-1]

    def mapping(self, vocab: Vocab) -> np.ndarray:
        """Vocabulary ids by provisional id: a token left out of the vocabulary is <unk>."""
        table = np.full(len(self.index), vocab.unk, dtype=np.uint32)
        for token, number in self.index.items():
            table[number] = vocab.stoi.get(token, vocab.unk)
        return table


class SideWriter:
    """One side's ids, appended chunk by chunk to `{side}.ids` (provisional ids for spaCy,
    turned into vocabulary ids by `finish`), and its lengths, written by `finish`."""

    def __init__(self, folder: Path, side: str, dtype: np.dtype):
        self.folder, self.side, self.dtype = folder, side, dtype
        self.path = folder / f"{side}.ids"
        self.file = open(self.path, "wb")  # noqa: SIM115 (closed by finish)
        self.lengths: list[np.ndarray] = []

    def add(self, side, keep: np.ndarray, words: Provisional | None) -> None:
        ids = side.ids[np.repeat(keep, side.lengths)]
        if words is not None:
            ids = words.number(side.words, ids, SIDES.index(self.side))
        write_array(self.file, ids.astype(self.dtype))
        self.lengths.append(side.lengths[keep])

    def finish(self, vocab: Vocab, words: Provisional | None) -> dict:
        self.file.close()
        if words is not None:
            self._remap(words.mapping(vocab), id_dtype(len(vocab)))
        lengths = np.concatenate(self.lengths)
        lengths = lengths.astype(length_dtype(int(lengths.max(initial=0))))
        tokens = int(lengths.sum(dtype=np.int64))
        offsets = np.zeros(len(lengths), dtype=offset_dtype(tokens))
        np.cumsum(lengths[:-1], out=offsets[1:])
        for name, array in (("lengths", lengths), ("offsets", offsets)):
            with open(self.folder / f"{self.side}.{name}", "wb") as out:
                write_array(out, array)
        return {
            "pairs": len(lengths),
            "tokens": tokens,
            "id_dtype": str(id_dtype(len(vocab))),
            "length_dtype": str(lengths.dtype),
            "vocab": len(vocab),
        }

    def _remap(self, table: np.ndarray, dtype: np.dtype) -> None:
        provisional = self.path.with_suffix(".provisional")
        self.path.rename(provisional)
        total = provisional.stat().st_size // 4
        with open(self.path, "wb") as out:
            for start in range(0, total, REMAP_CHUNK):
                ids = np.fromfile(
                    provisional, np.uint32, min(REMAP_CHUNK, total - start), offset=start * 4
                )
                write_array(out, table[ids].astype(dtype))
        provisional.unlink()


def write_array(handle, array: np.ndarray) -> None:
    """The array's bytes to an open file. numpy's tofile reports a short write ("1304 requested
    and 500 written") without its reason; a file's own write raises the OSError it is
    (ENOSPC, EFBIG), which says what to fix."""
    handle.write(np.ascontiguousarray(array).data)
