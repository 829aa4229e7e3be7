"""Empty hypotheses and empty inputs, as search.py decides them, for greedy and beam search, an
ensemble, validation's decoding and the Python API: a length limit of 0 gives the empty
hypothesis cut there (log-probability 0, not ended); an empty input gives the empty
translation ended at once, of the log-probability that scoring it gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from toy_models import EOS, PAD, SOS, random_model, sentences

import seq2seq
from seq2seq.data.examples import Example
from seq2seq.decode import DecodeSettings, best_translations, decode_examples
from seq2seq.models.ensemble import Ensemble
from seq2seq.search import Hypothesis, beam_search, greedy_search

CPU = torch.device("cpu")
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
CUT_AT_ZERO = Hypothesis([], 0.0, 0.0, ended=False)
SEARCHES = {
    "greedy": DecodeSettings(batch_size=4),
    "beam": DecodeSettings(batch_size=4, beam_size=3, n_best=2, alpha=0.6),
    "beam 1": DecodeSettings(batch_size=4, beam_size=1, min_length=1),  # beam search, size 1
}
MODELS = {
    "lstm": lambda: random_model(0),
    "ensemble": lambda: Ensemble([random_model(1), random_model(2, eos_bias=-1.0)]).eval(),
}


def examples(rows: list[list[int]]) -> list[Example]:
    return [Example([SOS, *row, EOS], [SOS, EOS]) for row in rows]


def decode(model, rows: list[list[int]], settings: DecodeSettings) -> list[list[Hypothesis]]:
    return decode_examples(
        model, examples(rows), sos=SOS, eos=EOS, pad=PAD, device=CPU, settings=settings
    )


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("settings", SEARCHES.values(), ids=SEARCHES.keys())
def test_validation_with_a_length_limit_of_0_gives_empty_lines(model, settings):
    """max_length_a and max_length_b of 0: beam search used to leave its n-best lists empty,
    and validation failed on `hypotheses[0]` with an IndexError."""
    zero = replace(settings, max_length_a=0.0, max_length_b=0)
    rows = sentences(6, seed=3)
    assert (
        best_translations(
            model(), examples(rows), sos=SOS, eos=EOS, pad=PAD, device=CPU, settings=zero
        )
        == [[]] * 6
    )
    assert decode(model(), rows, zero) == [[CUT_AT_ZERO] * settings.n_best] * 6


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("settings", SEARCHES.values(), ids=SEARCHES.keys())
def test_a_limit_of_0_beside_others_leaves_its_sentence_empty_and_the_others_alone(model, settings):
    """A limit of 0 in a batch with other limits: greedy and beam search used to take a step
    for that sentence, which its limit does not allow (beam search kept a one-token
    hypothesis; greedy search scored the step)."""
    model = model()
    half = replace(settings, max_length_a=0.5, max_length_b=0)
    rows = [[5], [6, 7, 8, 9], [7], [8, 9, 10, 11, 12, 4]]  # limits 0, 2, 0, 3
    found = decode(model, rows, half)
    assert found[0] == found[2] == [CUT_AT_ZERO] * settings.n_best
    for together, row in zip(found[1::2], rows[1::2], strict=True):
        (alone,) = decode(model, [row], half)
        assert [(h.tokens, h.ended) for h in together] == [(h.tokens, h.ended) for h in alone]
        log_probs = [h.log_prob for h in alone]
        assert [h.log_prob for h in together] == pytest.approx(log_probs, abs=1e-5)
        assert any(h.tokens for h in alone)  # they do decode


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_a_negative_length_limit_is_refused(search):
    options = {"beam_size": 2} if search is beam_search else {}
    src, lengths = torch.tensor([[SOS, 5, EOS], [SOS, 6, EOS]]), torch.tensor([3, 3])
    limits = torch.tensor([4, -2])
    with pytest.raises(ValueError, match=r"length limits must be 0 or more \(got -2\)"):
        search(random_model(0), src, lengths, sos=SOS, eos=EOS, max_length=limits, **options)


@pytest.fixture(scope="module")
def golden():
    return seq2seq.load(GOLDEN, device="cpu")


@pytest.mark.parametrize("beam_size", [1, 3])
def test_an_empty_input_has_the_log_probability_that_score_gives_it(golden, beam_size):
    """`nbest('')` used to give log-probability 0 without the model, `score('', '')` -4.43."""
    (ends,) = golden.score([""], [""])
    assert ends < -1.0
    assert golden.translate([""], beam_size=beam_size) == [""]
    found = golden.nbest([""], n=beam_size, alpha=0.5)[0]
    assert [(h.text, h.ended) for h in found] == [("", True)] * beam_size
    assert [h.log_prob for h in found] == pytest.approx([ends] * beam_size, abs=1e-5)
    assert [h.score for h in found] == [h.log_prob for h in found]  # a length of 1: penalty 1


def test_a_sentence_beside_an_empty_input_is_decoded_as_alone(golden):
    both = golden.nbest(["Ein Mann.", "", "Ein Hund."], n=2)
    assert [both[0], both[2]] == golden.nbest(["Ein Mann.", "Ein Hund."], n=2)
    assert both[1] == golden.nbest([""], n=2)[0]
