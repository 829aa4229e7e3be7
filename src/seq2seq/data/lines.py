"""Reading text one sentence per line: the one reader for corpus files and for the CLI's input.

UTF-8 only (a byte-order mark is dropped), gzip when the name ends in `.gz`, split only at
`\\n` (a `\\r` before it is dropped, and Unicode's other line breaks stay inside their line, so
aligned files stay aligned), and NFC-normalised. Bad input stops with one line naming the file
and, for bad UTF-8, the line.
"""

from __future__ import annotations

import gzip
import sys
import unicodedata
import zlib
from pathlib import Path

from seq2seq.errors import DataError


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
