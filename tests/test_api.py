"""The Python API: the examples of docs/api.md and the README run; results are the command
line's (the golden checkpoint's committed outputs); mistakes raise the command line's one-line
errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli

import seq2seq

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"


@pytest.fixture(scope="module")
def model():
    return seq2seq.load(GOLDEN, device="cpu")


def lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


def first_python_block(page: str) -> str:
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.search(r"```python\n(.*?)```", text, re.DOTALL)[1]


def test_the_readme_example_runs_and_gives_the_command_line_s_translation(capsys):
    code = first_python_block("README.md")
    assert 'seq2seq.load("runs/tutorial")' in code
    exec(code.replace('"runs/tutorial"', repr(str(GOLDEN))), {})
    printed = capsys.readouterr().out
    assert cli(["translate", GOLDEN, "Ein Hund rennt.", "--beam-size", "5"]) == 0
    assert printed == capsys.readouterr().out


def test_the_api_page_example_runs_and_gives_the_command_line_s_results(capsys):
    code = first_python_block("docs/api.md")
    assert 'seq2seq.load("runs/tutorial")' in code
    namespace: dict = {}
    exec(code.replace('"runs/tutorial"', repr(str(GOLDEN))), namespace)
    printed = capsys.readouterr().out
    sources = ["Ein Hund rennt.", "Zwei Männer sitzen auf einer Bank."]
    assert cli(["translate", GOLDEN, *sources, "--beam-size", "5"]) == 0
    assert namespace["english"] == capsys.readouterr().out.splitlines()
    assert cli(["translate", GOLDEN, sources[0]]) == 0
    assert namespace["one"] == capsys.readouterr().out.rstrip("\n")
    argv = ["translate", GOLDEN, sources[0], "--beam-size", "5", "--n-best", "3"]
    assert cli(argv) == 0
    nbest = [line.split(" ||| ") for line in capsys.readouterr().out.splitlines()]
    hypotheses = namespace["hypotheses"]
    assert [h.text for h in hypotheses] == [text for _, text, _, _ in nbest]
    assert [f"{h.score:.4f}" for h in hypotheses] == [score for *_, score in nbest]
    assert printed.splitlines() == [f"{h.score:8.3f}  {h.text}" for h in hypotheses]
    assert len(namespace["log_probs"]) == 1 and namespace["log_probs"][0] < 0


def test_import_is_cheap():
    code = "import sys, seq2seq; print('torch' in sys.modules, seq2seq.__version__)"
    env = {"PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", seq2seq.__version__], out.stderr


def test_translate_gives_the_committed_greedy_output(model):
    sources = lines("golden.de")
    assert model.translate(sources) == lines("golden.greedy.en")
    assert model.translate(sources[0]) == lines("golden.greedy.en")[0]  # a string for a string
    assert model.translate([]) == []


def test_nbest_gives_the_committed_beam_output(model):
    expected: dict[int, list[tuple[str, str]]] = {}
    for line in lines("golden.beam3.nbest"):
        number, text, log_prob, _ = line.split(" ||| ")
        expected.setdefault(int(number), []).append((text, log_prob))
    found = model.nbest(lines("golden.de"), n=2, beam_size=3)
    assert len(found) == len(lines("golden.de"))
    for number, hypotheses in expected.items():
        assert [(h.text, f"{h.log_prob:.4f}") for h in found[number]] == hypotheses
    assert all(h.score == h.log_prob for line in found for h in line)  # alpha 0: no penalty


def test_score_is_the_command_line_s(model, tmp_path, capsys):
    sources, targets = ["Ein Mann.", "Zwei Hunde im Schnee."], ["a man .", "two dogs in snow ."]
    (tmp_path / "src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("\n".join(targets) + "\n", encoding="utf-8")
    assert cli(["score", GOLDEN, "--source", tmp_path / "src", "--target", tmp_path / "tgt"]) == 0
    expected = capsys.readouterr().out.split()
    assert [f"{value:.4f}" for value in model.score(sources, targets)] == expected
    assert f"{model.score(sources[0], targets[0]):.4f}" == expected[0]


def test_an_ensemble_of_one_model_twice_decodes_as_the_model(model):
    twice = seq2seq.load([GOLDEN, GOLDEN], device="cpu")
    sources = lines("golden.de")
    assert twice.translate(sources, beam_size=3) == model.translate(sources, beam_size=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.translate(["x"], beam_size=0), "beam_size must be a whole number, at least 1"),
        (lambda m: m.translate(["x"], beam_size=2.5), "beam_size must be a whole number"),
        (lambda m: m.translate(["x"], alpha=-1), "alpha must be a number, 0 or more (got -1)"),
        (lambda m: m.translate(["x"], max_length=0), "max_length must be a whole number"),
        (
            lambda m: m.nbest(["x"], n=4, beam_size=3),
            "n must be between 1 and beam_size=3 (got 4)",
        ),
        (lambda m: m.translate(["x", 3]), "sentences[1] is int; give strings"),
        (lambda m: m.translate(None), "sentences must be a string or a list of strings"),
        (lambda m: m.score(["a", "b"], ["a"]), "2 sources but 1 targets"),
    ],
)
def test_mistakes_raise_one_line_errors(model, call, message):
    with pytest.raises(seq2seq.Seq2SeqError) as error:
        call(model)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("path", "device", "message"),
    [
        ("no-such-run", "cpu", "checkpoint no-such-run does not exist"),
        (GOLDEN, "tpu", "unknown device 'tpu'; choose one of auto, cpu, cuda, mps"),
        ([], "cpu", "no checkpoint given"),
    ],
)
def test_loading_mistakes_are_the_command_line_s_errors(path, device, message):
    with pytest.raises(seq2seq.Seq2SeqError, match=re.escape(message)):
        seq2seq.load(path, device=device)
