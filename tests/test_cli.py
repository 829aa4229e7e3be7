"""The command line end to end on a slice of Multi30k: train once, then evaluate and translate
that run; every mistake a user can make ends with exit code 2 and one line naming it."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import re
import shutil
import sys
import types
import unicodedata
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MULTI30K, assert_error, cli, isolated
from helpers import snapshot
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.config import config_from_dict, load_config

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
# A learning rate ten times the default, so that one epoch of 8 steps clearly learns.
SLICE = ["data.train_limit=500", "train.epochs=1", "train.lr=0.01"]


def train_argv(output_dir: Path, *overrides: str) -> list[str]:
    return ["train", TINY, f"output_dir={output_dir}", f"data.dir={MULTI30K}", *SLICE, *overrides]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The tiny config on 500 sentence pairs for one epoch, trained once for the module."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    output_dir = tmp_path_factory.mktemp("runs")
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        assert cli(train_argv(output_dir)) == 0
    return output_dir / "tiny"


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> types.SimpleNamespace:
    """`evaluate RUN --split test --output FILE`, run once: its stdout and output file."""
    output = tmp_path_factory.mktemp("evaluate") / "test.en"
    stdout = io.StringIO()
    argv = ["evaluate", trained, "--split", "test", "--data-dir", MULTI30K, "--output", output]
    with isolated(tmp_path_factory.getbasetemp() / "cache"), contextlib.redirect_stdout(stdout):
        code = cli(argv)
    return types.SimpleNamespace(code=code, stdout=stdout.getvalue(), output=output)


def read_gz(name: str) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as handle:
        return [unicodedata.normalize("NFC", line.rstrip("\n")) for line in handle]


@pytest.mark.slow
def test_train_writes_a_run_directory(trained):
    assert {p.name for p in trained.iterdir()} == {"best", "last", "log.jsonl", "config.yaml"}
    for name in ("best", "last"):
        files = {p.name for p in (trained / name).iterdir()}
        assert {"model.safetensors", "config.yaml", "vocab.json", "meta.json"} <= files
    # Only last/ can be resumed from.
    assert (trained / "last" / "optimizer.safetensors").is_file()
    assert not (trained / "best" / "optimizer.safetensors").exists()

    saved = config_from_dict(yaml.safe_load((trained / "config.yaml").read_text()))
    overrides = [f"output_dir={trained.parent}", f"data.dir={MULTI30K}", *SLICE]
    assert saved == load_config(TINY, overrides)
    assert saved.data.train_limit == 500 and saved.train.epochs == 1


@pytest.mark.slow
def test_train_logs_each_epoch(trained):
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    fields = {
        "epoch", "step", "lr", "train_loss", "train_ppl", "padding", "precision", "seconds",
        "tokens_per_second", "val_loss", "val_ppl", "val_free_loss", "val_free_ppl",
        "val_bleu", "val_bleu_tokenized", "val_chrf", "best",
    }  # fmt: skip
    assert fields <= record.keys()
    assert record["epoch"] == 1 and record["best"] is True
    assert record["step"] == math.ceil(500 / 64)  # batches of 64 sentences
    assert record["lr"] == 0.01
    # The uniform init predicts about log(V) nats per token; the epoch's 8 steps already bring
    # the loss well below it (measured: train 0.7 and validation 2.1 below), a broken update not.
    vocab_size = len(json.loads((trained / "best" / "vocab.json").read_text())["tgt"])
    assert record["train_loss"] < math.log(vocab_size) - 0.3
    assert record["val_loss"] < math.log(vocab_size) - 1
    for loss in ("train", "val", "val_free"):
        assert record[f"{loss}_ppl"] == pytest.approx(math.exp(record[f"{loss}_loss"]))
    assert 0 <= record["padding"] < 0.5
    assert record["precision"] in ("float32", "bfloat16")
    assert record["seconds"] > 0 and record["tokens_per_second"] > 0
    meta = json.loads((trained / "best" / "meta.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, record["step"])
    assert meta["metrics"]["val_loss"] == record["val_loss"]


@pytest.mark.slow
def test_the_logged_validation_figures_are_those_of_best(trained, capsys, tmp_path):
    """The epoch's val_* figures are what `evaluate --split val` computes for best/, and its
    BLEU and chrF are sacreBLEU's on the translations against the raw references."""
    output = tmp_path / "val.en"
    argv = ["evaluate", trained, "--split", "val", "--data-dir", MULTI30K, "--json"]
    assert cli([*argv, "--output", output]) == 0
    result = json.loads(capsys.readouterr().out)
    record = json.loads((trained / "log.jsonl").read_text().splitlines()[0])
    for key in ("loss", "free_loss", "bleu", "bleu_tokenized", "chrf"):
        assert record[f"val_{key}"] == pytest.approx(result[key], abs=1e-6), key
    hypotheses = output.read_text(encoding="utf-8").splitlines()
    references = read_gz("val.en.gz")
    assert record["val_bleu"] == pytest.approx(
        BLEU(lowercase=True).corpus_score(hypotheses, [references]).score
    )
    assert record["val_chrf"] == pytest.approx(
        CHRF(lowercase=True).corpus_score(hypotheses, [references]).score
    )
    assert record["val_chrf"] > 0  # so the comparison means something


