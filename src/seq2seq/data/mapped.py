"""The prepared corpus on disk: token ids in flat binary files, memory-mapped by every process.

A prepared corpus is a folder:

    manifest.json         format version, settings, inputs (path, size, SHA-256), counts, files
    src.ids, tgt.ids      every pair's token ids, one after another, without <sos>/<eos>:
                          uint16 when the vocabulary fits, else uint32
    src.offsets, ...      where each pair's ids start: uint32 when the ids number fewer than
                          2**32, else int64
    src.lengths, ...      uint16 or uint32: how many ids each pair has
    src.vocab.json, ...   the vocabulary's tokens in id order (spaCy), or
    src.model, ...        the SentencePiece model whose pieces are the vocabulary

Training reads the lengths into memory (they drive batching); a batch reads its pairs' ids from
the files, through the kernel's page cache, one copy shared by every process that reads them.
The folder is written elsewhere and renamed into place, the manifest last: a folder under its
final name is whole. One that is damaged anyway (a file cut short, a disk error) or written by
another format version is refused with one line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seq2seq.data.subword import subword_vocab
from seq2seq.data.vocab import Vocab
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIDES = ("src", "tgt")


class PreparedError(DataError):
    """A prepared corpus is damaged or from another format version."""


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def offset_dtype(tokens: int) -> np.dtype:
    return np.dtype(np.uint32 if tokens < 2**32 else np.int64)


def length_dtype(longest: int) -> np.dtype:
    return np.dtype(np.uint16 if longest < 2**16 else np.uint32)


@dataclass(frozen=True)
class PreparedSide:
    """One side: ids and offsets on disk, lengths in memory. The ids and offsets are mapped,
    for reading them whole; a pair's are read with `pread` (see `ids_of`)."""

    ids: np.ndarray  # (tokens,) mapped
    offsets: np.ndarray  # (pairs,) mapped
    lengths: np.ndarray  # (pairs,)
    vocab: Vocab
    files: tuple = field(default=(), repr=False, compare=False)  # (ids, offsets), open

    def ids_of(self, index: int) -> np.ndarray:
        """The ids of pair `index`, read with `pread` rather than through the mapping. A page
        fault maps whatever the page cache holds around the page (with large folios, far more
        than the page), so a few batches read through the mapping swelled each process's RSS,
        and an epoch would swell it by the whole file (docs/data-measured.md). Read, the bytes
        stay in the kernel's page cache, one copy shared by every process."""
        length = int(self.lengths[index])
        if not self.files:  # no pread (Windows), or nothing to read
            start = int(self.offsets[index])
            return self.ids[start : start + length]
        ids, offsets = self.files
        start = int(_pread(offsets, self.offsets.dtype, index, 1)[0])
        return _pread(ids, self.ids.dtype, start, length)


def _pread(handle, dtype: np.dtype, first: int, count: int) -> np.ndarray:
    size = dtype.itemsize
    return np.frombuffer(os.pread(handle.fileno(), count * size, first * size), dtype=dtype)


@dataclass(frozen=True)
class PreparedCorpus:
    path: Path
    manifest: dict
    src: PreparedSide
    tgt: PreparedSide

    def __len__(self) -> int:
        return len(self.src.lengths)

    @property
    def part_sizes(self) -> list[int]:
        """The pairs of each training corpus, in `data.train`'s order, one after another."""
        return [part["pairs"] for part in self.manifest["parts"]]


def open_prepared(path: Path) -> PreparedCorpus:
    """The prepared corpus in `path`; PreparedError if it is damaged or of another version."""
    manifest = read_manifest(path)
    for name, size in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            raise PreparedError(
                f"prepared corpus {path} is damaged: {name} is missing or cut short; "
                f"delete the folder and run seq2seq prepare CONFIG again"
            )
    sides = [_open_side(path, side, manifest["sides"][side]) for side in SIDES]
    return PreparedCorpus(path, manifest, *sides)


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        version = manifest["format"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PreparedError(
            f"prepared corpus {path} is damaged: its {MANIFEST} cannot be read "
            f"({type(error).__name__}); delete the folder and run seq2seq prepare CONFIG again"
        ) from None
    if version != FORMAT_VERSION:
        raise PreparedError(
            f"prepared corpus {path} has format version {version}, and this seq2seq reads "
            f"version {FORMAT_VERSION}; run seq2seq prepare CONFIG to prepare it again"
        )
    return manifest


def _open_side(path: Path, side: str, facts: dict) -> PreparedSide:
    pairs, tokens = facts["pairs"], facts["tokens"]
    lengths = np.fromfile(path / f"{side}.lengths", dtype=facts["length_dtype"])
    offsets = np.memmap(
        path / f"{side}.offsets", dtype=offset_dtype(tokens), mode="r", shape=(pairs,)
    )
    # An empty file cannot be mapped; a corpus of empty sides has no ids to read.
    ids = (
        np.memmap(path / f"{side}.ids", dtype=facts["id_dtype"], mode="r", shape=(tokens,))
        if tokens
        else np.zeros(0, dtype=facts["id_dtype"])
    )
    ends_right = pairs == 0 or int(offsets[-1]) + int(lengths[-1]) == tokens
    if len(lengths) != pairs or not ends_right:
        raise PreparedError(
            f"prepared corpus {path} is damaged: the {side} index does not match its ids; "
            f"delete the folder and run seq2seq prepare CONFIG again"
        )
    files = ()
    if tokens and hasattr(os, "pread"):
        files = (open(path / f"{side}.ids", "rb"), open(path / f"{side}.offsets", "rb"))  # noqa: SIM115
    return PreparedSide(ids, offsets, lengths, load_vocab(path, side), files)


def load_vocab(path: Path, side: str) -> Vocab:
    model = path / f"{side}.model"
    if model.is_file():
        return subword_vocab(model.read_bytes())
    return Vocab(json.loads((path / f"{side}.vocab.json").read_text(encoding="utf-8")))


def save_vocab(path: Path, side: str, vocab: Vocab) -> None:
    if vocab.subword_model is not None:
        (path / f"{side}.model").write_bytes(vocab.subword_model)
    else:
        text = json.dumps(vocab.itos, ensure_ascii=False)
        (path / f"{side}.vocab.json").write_text(text, encoding="utf-8")
