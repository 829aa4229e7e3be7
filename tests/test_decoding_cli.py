"""Decoding from the command line on a run trained once for the module: n-best output and its
format, beam size 1 as greedy, ensembles through --ensemble, evaluate with a beam, and
`score`, whose log-probabilities agree with the model stepped by hand and with `translate`."""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
import types
import unicodedata
from pathlib import Path

import pytest
import torch
from conftest import MULTI30K, assert_error, cli, isolated

from seq2seq import checkpoint, loader
from seq2seq.data.examples import encode_source
from seq2seq.decode import DecodeSettings
from seq2seq.translate import Translator

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
SOURCES = ["Ein Mann.", "Zwei Hunde spielen im Schnee.", "Eine Frau sitzt auf einer Bank."]
NBEST = re.compile(r"(\d+) \|\|\| (.*) \|\|\| (-?\d+\.\d{4}) \|\|\| (-?\d+\.\d{4})")


def read_gz(name: str, n: int) -> list[str]:
    with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as handle:
        return [unicodedata.normalize("NFC", next(handle).rstrip("\n")) for _ in range(n)]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> types.SimpleNamespace:
    """The first 12 pairs of the 2016 test set as a split `small` of plain files."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    folder = tmp_path_factory.mktemp("small")
    src, tgt = read_gz("test_2016_flickr.de.gz", 12), read_gz("test_2016_flickr.en.gz", 12)
    (folder / "small.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (folder / "small.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    return types.SimpleNamespace(dir=folder, src=src, tgt=tgt)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small) -> Path:
    """The tiny config on 500 pairs for one epoch; validated on `small` to save time."""
    output_dir = tmp_path_factory.mktemp("runs")
    argv = ["train", TINY, f"output_dir={output_dir}", f"data.dir={MULTI30K}"]
    argv += ["data.train_limit=500", "train.epochs=1", f"data.valid={small.dir / 'small'}"]
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        assert cli(argv) == 0
    return output_dir / "tiny"


@pytest.fixture(scope="module")
def copy(trained, tmp_path_factory) -> Path:
    """A second run directory holding the same model."""
    target = tmp_path_factory.mktemp("copy") / "tiny"
    shutil.copytree(trained, target)
    return target


@pytest.fixture(scope="module")
def ckpt(trained):
    loaded = checkpoint.load(trained)
    loaded.model.eval()
    return loaded


def run(capsys, *argv) -> list[str]:
    code = cli(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.splitlines()


def parse_nbest(lines: list[str]) -> list[tuple[int, str, float, float]]:
    parsed = []
    for line in lines:
        match = NBEST.fullmatch(line)
        assert match, line
        parsed.append((int(match[1]), match[2], float(match[3]), float(match[4])))
    return parsed


def source_ids(ckpt, line: str) -> list[int]:
    tokens = Translator(ckpt, torch.device("cpu")).src_tokenizer(line)
    return encode_source(tokens, ckpt.src_vocab, ckpt.config.data)


def step_by_hand(ckpt, line: str, tokens: list[int], end: bool) -> float:
    """log P(tokens [<eos>] | line), one decode_step at a time."""
    src = torch.tensor([source_ids(ckpt, line)])
    state = ckpt.model.encode(src, torch.tensor([src.size(1)]))
    vocab, total, previous = ckpt.tgt_vocab, 0.0, ckpt.tgt_vocab.sos
    with torch.no_grad():
        for token in [*tokens, *([vocab.eos] if end else [])]:
            log_probs, state = ckpt.model.decode_step(torch.tensor([previous]), state)
            total += log_probs[0, token].item()
            previous = token
    return total


def limit(ckpt, line: str) -> int:
    """The default output limit: 1.5 x source tokens + 10."""
    return int((len(source_ids(ckpt, line)) - 2) * 1.5) + 10


def test_translate_n_best_prints_line_text_logprob_score(trained, ckpt, capsys):
    lines = run(capsys, "translate", trained, "--beam-size", "4", "--n-best", "3", "Ein Mann.", "")

    parsed = parse_nbest(lines)
    assert [number for number, *_ in parsed] == [0, 0, 0, 1, 1, 1]
    # An empty input gives the empty translation, ended at once, n times, scored by the model.
    ends = pytest.approx(step_by_hand(ckpt, "", [], True), abs=2e-4)
    assert parsed[3:] == [(1, "", ends, ends)] * 3
    found = Translator(ckpt, torch.device("cpu"), DecodeSettings(beam_size=4, n_best=3)).nbest(
        ["Ein Mann."]
    )[0]
    assert len({tuple(h.tokens) for _, h in found}) == 3
    log_probs = [log_prob for _, _, log_prob, _ in parsed[:3]]
    assert log_probs == sorted(log_probs, reverse=True)
    for (_, text, log_prob, score), (expected_text, h) in zip(parsed[:3], found, strict=True):
        assert text == expected_text and text
        assert score == log_prob  # alpha 0: ranked by log-probability
        assert h.ended == (len(h.tokens) < limit(ckpt, "Ein Mann."))
        expected = step_by_hand(ckpt, "Ein Mann.", h.tokens, h.ended)
        assert log_prob == pytest.approx(expected, abs=2e-4)


def test_translate_n_best_with_a_length_penalty(trained, ckpt, capsys):
    argv = ["--beam-size", "3", "--n-best", "2", "--alpha", "0.6", SOURCES[1]]
    parsed = parse_nbest(run(capsys, "translate", trained, *argv))
    settings = DecodeSettings(beam_size=3, n_best=2, alpha=0.6)
    found = Translator(ckpt, torch.device("cpu"), settings).nbest([SOURCES[1]])[0]
    assert [text for _, text, _, _ in parsed] == [text for text, _ in found]
    for (_, _, log_prob, score), (_, h) in zip(parsed, found, strict=True):
        length = len(h.tokens) + (1 if len(h.tokens) < limit(ckpt, SOURCES[1]) else 0)
        assert score == pytest.approx(log_prob / ((5 + length) / 6) ** 0.6, abs=2e-4)
    assert parsed[0][3] >= parsed[1][3]


def test_translate_max_length_holds_with_a_beam(trained, capsys):
    lines = run(capsys, "translate", trained, "--beam-size", "3", "--max-length", "3", *SOURCES)
    assert len(lines) == 3 and all(1 <= len(line.split()) <= 3 for line in lines)


def test_beam_size_one_is_the_default_greedy(trained, capsys):
    greedy = run(capsys, "translate", trained, *SOURCES, "")
    assert run(capsys, "translate", trained, "--beam-size", "1", *SOURCES, "") == greedy
    assert len(greedy) == 4 and all(greedy[:3]) and greedy[3] == ""


def test_n_best_above_beam_size_is_an_error(trained, capsys):
    code = cli(["translate", trained, "--n-best", "3", "--beam-size", "2", "Ein Mann."])
    assert_error(capsys, code, "--n-best must be between 1 and --beam-size=2 (got 3)")


@pytest.mark.parametrize("options", [[], ["--beam-size", "3", "--n-best", "2"]])
def test_an_ensemble_of_a_run_and_its_copy_translates_like_the_run(trained, copy, capsys, options):
    alone = run(capsys, "translate", trained, *options, *SOURCES)
    ensemble = run(capsys, "translate", trained, *SOURCES, *options, "--ensemble", copy)
    # The same texts; the n-best scores to float precision: renormalising the members'
    # average moves a log-probability in its last bits, which can turn a printed 4th decimal.
    alone, ensemble = ([line.split(" ||| ") for line in lines] for lines in (alone, ensemble))
    assert [fields[:2] for fields in ensemble] == [fields[:2] for fields in alone]
    for mine, theirs in zip(ensemble, alone, strict=True):
        assert list(map(float, mine[2:])) == pytest.approx(list(map(float, theirs[2:])), abs=1e-3)


# One syntax for ensembles: RUN is the first member, each `--ensemble RUN` adds one more.
BEAM = ["--beam-size", "5", "--n-best", "2"]
ENSEMBLE_ORDERS = {
    "as documented": lambda a, b, c: [a, "--ensemble", b, "--ensemble", c, SOURCES[1], *BEAM],
    "options first": lambda a, b, c: [*BEAM, "--ensemble", b, "--ensemble", c, a, SOURCES[1]],
    "options last": lambda a, b, c: [a, SOURCES[1], "--ensemble", b, *BEAM, "--ensemble", c],
    "between": lambda a, b, c: ["--ensemble", b, a, *BEAM, SOURCES[1], "--ensemble", c],
}


@pytest.fixture(scope="module")
def other(trained, tmp_path_factory) -> Path:
    """A checkpoint of the run's model with every weight moved a little: a different model
    over the same vocabularies."""
    loaded = checkpoint.load(trained)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter += 0.05 * torch.randn(parameter.shape, generator=generator)
    path = tmp_path_factory.mktemp("other") / "best"
    vocabs = (loaded.src_vocab, loaded.tgt_vocab)
    checkpoint.save(path, loaded.model, loaded.config, vocabs, loaded.meta)
    return path


@pytest.mark.parametrize("order", ENSEMBLE_ORDERS)
def test_an_ensemble_in_any_option_order(trained, copy, other, capsys, order):
    lines = run(capsys, "translate", *ENSEMBLE_ORDERS[order](trained, other, copy))

    members = loader.load_ensemble([trained, other, copy])
    settings = DecodeSettings(beam_size=5, n_best=2)
    found = Translator(members, torch.device("cpu"), settings).nbest([SOURCES[1]])[0]
    parsed = parse_nbest(lines)
    assert [(n, text) for n, text, _, _ in parsed] == [(0, text) for text, _ in found]
    assert [lp for _, _, lp, _ in parsed] == pytest.approx([h.log_prob for _, h in found], abs=1e-4)
    # The other model counts: the run alone gives another log-probability.
    alone = parse_nbest(run(capsys, "translate", trained, *BEAM, SOURCES[1]))
    assert parsed[0][2] != alone[0][2]


def test_ensemble_takes_one_run_and_never_a_sentence(trained, copy, capsys):
    alone = run(capsys, "translate", trained, *SOURCES)
    assert run(capsys, "translate", trained, "--ensemble", copy, *SOURCES) == alone
    assert run(capsys, "translate", trained, "--ensemble", copy, SOURCES[0]) == alone[:1]


def test_a_sentence_starting_with_a_dash_after_double_dash(trained, ckpt, capsys):
    translator = Translator(ckpt, torch.device("cpu"), DecodeSettings(beam_size=2))
    expected = translator.translate([SOURCES[0], "-Ein Mann."])
    assert run(capsys, "translate", trained, "--beam-size", "2", "--", "-Ein Mann.") == expected[1:]
    lines = run(capsys, "translate", trained, SOURCES[0], "--beam-size", "2", "--", "-Ein Mann.")
    assert lines == expected


def usage_error(capsys, code: int, command: str, *fragments: str) -> str:
    """argparse's refusal: exit 2, the command's usage, then one line naming the problem."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"usage: seq2seq {command} ") and "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"seq2seq {command}: error: "), err
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_the_old_checkpoints_option_is_refused_by_name(trained, copy, capsys):
    code = cli(["translate", "--checkpoints", trained, copy])
    line = usage_error(capsys, code, "translate", "unrecognized arguments: --checkpoints")
    assert "sentences" not in line


