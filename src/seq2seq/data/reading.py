"""Reading a parallel corpus in aligned chunks of lines, never the whole of it at once.

A chunk holds the raw bytes of the same lines of both files; decoding (and the error naming the
file and line for bad UTF-8) happens where the chunk is tokenized, in a worker process.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seq2seq.errors import DataError

CHUNK_LINES = 8192


@dataclass(frozen=True)
class Chunk:
    """Lines `first_line` .. of both files of a split (counted from 1), as raw bytes."""

    first_line: int
    src: bytes
    tgt: bytes
    src_name: str
    tgt_name: str


def read_chunks(src_path: Path, tgt_path: Path, lines: int = CHUNK_LINES) -> Iterator[Chunk]:
    """Aligned chunks of `lines` lines of two files; DataError for a missing, unreadable or
    empty file and for files of different lengths."""
    with _open(src_path) as src, _open(tgt_path) as tgt:
        first = 1
        while True:
            src_lines = _take(src, lines, src_path)
            tgt_lines = _take(tgt, lines, tgt_path)
            if len(src_lines) != len(tgt_lines):
                _misaligned(src_path, tgt_path, first, src_lines, tgt_lines, src, tgt)
            if not src_lines:
                if first == 1:
                    raise DataError(
                        f"{src_path} is empty; a corpus file needs one sentence per line"
                    )
                return
            yield Chunk(
                first, b"".join(src_lines), b"".join(tgt_lines), str(src_path), str(tgt_path)
            )
            first += len(src_lines)


@contextlib.contextmanager
def _open(path: Path):
    try:
        handle = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    with handle:
        yield handle


def _take(handle, lines: int, path: Path) -> list[bytes]:
    try:
        return list(itertools.islice(handle, lines))
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
        ) from None


def _misaligned(src_path, tgt_path, first, src_lines, tgt_lines, src, tgt) -> None:
    """Stop with both files' line counts (reading the rest of the longer one to count it)."""
    src_count = first - 1 + len(src_lines) + sum(1 for _ in src)
    tgt_count = first - 1 + len(tgt_lines) + sum(1 for _ in tgt)
    raise DataError(
        f"{src_path} has {src_count} lines but {tgt_path} has {tgt_count}; "
        f"the files of a split must be line-aligned"
    )
