"""The one line reader behind corpus files and the CLI's --input, --source, --target and
standard input: UTF-8, gzip, line ends, and one-line errors naming the file and line."""

from __future__ import annotations

import gzip
import io
import sys
import types
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT, cli

from seq2seq.data.reading import read_lines, read_stdin
from seq2seq.errors import DataError


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_gzip_and_plain_files_both_read(tmp_path):
    text = "Ein Hund.\nGrüße aus Köln.\n".encode()
    assert read_lines(_write(tmp_path / "a.de.gz", text)) == ["Ein Hund.", "Grüße aus Köln."]
    assert read_lines(_write(tmp_path / "a.de", text)) == ["Ein Hund.", "Grüße aus Köln."]


def test_crlf_line_ends_are_stripped_and_a_last_line_without_newline_is_kept(tmp_path):
    path = _write(tmp_path / "windows.en", b"A dog.\r\nA cat.\r\nA cow.")
    assert read_lines(path) == ["A dog.", "A cat.", "A cow."]


def test_lines_are_split_only_at_newlines(tmp_path):
    # Unicode line separators inside a sentence must not shift the alignment of the files.
    path = _write(tmp_path / "odd.en", "one\u2028half\nnext\x85line\x0cpage\n".encode())
    assert read_lines(path) == ["one\u2028half", "next\x85line\x0cpage"]


def test_lines_are_nfc_normalised(tmp_path):
    path = _write(tmp_path / "nfd.de", unicodedata.normalize("NFD", "Männer\n").encode())
    assert read_lines(path) == ["Männer"]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_sentence(tmp_path):
    path = _write(tmp_path / "bom.de", "\ufeffEin Hund.\nZwei Katzen.\n".encode())
    assert read_lines(path) == ["Ein Hund.", "Zwei Katzen."]


@pytest.mark.parametrize("name", ["bad.de", "bad.de.gz"])
def test_invalid_utf8_names_the_file_and_line(tmp_path, name):
    path = _write(tmp_path / name, "Ein Hund.\nGro\u00df".encode() + b"\xff\xfe\n")
    with pytest.raises(DataError) as error:
        read_lines(path)
    assert f"{path} line 2 is not valid UTF-8" in str(error.value)


def test_a_corrupt_gzip_file_is_refused_by_name(tmp_path):
    path = tmp_path / "broken.de.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError, match=f"cannot read {path}"):
        read_lines(path)
    truncated = tmp_path / "cut.de.gz"
    truncated.write_bytes(gzip.compress(b"Ein Hund.\n" * 100)[:-8])
    with pytest.raises(DataError, match=f"cannot read {truncated}"):
        read_lines(truncated)
    damaged = bytearray(gzip.compress("Ein Hund läuft.\n".encode() * 100))
    damaged[20:30] = b"\xff" * 10  # inside the compressed stream: a zlib error
    (tmp_path / "damaged.de.gz").write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="cannot read .*damaged.de.gz"):
        read_lines(tmp_path / "damaged.de.gz")


def test_invalid_utf8_gives_the_byte_within_the_line(tmp_path):
    path = _write(tmp_path / "bad.en", b"A dog.\nAB\xc3(\n")
    with pytest.raises(DataError) as error:
        read_lines(path)
    assert str(error.value) == (
        f"{path} line 2 is not valid UTF-8 (byte 3); convert it to UTF-8, e.g. with iconv"
    )


def test_a_missing_file_or_a_folder_is_one_line_naming_it(tmp_path):
    with pytest.raises(DataError) as error:
        read_lines(tmp_path / "missing.de")
    assert str(error.value) == f"cannot read {tmp_path / 'missing.de'}: No such file or directory"
    with pytest.raises(DataError) as error:
        read_lines(tmp_path)
    assert str(error.value) == f"cannot read {tmp_path}: Is a directory"


def test_standard_input_is_read_alike_and_named_in_errors(monkeypatch):
    data = "\ufeffZwei Männer.\r\nEin Hund.".encode()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    assert read_stdin() == ["Zwei Männer.", "Ein Hund."]
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"ok\n\xff\n")))
    with pytest.raises(DataError, match="^standard input line 2 is not valid UTF-8"):
        read_stdin()


def test_nothing_and_one_empty_line_are_told_apart(tmp_path):
    assert read_lines(_write(tmp_path / "none.en", b"")) == []
    assert read_lines(_write(tmp_path / "one.en", b"\n")) == [""]
    assert read_lines(_write(tmp_path / "two.en", b"\r\n\n")) == ["", ""]


def test_translate_reads_gzip_input_like_plain_input(tmp_path, capsys):
    data = "\ufeffEin Mann sitzt auf einer Bank.\r\n\nKinder laufen am Strand entlang.\n".encode()
    outputs = []
    for name in ("in.de", "in.de.gz"):
        argv = ["translate", ROOT / "tests" / "data" / "golden", "--device", "cpu"]
        assert cli([*argv, "--input", _write(tmp_path / name, data)]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 3 and outputs[0][1] == "" and all(outputs[0][::2])
