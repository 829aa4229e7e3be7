"""Hostile translation input on the golden checkpoint: empty, very long, unknown-script,
invisible, NFC/NFD and control-character lines each give one clean output line."""

from __future__ import annotations

import logging
import unicodedata

import pytest
import torch
from conftest import ROOT, cli
from helpers import (
    GOLDEN,
)

from seq2seq import checkpoint
from seq2seq.translate import Translator

# Hostile translation input, on the golden checkpoint.


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(checkpoint.load(GOLDEN), torch.device("cpu"))


def assert_one_clean_line_each(lines: list[str], outputs: list[str]) -> None:
    assert len(outputs) == len(lines)
    assert all(isinstance(out, str) and "\n" not in out and "\r" not in out for out in outputs)


def test_lines_without_text_translate_to_empty_lines(translator):
    lines = ["", " ", "\t", "\u3000", "\r", " \t \r"]
    assert translator.translate(lines) == [""] * len(lines)
    assert translator.translate(["Ein Mann.", "", "Ein Mann."])[1] == ""


def test_a_very_long_line_is_truncated_with_a_warning(translator, caplog):
    words = ("ein mann sitzt auf einer bank . " * 800).split()[:5000]
    assert len(words) == 5000
    with caplog.at_level(logging.WARNING, logger="seq2seq.translate"):
        outputs = translator.translate([" ".join(words), "Ein Mann."])
    assert_one_clean_line_each(["long", "short"], outputs)
    assert any("data.max_length=1000" in r.getMessage() for r in caplog.records)
    assert outputs[0] == translator.translate([" ".join(words[:1000])])[0]


def test_unknown_scripts_and_invisible_characters_give_one_line_each(translator):
    lines = [
        "Ein Mann \U0001f600 sitzt \U0001f468\u200d\U0001f469\u200d\U0001f467 auf der Bank.",
        "一个男人坐在长凳上。",
        "رجل يجلس على مقعد",
        "\u202eEin Mann\u202c sitzt\u200f auf\u200e einer Bank.",  # bidi controls and marks
        "Ein\u200bMann\u200d\u2060sitzt\ufeff.",
        "😀",
        "\U0010ffff\ue000",  # private use
        "e\u0301\u0301\u0301",  # stacked combining marks
    ]
    outputs = translator.translate(lines)
    assert_one_clean_line_each(lines, outputs)
    assert all(outputs)


def test_nfc_and_nfd_input_translate_alike(translator):
    text = "Zwei Männer gehen über die Straße, Jürgen läuft."
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert translator.translate([nfd]) == translator.translate([text])


# str.splitlines() would also split at \x0b \x0c \x1c \x1d \x1e \x85 \u2028 \u2029.
CONTROL_LINES = [
    "Ein Mann sitzt auf einer Bank.\r",
    "Zwei\x00Hunde\x1b[31m spielen\x7f im Schnee.",
    "Eine Frau\u2028liest\x85ein Buch.\r",
    "\x0b\x0c\x1c\x1d\x1e",
    "Kinder\u2029laufen\x07 am Strand entlang.",
    "\r",
    "",
    "Ein\tMann\x08.",
]


def translate_file(tmp_path, capsys, *options) -> list[str]:
    (tmp_path / "in.de").write_bytes("\n".join(CONTROL_LINES).encode())  # no final newline
    code = cli(["translate", GOLDEN, "--input", tmp_path / "in.de", "--device", "cpu", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "\r" not in captured.out
    out = captured.out.split("\n")
    assert out.pop() == ""
    return out


def test_control_characters_and_crlf_give_one_output_line_per_input_line(
    translator, tmp_path, capsys
):
    out = translate_file(tmp_path, capsys)
    assert out == translator.translate([line.removesuffix("\r") for line in CONTROL_LINES])
    golden = (ROOT / "tests" / "data" / "golden.greedy.en").read_text(encoding="utf-8")
    assert out[0] == golden.splitlines()[0]  # the same sentence without the '\r'
    assert out[5:7] == ["", ""]


def test_control_characters_give_n_best_lines_per_input_line(tmp_path, capsys):
    out = translate_file(tmp_path, capsys, "--beam-size", "2", "--n-best", "2")
    numbers = [int(line.split(" ||| ")[0]) for line in out]
    assert numbers == [i for i in range(len(CONTROL_LINES)) for _ in range(2)]