def test_an_ensemble_without_run_names_the_missing_run(trained, capsys):
    code = cli(["evaluate", "--ensemble", trained])
    line = usage_error(capsys, code, "evaluate", "the following arguments are required: run")
    assert line.endswith(": run")


def test_ensemble_needs_its_one_run(trained, capsys):
    code = cli(["translate", trained, "Ein Mann.", "--ensemble"])
    usage_error(capsys, code, "translate", "argument --ensemble: expected one argument")


def test_evaluate_takes_one_run(trained, copy, capsys):
    code = cli(["evaluate", trained, copy])
    usage_error(capsys, code, "evaluate", f"unrecognized arguments: {copy}")


def test_evaluate_an_ensemble_with_a_beam(trained, copy, small, capsys, tmp_path):
    split = ["--split", "small", "--data-dir", small.dir, "--beam-size", "2", "--json"]
    output = tmp_path / "small.out"
    ensemble = json.loads("\n".join(run(capsys, "evaluate", "--ensemble", copy, trained, *split)))
    alone = json.loads("\n".join(run(capsys, "evaluate", trained, *split, "--output", output)))

    assert ensemble["sentences"] == alone["sentences"] == 12
    for key in ("loss", "free_loss", "bleu", "chrf", "bleu_tokenized"):
        assert ensemble[key] == pytest.approx(alone[key], abs=1e-5), key
    assert math.isfinite(alone["loss"]) and alone["ppl"] > 1
    # evaluate's translations are translate's, with the same beam.
    translated = run(capsys, "translate", trained, "--beam-size", "2", *small.src)
    assert output.read_text(encoding="utf-8").splitlines() == translated


