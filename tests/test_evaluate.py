"""Evaluation counts every line of a test set, and its BLEU is cased as the model writes:
decoding an empty source, scoring an empty target, and `seq2seq evaluate` on the golden
checkpoint with empty lines and with `data.lowercase=false`."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml
from conftest import ROOT, cli
from sacrebleu.metrics import BLEU, CHRF
from toy_models import EOS, PAD, SOS, random_model

from seq2seq.data.examples import Example
from seq2seq.decode import DecodeSettings, decode_examples, score_examples
from seq2seq.evaluate import corpus_loss, sacrebleu_scores
from seq2seq.search import Hypothesis, length_penalty

CPU = torch.device("cpu")
GOLDEN = ROOT / "tests" / "data" / "golden"
GOLDEN_DE = (ROOT / "tests" / "data" / "golden.de").read_text(encoding="utf-8").splitlines()
GOLDEN_EN = (ROOT / "tests" / "data" / "golden.greedy.en").read_text(encoding="utf-8")


def decode(model, sources: list[list[int]], settings: DecodeSettings) -> list[list[Hypothesis]]:
    examples = [Example(src, [SOS, EOS]) for src in sources]
    return decode_examples(
        model, examples, sos=SOS, eos=EOS, pad=PAD, device=CPU, settings=settings
    )


@pytest.mark.parametrize(
    "settings", [DecodeSettings(), DecodeSettings(beam_size=3, n_best=2, alpha=0.6, min_length=2)]
)
def test_an_empty_source_gives_the_empty_hypothesis_scored_as_score_examples_scores_it(
    settings, monkeypatch
):
    model = random_model(seed=1)
    alone = decode(model, [[SOS, 5, 6, EOS], [SOS, 7, EOS]], settings)
    (ends,) = score_examples(model, [Example([SOS, EOS], [SOS, EOS])], pad=PAD, device=CPU)
    assert ends < 0.0
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *args: encoded.append(args[1]) or encode(*args))

    found = decode(model, [[SOS, 5, 6, EOS], [SOS, EOS], [SOS, 7, EOS], [SOS, EOS]], settings)

    assert [found[0], found[2]] == alone
    # Not searched (min_length does not apply): ended at once, n_best times.
    assert found[1] == found[3]
    assert [(h.tokens, h.ended) for h in found[1]] == [([], True)] * settings.n_best
    assert [h.log_prob for h in found[1]] == pytest.approx([ends] * settings.n_best, abs=1e-6)
    score = ends / length_penalty(1, settings.alpha)
    assert [h.score for h in found[1]] == pytest.approx([score] * settings.n_best, abs=1e-6)
    assert sorted(torch.cat(encoded).tolist()) == [2, 2, 3, 4]  # the empty ones apart


def test_empty_sources_take_one_model_step_and_no_search():
    model = random_model(seed=2)
    steps = []
    decode_step = model.decode_step
    model.decode_step = lambda tokens, state: steps.append(tokens) or decode_step(tokens, state)
    found = decode(model, [[SOS, EOS]] * 3, DecodeSettings(beam_size=4, n_best=4))
    assert [[(h.tokens, h.ended) for h in hs] for hs in found] == [[([], True)] * 4] * 3
    assert [t.tolist() for t in steps] == [[SOS] * 3]


def test_an_empty_target_scores_only_its_eos():
    model = random_model(seed=3)
    empty = Example([SOS, 5, 6, EOS], [SOS, EOS])
    with torch.inference_mode():
        logits = model(torch.tensor([empty.src]), torch.tensor([4]), torch.tensor([empty.tgt]), 1.0)
    expected = -torch.log_softmax(logits[0, 0].float(), dim=-1)[EOS].item()
    for ratio in (1.0, 0.0):
        loss = corpus_loss(model, [empty], pad=PAD, device=CPU, teacher_forcing_ratio=ratio)
        assert loss == pytest.approx(expected, rel=1e-5)
    # Beside a longer target it counts as one token of the mean.
    other = Example([SOS, 7, EOS], [SOS, 4, 5, EOS])
    both = corpus_loss(model, [empty, other], pad=PAD, device=CPU)
    alone = corpus_loss(model, [other], pad=PAD, device=CPU)
    assert both == pytest.approx((expected + 3 * alone) / 4, rel=1e-5)


def test_sacrebleu_scores_are_cased_unless_lowercased():
    hypotheses, references = ["a man sits on a bench ."], ["A Man sits on a Bench ."]
    cased = sacrebleu_scores(hypotheses, references, lowercase=False)
    lowered = sacrebleu_scores(hypotheses, references, lowercase=True)
    assert lowered["bleu"] == pytest.approx(100.0)
    assert cased["bleu"] == pytest.approx(BLEU().corpus_score(hypotheses, [references]).score)
    assert cased["bleu"] < 50
    assert cased["chrf"] == pytest.approx(CHRF().corpus_score(hypotheses, [references]).score)
    assert cased["chrf"] < lowered["chrf"]
    assert "|case:mixed|" in cased["bleu_signature"] and "|case:lc|" in lowered["bleu_signature"]
    assert "|case:mixed|" in cased["chrf_signature"]


# `seq2seq evaluate` on the golden checkpoint (lowercased; it writes "a a <unk> ...").


def evaluate(capsys, run, split_dir, *options) -> str:
    argv = ["evaluate", run, "--split", "mine", "--data-dir", split_dir, "--device", "cpu"]
    code = cli([*argv, *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_evaluate_counts_every_line_and_an_empty_source_gives_an_empty_line(tmp_path, capsys):
    sources = [GOLDEN_DE[0], "", GOLDEN_DE[2], GOLDEN_DE[4]]
    references = ["A man sits on a bench.", "A lost line.", "", "Children run along the beach."]
    (tmp_path / "mine.de").write_text("".join(f"{s}\n" for s in sources), encoding="utf-8")
    (tmp_path / "mine.en").write_text("".join(f"{r}\n" for r in references), encoding="utf-8")
    output = tmp_path / "out.en"

    result = json.loads(evaluate(capsys, GOLDEN, tmp_path, "--json", "--output", output))

    assert result["sentences"] == 4
    hypotheses = output.read_text(encoding="utf-8").split("\n")
    assert hypotheses.pop() == ""
    golden = GOLDEN_EN.splitlines()
    assert hypotheses == [golden[0], "", golden[2], golden[4]]
    expected = BLEU(lowercase=True).corpus_score(hypotheses, [references]).score
    assert result["bleu"] == pytest.approx(expected)
    assert math.isfinite(result["loss"]) and math.isfinite(result["free_loss"])


def test_evaluate_is_case_sensitive_when_the_data_is_not_lowercased(tmp_path, capsys):
    cased = tmp_path / "cased"
    shutil.copytree(GOLDEN, cased)
    config = yaml.safe_load((cased / "config.yaml").read_text())
    config["data"]["lowercase"] = False
    (cased / "config.yaml").write_text(yaml.safe_dump(config))
    references = ["A MAN ON A BENCH.", "A DOG AND A CAT.", "A WOMAN WITH A HAT."]
    (tmp_path / "mine.de").write_text("".join(f"{s}\n" for s in GOLDEN_DE[:3]), encoding="utf-8")
    (tmp_path / "mine.en").write_text("".join(f"{r}\n" for r in references), encoding="utf-8")
    output = tmp_path / "out.en"

    result = json.loads(evaluate(capsys, cased, tmp_path, "--json", "--output", output))
    hypotheses = output.read_text(encoding="utf-8").splitlines()

    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|")
    assert result["chrf_signature"].startswith("nrefs:1|case:mixed|")
    assert result["bleu"] == pytest.approx(BLEU().corpus_score(hypotheses, [references]).score)
    assert result["chrf"] == pytest.approx(CHRF().corpus_score(hypotheses, [references]).score)
    lowered = CHRF(lowercase=True).corpus_score(hypotheses, [references]).score
    assert result["bleu"] < BLEU(lowercase=True).corpus_score(hypotheses, [references]).score
    assert result["chrf"] < lowered  # the golden model writes lowercase
    printed = evaluate(capsys, cased, tmp_path).splitlines()
    assert printed[3].startswith("BLEU (detokenized, cased)       ")
    assert printed[3].endswith(result["bleu_signature"])
    assert printed[5].startswith("BLEU (lowercased spaCy tokens)  ")
