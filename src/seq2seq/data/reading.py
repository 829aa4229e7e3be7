"""Reading text: the one reader of corpus files, and of the CLI's input files and stdin.

Text is UTF-8 only (a byte-order mark is dropped), gzip when the name ends in `.gz`, split only
at `\\n` (a `\\r` before it is dropped, and Unicode's other line breaks stay inside their line,
so aligned files stay aligned), and NFC-normalised. Bad input stops with one line naming the
file and, for bad UTF-8, the line.

A split's pairs are read in aligned chunks of lines. A chunk holds the raw bytes of the same
lines of both files (or of the one tab-separated file); they become text (with the error
naming the file and line for bad UTF-8 or a line with other fields) where the chunk is
tokenized, in a worker process. Preparation streams the training corpora chunk by chunk, never
holding the whole of one; `read_split` reads a split whole, for evaluation, from the same
chunks.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import logging
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seq2seq.data.files import SplitFiles
from seq2seq.data.filters import empty_sides
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

CHUNK_LINES = 8192


@dataclass(frozen=True)
class Chunk:
    """Lines `first_line` .. of a split's files (counted from 1), as raw bytes: of both files,
    or (`tgt` None) of its one tab-separated file."""

    first_line: int
    src: bytes
    tgt: bytes | None
    files: SplitFiles

    def pairs(self) -> tuple[list[str], list[str], list[int]]:
        """The chunk's pairs (those of the held-out part the files name, if one), decoded, and
        each pair's line number; bad UTF-8 or a line with other fields stops with an error
        naming its file and line."""
        files, first = self.files, self.first_line
        src = split_lines(self.src, str(files.src_path), first)
        tgt = None if self.tgt is None else split_lines(self.tgt, str(files.tgt_path), first)
        return files.pairs(src, tgt, first)


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs of one split, as raw (untokenized) text."""

    src: list[str]
    tgt: list[str]
    src_path: Path
    tgt_path: Path


def read_split(files: SplitFiles, *, skip_empty: bool) -> ParallelText:
    """A split's pairs, read whole. Pairs with an empty side are skipped (and the skip logged)
    with `skip_empty`, as the training corpora are; otherwise every line is kept, so an
    evaluation counts every reference, and an empty source translates to an empty line."""
    src, tgt, numbers = [], [], []
    for chunk in read_chunks(files):
        pairs = chunk.pairs()
        for whole, part in zip((src, tgt, numbers), pairs, strict=True):
            whole.extend(part)
    if not src:
        raise DataError(
            f"the {files.holdout.part} part of {files} holds no pair; give data.holdout a "
            f"larger share for it"
        )
    empty = empty_sides(src, tgt).nonzero()[0].tolist()
    if len(empty) == len(src):
        raise DataError(f"{files} hold no pair with text on both sides")
    if empty and skip_empty:
        log.warning(
            "skipped %d sentence pairs with an empty side in %s (first at line %d)",
            len(empty),
            files,
            numbers[empty[0]],
        )
        skip = set(empty)
        src = [line for i, line in enumerate(src) if i not in skip]
        tgt = [line for i, line in enumerate(tgt) if i not in skip]
    elif empty:
        log.info(
            "%d sentence pairs in %s have an empty side (first at line %d); all are kept",
            len(empty),
            files,
            numbers[empty[0]],
        )
    return ParallelText(src, tgt, files.src_path, files.tgt_path)


def read_chunks(files: SplitFiles, lines: int = CHUNK_LINES) -> Iterator[Chunk]:
    """Chunks of `lines` lines of a split's files; DataError for a missing, unreadable or
    empty file and for two files of different lengths."""
    if files.columns is not None:
        yield from _chunks_of_one(files, lines)
        return
    src_path, tgt_path = files.src_path, files.tgt_path
    with _open(src_path) as src, _open(tgt_path) as tgt:
        first = 1
        while True:
            src_lines = _take(src, lines, src_path)
            tgt_lines = _take(tgt, lines, tgt_path)
            if first == 1 and not src_lines:
                _empty(src_path)
            if len(src_lines) != len(tgt_lines):
                _misaligned(src_path, tgt_path, first, src_lines, tgt_lines, src, tgt)
            if not src_lines:
                return
            yield Chunk(first, b"".join(src_lines), b"".join(tgt_lines), files)
            first += len(src_lines)


def _chunks_of_one(files: SplitFiles, lines: int) -> Iterator[Chunk]:
    with _open(files.src_path) as handle:
        first = 1
        while chunk := _take(handle, lines, files.src_path):
            yield Chunk(first, b"".join(chunk), None, files)
            first += len(chunk)
    if first == 1:
        _empty(files.src_path)


def _empty(path: Path) -> None:
    raise DataError(f"{path} is empty; a corpus file needs one sentence per line")


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


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, optionally gzip-compressed."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        reason = getattr(error, "strerror", None) or error
        raise DataError(f"cannot read {path}: {reason}") from None
    return split_lines(data, str(path))


def read_stdin() -> list[str]:
    return split_lines(sys.stdin.buffer.read(), "standard input")


def split_lines(data: bytes, source: str, first_line: int = 1) -> list[str]:
    """Lines of UTF-8 bytes; `source` names them in the error for bad UTF-8, counting from
    `first_line` (a chunk of a file read in pieces starts further on)."""
    if first_line == 1:
        data = data.removeprefix(b"\xef\xbb\xbf")  # a BOM, as Windows editors write
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + first_line
        byte = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(
            f"{source} line {line} is not valid UTF-8 (byte {byte}); "
            f"convert it to UTF-8, e.g. with iconv"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [unicodedata.normalize("NFC", line.rstrip("\r")) for line in lines]