def test_score_agrees_with_stepping_by_hand_and_with_translate(
    trained, copy, small, ckpt, capsys, tmp_path
):
    nbest = parse_nbest(
        run(capsys, "translate", trained, "--beam-size", "2", "--n-best", "2", *SOURCES)
    )
    best = nbest[::2]  # each source's best hypothesis
    sources = [*SOURCES, small.src[0], small.src[1]]
    targets = [text for _, text, _, _ in best] + [small.tgt[0], ""]
    (tmp_path / "src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("\n".join(targets) + "\n", encoding="utf-8")
    files = ["--source", tmp_path / "src", "--target", tmp_path / "tgt"]

    lines = run(capsys, "score", trained, *files)

    assert all(re.fullmatch(r"-\d+\.\d{4}", line) for line in lines), lines
    scores = [float(line) for line in lines]
    assert len(scores) == len(sources)
    translator = Translator(ckpt, torch.device("cpu"))
    for source, target, score in zip(sources, targets, scores, strict=True):
        tokens = ckpt.tgt_vocab.ids(translator.tgt_tokenizer(target))
        assert score == pytest.approx(step_by_hand(ckpt, source, tokens, True), abs=2e-4)
    # On the model's own output, score adds only the <eos> that translate's cut-off left out.
    settings = DecodeSettings(beam_size=2, n_best=2)
    found = Translator(ckpt, torch.device("cpu"), settings).nbest(SOURCES)
    for (_, text, log_prob, _), hypotheses, source, score in zip(
        best, found, SOURCES, scores, strict=False
    ):
        h = hypotheses[0][1]
        assert ckpt.tgt_vocab.ids(translator.tgt_tokenizer(text)) == h.tokens  # round trip
        eos = 0.0
        if len(h.tokens) == limit(ckpt, source):  # cut at its limit, without <eos>
            with_eos = step_by_hand(ckpt, source, h.tokens, True)
            eos = with_eos - step_by_hand(ckpt, source, h.tokens, False)
        assert score == pytest.approx(log_prob + eos, abs=3e-4)
    # An ensemble of a model and its copy averages two equal distributions: the same scores,
    # up to the last printed digit (the average rounds otherwise on some CPUs: AVX-512 gave
    # -91.9081 for -91.9082).
    expected = [float(x) for x in lines]
    for argv in ([trained, "--ensemble", copy, *files], ["--ensemble", copy, *files, trained]):
        ensembled = [float(x) for x in run(capsys, "score", *argv)]
        assert ensembled == pytest.approx(expected, abs=2e-4)


def test_score_refuses_files_of_different_lengths(trained, capsys, tmp_path):
    (tmp_path / "src").write_text("Ein Mann.\nZwei Hunde.\nDrei Katzen.\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("A man.\nTwo dogs.\n", encoding="utf-8")
    code = cli(["score", trained, "--source", tmp_path / "src", "--target", tmp_path / "tgt"])
    assert_error(capsys, code, "--source has 3 lines but --target has 2")
