"""One output length rule for every decoding command: the checkpoint's train.max_length_a/b,
the rule its validation BLEU was decoded with, unless --max-length-a/--max-length-b say
otherwise; their checks; and `score`'s warning about truncated targets."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_error, cli

from seq2seq import checkpoint
from seq2seq.decode import DecodeSettings
from seq2seq.translate import Translator

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
SOURCE = "Zwei Männer sitzen auf einer Bank vor einem großen Gebäude."


@pytest.fixture
def short_rule(tmp_path) -> Path:
    """The golden checkpoint with a length rule of 0 x source + 2 tokens in its config."""
    run = tmp_path / "short"
    shutil.copytree(GOLDEN, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"].update(max_length_a=0.0, max_length_b=2)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def longest(run: Path, settings: DecodeSettings) -> int:
    translator = Translator(checkpoint.load(run), torch.device("cpu"), settings)
    found = translator.nbest(DATA.joinpath("golden.de").read_text().splitlines()[:20] + [SOURCE])
    return max(len(hypotheses[0][1].tokens) for hypotheses in found)


def test_decoding_follows_the_checkpoint_s_length_rule(short_rule):
    assert longest(GOLDEN, DecodeSettings()) > 2  # the golden model writes longer outputs
    assert longest(short_rule, DecodeSettings()) == 2
    assert longest(short_rule, DecodeSettings(beam_size=3)) == 2
    assert longest(short_rule, DecodeSettings(max_length_b=4)) == 4  # an option overrides it


def test_translate_and_evaluate_follow_it_on_the_command_line(short_rule, capsys, tmp_path):
    assert cli(["translate", short_rule, SOURCE]) == 0
    assert len(capsys.readouterr().out.split()) <= 2
    assert cli(["translate", short_rule, SOURCE, "--max-length-a", "2", "--max-length-b", "0"]) == 0
    assert len(capsys.readouterr().out.split()) > 2
    small = tmp_path / "data"
    small.mkdir()
    for lang, text in (("de", SOURCE), ("en", "Two men are sitting on a bench.")):
        (small / f"small.{lang}").write_text(text + "\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    argv = ["evaluate", short_rule, "--split", "small", "--data-dir", small, "--output", output]
    assert cli(argv) == 0
    assert len(output.read_text().split()) <= 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-length-a", "-1"], "--max-length-a must be a finite number, 0 or more (got -1.0)"),
        (["--max-length-a", "nan"], "--max-length-a must be a finite number, 0 or more (got nan)"),
        (["--max-length-b", "-1"], "--max-length-b must be a whole number, at least 0 (got -1)"),
        (["--alpha", "inf"], "--alpha must be a finite number, 0 or more (got inf)"),
        (
            ["--min-length", "50", "--max-length", "5"],
            "--min-length must be at most --max-length=5 (got 50)",
        ),
        (["--beam-size", "100000"], "beam size 100000 is larger than the model's target vocab"),
    ],
)
def test_bad_length_options_are_refused(argv, message, capsys):
    assert_error(capsys, cli(["translate", GOLDEN, SOURCE, *argv]), message)


def test_score_warns_that_it_truncates_long_targets(capsys, caplog, tmp_path):
    source, target = tmp_path / "src.de", tmp_path / "tgt.en"
    source.write_text(SOURCE + "\n", encoding="utf-8")
    target.write_text("a man . " * 400 + "\n", encoding="utf-8")  # 1,200 tokens
    with caplog.at_level(logging.WARNING, logger="seq2seq.translate"):
        assert cli(["score", GOLDEN, "--source", source, "--target", target]) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert "1 target lines have more than data.max_length=1000 tokens" in " ".join(messages)
