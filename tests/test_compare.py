"""`seq2seq compare`: paired bootstrap resampling over BLEU and chrF, checked against known
cases and against sacreBLEU's own PairedTest, and the command end to end."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import MULTI30K, assert_error, cli
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from seq2seq.analysis.compare import paired_bootstrap
from seq2seq.errors import Seq2SeqError

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def read_gz(name: str, count: int) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in itertools.islice(handle, count)]


@pytest.fixture(scope="module")
def references() -> list[str]:
    return read_gz("test_2016_flickr.en.gz", 200)


def test_a_system_compared_with_itself(references):
    hypotheses = [" ".join(r.split()[:-2]) for r in references]
    result = paired_bootstrap(hypotheses, hypotheses, references)
    for name, metric in (("bleu", BLEU(lowercase=True)), ("chrf", CHRF(lowercase=True))):
        figures = result[name]
        assert figures["a"] == figures["b"] == metric.corpus_score(hypotheses, [references]).score
        assert figures["difference"] == 0.0 and figures["ci95"] == [0.0, 0.0]
        assert figures["p_value"] == 1.0


def test_a_clearly_better_system(references):
    worse = [" ".join(r.split()[:-3]) for r in references]
    result = paired_bootstrap(worse, references, references, samples=500)
    for name in ("bleu", "chrf"):
        low, high = result[name]["ci95"]
        assert 0 < low < result[name]["difference"] < high
        assert result[name]["p_value"] == pytest.approx(1 / 501)
    assert result["bleu"]["b"] == pytest.approx(100.0)
    # B - A, not A - B: swapping the systems flips the difference and its interval.
    swapped = paired_bootstrap(references, worse, references, samples=500)["bleu"]
    assert swapped["difference"] == -result["bleu"]["difference"]
    assert swapped["ci95"] == pytest.approx([-high for high in result["bleu"]["ci95"][::-1]])


def test_the_p_value_and_the_resamples_are_sacrebleu_s(references, monkeypatch):
    """Two systems that differ in a few sentences: a p-value far from 0 and 1, which only the
    same resamples and the same statistic reproduce."""
    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # sacreBLEU's default seed, 12345
    a = [" ".join(r.split()[:-1]) for r in references]
    b = [r if i % 100 == 0 else h for i, (r, h) in enumerate(zip(references, a, strict=True))]
    ours = paired_bootstrap(a, b, references)
    metrics = {"BLEU": BLEU(lowercase=True), "chrF": CHRF(lowercase=True)}
    _, theirs = PairedTest([("a", a), ("b", b)], metrics, [references], test_type="bs")()
    for name, key in (("BLEU", "bleu"), ("chrF2", "chrf")):
        baseline, system = theirs[name]
        assert (ours[key]["a"], ours[key]["b"]) == (baseline.score, system.score)
        assert ours[key]["p_value"] == pytest.approx(system.p_value)
        assert 0.05 < system.p_value < 0.95
        low, high = ours[key]["ci95"]
        assert low < ours[key]["difference"] < high


def test_translations_must_match_the_references(references):
    with pytest.raises(Seq2SeqError, match="cannot compare 200 and 199 translations of 200"):
        paired_bootstrap(references, references[:-1], references)


@pytest.fixture
def small_split(tmp_path) -> Path:
    """The first 40 test2016 pairs as a split named `small`."""
    for lang in ("de", "en"):
        lines = read_gz(f"test_2016_flickr.{lang}.gz", 40)
        (tmp_path / f"small.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def compare(capsys, *argv) -> str:
    assert cli(["compare", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


SCORE, SIGNED = r"(\d+\.\d\d)", r"([+-]\d+\.\d\d)"
ROW = rf"{{}}\s+{SCORE}\s+{SCORE}\s+{SIGNED}\s+\[{SIGNED}, {SIGNED}\]\s+(\d\.\d{{{{4}}}})"


def test_compare_a_checkpoint_with_itself_on_the_command_line(small_split, capsys):
    out = compare(capsys, GOLDEN, GOLDEN, "--split", "small", "--data-dir", small_split)
    lines = out.splitlines()
    assert lines[0] == "small: 40 sentences, beam 1; paired bootstrap, 1000 resamples, seed 12345"
    assert lines[1] == f"A: {GOLDEN}" and lines[2] == f"B: {GOLDEN}"
    for label in ("BLEU", "chrF"):
        row = re.search(ROW.format(label), out)
        assert row, out
        assert row[1] == row[2] and row[3] in ("+0.00", "-0.00")
        assert (row[4], row[5], row[6]) == ("+0.00", "+0.00", "1.0000")


@pytest.mark.slow
def test_compare_two_models_json_agrees_with_evaluate(tiny_run, small_split, capsys):
    common = ["--split", "small", "--data-dir", small_split, "--beam-size", "2"]
    result = json.loads(compare(capsys, GOLDEN, tiny_run, *common, "--json"))
    assert (result["split"], result["sentences"], result["beam_size"]) == ("small", 40, 2)
    assert (result["a"], result["b"]) == (str(GOLDEN), str(tiny_run / "best"))
    for side, run in (("a", GOLDEN), ("b", tiny_run)):
        assert cli(["evaluate", run, *common, "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        for metric in ("bleu", "chrf"):
            assert result[metric][side] == pytest.approx(evaluated[metric])
    for metric in ("bleu", "chrf"):
        figures = result[metric]
        assert figures["difference"] == pytest.approx(figures["b"] - figures["a"])
        assert figures["ci95"][0] <= figures["ci95"][1]
        assert 0 < figures["p_value"] <= 1
    assert result["bleu"]["signature"].startswith("nrefs:1|case:lc|eff:no|tok:13a")
    # Same command, same figures: the seed is fixed.
    assert json.loads(compare(capsys, GOLDEN, tiny_run, *common, "--json")) == result


def test_runs_reading_other_references_are_refused(small_split, tmp_path, capsys):
    """Two copies of the golden checkpoint whose configs name other test splits."""
    (small_split / "other.de").write_text("Ein Hund.\n" * 40, encoding="utf-8")
    (small_split / "other.en").write_text("A dog.\n" * 40, encoding="utf-8")
    runs = []
    for test in ("small", "other"):
        run = tmp_path / f"golden-{test}"
        shutil.copytree(GOLDEN, run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["data"]["test"] = test
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        runs.append(run)
    code = cli(["compare", *runs, "--split", "test", "--data-dir", small_split])
    assert_error(capsys, code, f"{runs[0]} and {runs[1]} read different references")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--beam-size", "0"], "--beam-size must be a whole number, at least 1 (got 0)"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options(argv, message, capsys):
    assert_error(capsys, cli(["compare", GOLDEN, GOLDEN, *argv]), message)


def test_a_missing_run(tmp_path, capsys):
    code = cli(["compare", GOLDEN, tmp_path / "nope"])
    assert_error(capsys, code, f"checkpoint {tmp_path / 'nope'} does not exist")