FIGURES = re.compile(
    r"test_2016_flickr: 1000 sentences, checkpoint (?P<checkpoint>\S+)\n"
    r"loss \(teacher forced\) +(?P<loss>[\d.]+)  ppl (?P<ppl>[\d.]+)\n"
    r"loss \(free running, tutorial's\) +(?P<free_loss>[\d.]+)  ppl (?P<free_ppl>[\d.]+)\n"
    r"BLEU \(detokenized, lowercased\) +(?P<bleu>[\d.]+)  (?P<bleu_signature>\S+)\n"
    r"chrF +(?P<chrf>[\d.]+)  (?P<chrf_signature>\S+)\n"
    r"BLEU \(lowercased spaCy tokens\) +(?P<bleu_tokenized>[\d.]+)  \(the tutorial's\)\n$"
)


@pytest.mark.slow
def test_evaluate_prints_labelled_figures(trained, evaluated):
    assert evaluated.code == 0
    figures = FIGURES.match(evaluated.stdout)
    assert figures, evaluated.stdout
    assert Path(figures["checkpoint"]) == trained / "best"
    for loss, ppl in (("loss", "ppl"), ("free_loss", "free_ppl")):
        assert float(figures[ppl]) == pytest.approx(math.exp(float(figures[loss])), rel=1e-3)
    assert figures["bleu_signature"].startswith("nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|")
    assert figures["chrf_signature"].startswith("nrefs:1|case:lc|")


@pytest.mark.slow
def test_evaluate_json_and_output_agree_with_sacrebleu(trained, evaluated, capsys):
    code = cli(["evaluate", trained, "--split", "test", "--data-dir", MULTI30K, "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test_2016_flickr" and result["sentences"] == 1000
    assert "translations" not in result
    printed = FIGURES.match(evaluated.stdout)
    for key in ("loss", "free_loss", "bleu", "chrf", "bleu_tokenized"):
        assert float(printed[key]) == pytest.approx(result[key], abs=0.006), key
    assert printed["bleu_signature"] == result["bleu_signature"]

    hypotheses = evaluated.output.read_text(encoding="utf-8").split("\n")
    assert hypotheses.pop() == ""  # every line ends with a newline
    assert len(hypotheses) == 1000
    references = read_gz("test_2016_flickr.en.gz")
    bleu = BLEU(lowercase=True).corpus_score(hypotheses, [references]).score
    chrf = CHRF(lowercase=True).corpus_score(hypotheses, [references]).score
    assert result["bleu"] == pytest.approx(bleu)
    assert result["chrf"] == pytest.approx(chrf)
    assert result["chrf"] > 0  # so the comparison means something


@pytest.mark.slow
def test_translate_arguments_one_line_each(trained, capsys):
    assert cli(["translate", trained, "Ein Mann.", "", "Zwei Hunde."]) == 0
    out = capsys.readouterr().out
    lines = out.split("\n")
    assert len(lines) == 4 and lines[3] == ""
    assert lines[0] and lines[1] == "" and lines[2]


def translate(trained, capsys, *lines: str) -> list[str]:
    assert cli(["translate", trained, *lines]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_translate_reads_stdin_one_output_line_per_input_line(trained, capsys, monkeypatch):
    data = "Ein Mann.\r\n\r\n \t \r\nZwei Hunde.\r\nDrei Katzen auf einer Straße.".encode()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    assert cli(["translate", trained]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.split("\n")
    assert lines.pop() == ""
    assert len(lines) == 5 and lines[1] == lines[2] == ""
    expected = translate(
        trained, capsys, "Ein Mann.", "", " \t ", "Zwei Hunde.", "Drei Katzen auf einer Straße."
    )
    assert lines == expected


@pytest.mark.slow
def test_translate_input_and_output_files(trained, capsys, tmp_path):
    (tmp_path / "in.de").write_bytes(b"Ein Mann.\n\nZwei Hunde.\n")
    argv = ["translate", trained, "--input", tmp_path / "in.de", "--output", tmp_path / "out.en"]
    assert cli(argv) == 0
    assert capsys.readouterr().out == ""
    written = (tmp_path / "out.en").read_text(encoding="utf-8")
    assert written == "\n".join(translate(trained, capsys, "Ein Mann.", "", "Zwei Hunde.")) + "\n"


@pytest.mark.slow
def test_translate_matches_evaluate_on_the_same_sentences(trained, evaluated, capsys, tmp_path):
    sources = read_gz("test_2016_flickr.de.gz")[:5]
    (tmp_path / "in.de").write_text("\n".join(sources) + "\n", encoding="utf-8")
    assert cli(["translate", trained, "--input", tmp_path / "in.de"]) == 0
    expected = evaluated.output.read_text(encoding="utf-8").splitlines()[:5]
    assert capsys.readouterr().out.splitlines() == expected


@pytest.mark.slow
def test_translate_options_may_come_between_run_and_sentences(trained, capsys):
    assert cli(["translate", trained, "--max-length", "3", "Ein Mann.", "Zwei Hunde."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(len(line.split()) <= 3 for line in lines)


def test_train_with_a_missing_config_file(capsys, tmp_path):
    code = cli(["train", tmp_path / "nope.yaml"])
    assert_error(capsys, code, f"config file {tmp_path / 'nope.yaml'} does not exist")


def test_train_with_an_unknown_config_key(capsys, tmp_path):
    code = cli(["train", TINY, f"output_dir={tmp_path}", "model.hiden_size=8"])
    assert_error(capsys, code, "unknown key model.hiden_size", "hidden_size")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_train_refuses_an_existing_run_directory(trained, capsys):
    before = snapshot(trained)
    code = cli(train_argv(trained.parent))
    assert_error(capsys, code, f"run directory {trained} already holds a run", "resume=true")
    assert snapshot(trained) == before


def test_resume_without_a_run(capsys, tmp_path):
    code = cli(train_argv(tmp_path, "resume=true"))
    assert_error(capsys, code, "cannot resume", str(tmp_path / "tiny" / "last"))


@pytest.mark.slow
def test_resume_with_a_changed_config_lists_the_change(trained, capsys):
    before = snapshot(trained)
    code = cli(train_argv(trained.parent, "resume=true", "train.lr=0.02", "train.epochs=2"))
    message = assert_error(capsys, code, "cannot resume with a changed config")
    # Exactly the one change; epochs may change on resume.
    assert "(train.lr: 0.01 -> 0.02);" in message
    assert snapshot(trained) == before


@pytest.mark.slow
def test_overwrite_starts_a_fresh_log(trained, tmp_path, capsys):
    shutil.copytree(trained, tmp_path / "tiny")
    assert cli(train_argv(tmp_path, "overwrite=true")) == 0
    records = (tmp_path / "tiny" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in records] == [1]


@pytest.mark.parametrize("command", ["evaluate", "translate"])
def test_a_missing_run_directory(command, capsys, tmp_path):
    code = cli([command, tmp_path / "no-run", *(["Ein Mann."] if command == "translate" else [])])
    assert_error(capsys, code, f"checkpoint {tmp_path / 'no-run'} does not exist")


@pytest.mark.parametrize("command", ["evaluate", "translate"])
def test_a_directory_that_is_not_a_checkpoint(command, capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    code = cli([command, tmp_path, *(["Ein Mann."] if command == "translate" else [])])
    assert_error(capsys, code, f"{tmp_path} is not a seq2seq checkpoint (no meta.json)")


@pytest.mark.slow
def test_translate_a_missing_input_file(trained, capsys, tmp_path):
    code = cli(["translate", trained, "--input", tmp_path / "missing.de"])
    assert_error(capsys, code, f"cannot read {tmp_path / 'missing.de'}: No such file")


@pytest.mark.slow
def test_translate_input_that_is_not_utf8(trained, capsys, tmp_path):
    (tmp_path / "latin1.de").write_bytes("Ein Mann.\nK\u00e4se und Br\u00f6t.\n".encode("latin-1"))
    code = cli(["translate", trained, "--input", tmp_path / "latin1.de"])
    assert_error(capsys, code, f"{tmp_path / 'latin1.de'} line 2 is not valid UTF-8")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "translate"])
def test_batch_size_zero(trained, command, capsys):
    code = cli([command, "--batch-size", "0", trained])
    assert_error(capsys, code, "--batch-size must be a whole number, at least 1 (got 0)")


def no_gpu(monkeypatch) -> None:
    """This machine as one without CUDA or MPS, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


BAD_DEVICES = {
    "gpu": "unknown device 'gpu'; choose one of auto, cpu, cuda, mps",
    "cuda": "device 'cuda' is not available on this machine; use auto or cpu",
    "mps": "device 'mps' is not available on this machine; use auto or cpu",
}


@pytest.mark.slow
@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("command", ["evaluate", "translate", "score"])
def test_a_bad_device_is_one_line(trained, command, device, capsys, monkeypatch, tmp_path):
    no_gpu(monkeypatch)
    (tmp_path / "src").write_text("Ein Mann.\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("A man.\n", encoding="utf-8")
    rest = {
        "evaluate": ["--split", "test", "--data-dir", MULTI30K],
        "translate": ["Ein Mann."],
        "score": ["--source", tmp_path / "src", "--target", tmp_path / "tgt"],
    }[command]
    code = cli([command, trained, "--device", device, *rest])
    assert_error(capsys, code, BAD_DEVICES[device])


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_training_on_a_missing_device_is_one_line(device, capsys, monkeypatch, tmp_path):
    no_gpu(monkeypatch)
    code = cli(train_argv(tmp_path, f"device={device}"))
    assert_error(capsys, code, BAD_DEVICES[device])
    assert list(tmp_path.iterdir()) == []  # refused before any work
