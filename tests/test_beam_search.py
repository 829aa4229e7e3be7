"""Beam search: size 1 is greedy; on hand-set distributions it finds the sentence greedy misses,
with the exact log-probability; its log-probabilities are the model's own (teacher-forced
re-scoring agrees); a sentence's result does not depend on its batch; min/max length, the
length penalty and n-best lists behave as documented."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from toy_models import EOS, PAD, SOS, TGT_VOCAB, padded, random_model, sentences

from seq2seq.data.examples import Example
from seq2seq.decode import DecodeSettings, decode_examples, score_examples
from seq2seq.search import Hypothesis, beam_search, greedy_search, length_penalty

CPU = torch.device("cpu")


def beam(model, rows, limits, **options) -> list[list[Hypothesis]]:
    return beam_search(
        model, *padded(rows), sos=SOS, eos=EOS, max_length=torch.tensor(limits), **options
    )


def assert_well_formed(nbest: list[list[Hypothesis]], limits: list[int]) -> None:
    for hypotheses, limit in zip(nbest, limits, strict=True):
        for h in hypotheses:
            assert EOS not in h.tokens and SOS not in h.tokens, h
            # <eos> at step s leaves s - 1 tokens: only a hypothesis cut at its limit has limit.
            assert len(h.tokens) < limit if h.ended else len(h.tokens) == limit, (h, limit)


def assert_equal_hypotheses(found: list[list[Hypothesis]], expected: list[list[Hypothesis]]):
    """The same tokens and endings, and log-probabilities and scores up to rounding."""
    assert [[(h.tokens, h.ended) for h in hs] for hs in found] == [
        [(h.tokens, h.ended) for h in hs] for hs in expected
    ]
    for hypotheses, references in zip(found, expected, strict=True):
        for h, reference in zip(hypotheses, references, strict=True):
            assert h.log_prob == pytest.approx(reference.log_prob, abs=1e-5)
            assert h.score == pytest.approx(reference.score, abs=1e-5)


# A stand-in model whose next-token distributions are set by hand, per prefix.

FILL = 10  # what an unlisted prefix continues with (never <eos>)
FLOOR = 1e-9  # probability of every token a distribution does not list


@dataclass
class TreeState:
    sources: list[int]  # which tree each row follows
    prefixes: list[tuple[int, ...] | None]  # tokens emitted so far (None: nothing read yet)

    def select(self, index: torch.Tensor) -> TreeState:
        rows = index.tolist()
        return TreeState([self.sources[i] for i in rows], [self.prefixes[i] for i in rows])


class TreeModel:
    """trees[s][prefix] = {token: probability} for the sentence whose src[:, 0] is s."""

    def __init__(self, trees: list[dict[tuple[int, ...], dict[int, float]]]):
        self.trees = trees

    def encode(self, src, src_lengths):
        return TreeState(src[:, 0].tolist(), [None] * src.size(0))

    def decode_step(self, tokens, state):
        prefixes = [
            () if prefix is None else (*prefix, token)
            for prefix, token in zip(state.prefixes, tokens.tolist(), strict=True)
        ]
        log_probs = torch.full((len(prefixes), TGT_VOCAB), math.log(FLOOR))
        for row, (source, prefix) in enumerate(zip(state.sources, prefixes, strict=True)):
            for token, p in self.trees[source].get(prefix, {FILL: 0.9}).items():
                log_probs[row, token] = math.log(p)
        return log_probs, TreeState(state.sources, prefixes)


def log(*probabilities: float) -> float:
    return sum(math.log(p) for p in probabilities)


# Beam 2: 5 <eos> (0.22) and 5 7 <eos> (0.1782) finish at steps 2 and 3, while 4 6 8 (0.405)
# is live; it ends at step 4, the best of all.
BEST_STILL_LIVE = {
    (): {4: 0.6, 5: 0.4},
    (4,): {EOS: 0.25, 6: 0.75},
    (5,): {EOS: 0.55, 7: 0.45},
    (4, 6): {EOS: 0.1, 8: 0.9},
    (5, 7): {EOS: 0.99, 6: 0.01},
    (4, 6, 8): {EOS: 1.0},
}
# Greedy takes 4 (0.6) and ends with 4 6 (0.24); 5 6 (0.4 * 0.9 = 0.36) is better.
GREEDY_MISSES = {
    (): {4: 0.6, 5: 0.4},
    (4,): {6: 0.4, 7: 0.35, EOS: 0.25},
    (5,): {6: 0.9, EOS: 0.1},
    (4, 6): {EOS: 1.0},
    (5, 6): {EOS: 1.0},
}
# 4 <eos> (0.315) finishes at step 2; 5 6 7 <eos> (0.4455) finishes at step 4.
ENDS_EARLY = {
    (): {4: 0.45, 5: 0.55},
    (4,): {EOS: 0.7, 6: 0.3},
    (4, 6): {8: 1.0},
    (5,): {6: 0.9, 7: 0.1},
    (5, 6): {7: 0.9, 8: 0.1},
    (5, 6, 7): {EOS: 1.0},
}
# 4 <eos> (0.4992) is more probable than 5 6 7 8 9 <eos> (0.48 * 0.99 ** 5 = 0.4565), but the
# length penalty (alpha 1) prefers the longer one.
SHORT_OR_LONG = {
    (): {4: 0.52, 5: 0.48},
    (4,): {EOS: 0.96, 6: 0.04},
    (5,): {6: 0.99, EOS: 0.01},
    (5, 6): {7: 0.99, EOS: 0.01},
    (5, 6, 7): {8: 0.99, EOS: 0.01},
    (5, 6, 7, 8): {9: 0.99, EOS: 0.01},
    (5, 6, 7, 8, 9): {EOS: 0.99, 6: 0.01},
}
# 4 <eos> would be best, but min_length 2 bars it; 5 6 <eos> wins.
STOPS_AT_ONCE = {
    (): {EOS: 0.5, 4: 0.3, 5: 0.2},
    (4,): {EOS: 0.9, 7: 0.1},
    (5,): {6: 0.9, EOS: 0.1},
    (4, 7): {EOS: 0.6, 8: 0.4},
    (5, 6): {EOS: 1.0},
}
# Each step may end; at most 4 tokens.
RUNS_LONG = {
    (): {4: 0.7, EOS: 0.3},
    (4,): {5: 0.8, EOS: 0.2},
    (4, 5): {6: 0.6, EOS: 0.4},
    (4, 5, 6): {EOS: 0.9, 7: 0.1},
}


def scripted(tree, limit: int = 10, **options) -> list[Hypothesis]:
    return beam(TreeModel([tree]), [[0]], [limit], **options)[0]


def test_beam_size_two_finds_the_sentence_greedy_misses():
    model = TreeModel([GREEDY_MISSES])
    greedy = greedy_search(model, *padded([[0]]), sos=SOS, eos=EOS, max_length=torch.tensor([9]))
    assert [h.tokens for (h,) in greedy] == [[4, 6]]
    assert [h.log_prob for (h,) in greedy] == pytest.approx([log(0.6, 0.4, 1.0)], abs=1e-6)

    found = scripted(GREEDY_MISSES, beam_size=2, n_best=2)

    assert [h.tokens for h in found] == [[5, 6], [4, 6]]
    assert [h.log_prob for h in found] == pytest.approx([log(0.4, 0.9, 1.0), log(0.24)], abs=1e-6)
    assert [h.score for h in found] == [h.log_prob for h in found]


def test_a_finished_hypothesis_does_not_stop_the_others():
    found = scripted(ENDS_EARLY, beam_size=2, n_best=2)
    assert [h.tokens for h in found] == [[5, 6, 7], [4]]
    assert [h.log_prob for h in found] == pytest.approx([log(0.55, 0.9, 0.9), log(0.45, 0.7)])
    best = scripted(ENDS_EARLY, beam_size=2, n_best=1)
    assert best == found[:1]


def test_k_finished_hypotheses_do_not_stop_a_live_one_that_beats_them():
    """Without a length penalty the search goes on while a live hypothesis can still win."""
    found = scripted(BEST_STILL_LIVE, beam_size=2, n_best=2)
    assert [h.tokens for h in found] == [[4, 6, 8], [5]]
    assert [h.log_prob for h in found] == pytest.approx([log(0.6, 0.75, 0.9), log(0.4, 0.55)])


def test_length_penalty_prefers_the_longer_sentence_with_the_exact_score():
    short, long = log(0.52, 0.96), log(0.48, *[0.99] * 5)
    assert short > long  # so only the penalty can change the order

    plain = scripted(SHORT_OR_LONG, beam_size=2, n_best=1, alpha=0.0)
    assert [(h.tokens, h.score) for h in plain] == [([4], pytest.approx(short, abs=1e-6))]

    found = scripted(SHORT_OR_LONG, beam_size=2, n_best=2, alpha=1.0)
    assert [h.tokens for h in found] == [[5, 6, 7, 8, 9], [4]]
    assert [h.log_prob for h in found] == pytest.approx([long, short], abs=1e-6)
    # Lengths count the <eos>: 6 and 2.
    assert [h.score for h in found] == pytest.approx([long / (11 / 6), short / (7 / 6)], abs=1e-6)


def test_min_length_bars_eos_but_keeps_the_true_log_probability():
    assert scripted(STOPS_AT_ONCE, beam_size=2)[0].tokens == []
    found = scripted(STOPS_AT_ONCE, beam_size=2, n_best=2, min_length=2)
    assert [h.tokens for h in found] == [[5, 6], [4, 7]]
    assert [h.log_prob for h in found] == pytest.approx([log(0.2, 0.9, 1.0), log(0.3, 0.1, 0.6)])


def test_a_hypothesis_at_max_length_ends_without_eos():
    found = scripted(RUNS_LONG, limit=1, beam_size=2, n_best=2)
    assert [h.tokens for h in found] == [[4], []]
    assert [h.ended for h in found] == [False, True]
    assert [h.log_prob for h in found] == pytest.approx([log(0.7), log(0.3)], abs=1e-6)
    # At limit 2, "4 5" is cut without its <eos> (0.4); "4 <eos>" fits in 2 steps and keeps it.
    found = scripted(RUNS_LONG, limit=2, beam_size=3, n_best=3)
    assert [h.tokens for h in found] == [[4, 5], [], [4]]
    assert [h.ended for h in found] == [False, True, True]
    expected = [log(0.7, 0.8), log(0.3), log(0.7, 0.2)]
    assert [h.log_prob for h in found] == pytest.approx(expected, abs=1e-6)


def test_scripted_sentences_decode_alike_alone_and_together():
    trees = [GREEDY_MISSES, ENDS_EARLY, SHORT_OR_LONG, STOPS_AT_ONCE, RUNS_LONG]
    model = TreeModel(trees)
    limits = [10, 3, 8, 10, 2]
    options = {"beam_size": 3, "n_best": 2, "alpha": 0.5, "min_length": 1}
    together = beam(model, [[i] for i in range(5)], limits, **options)
    alone = [beam(model, [[i]], [limit], **options)[0] for i, limit in enumerate(limits)]
    assert together == alone


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_beam_size_one_is_greedy(seed):
    model = random_model(seed, eos_bias=[1.0, 0.0, 2.0, -1.0][seed])
    rows = sentences(12, seed=seed)
    limits = torch.randint(1, 14, (12,), generator=torch.Generator().manual_seed(seed)).tolist()

    greedy = greedy_search(model, *padded(rows), sos=SOS, eos=EOS, max_length=torch.tensor(limits))
    found = beam(model, rows, limits, beam_size=1)

    assert_equal_hypotheses(found, greedy)
    assert all(h[0].score == h[0].log_prob for h in found)
    assert_well_formed(found, limits)
    assert len({tuple(h.tokens) for (h,) in greedy}) > 3  # the sentences' outputs differ


def test_beam_size_one_is_greedy_with_both_endings():
    model = random_model(4)
    rows = sentences(16, seed=4)
    limits = [len(row) + 1 for row in rows]
    greedy = greedy_search(model, *padded(rows), sos=SOS, eos=EOS, max_length=torch.tensor(limits))
    found = beam(model, rows, limits, beam_size=1)
    assert_equal_hypotheses(found, greedy)
    assert {h.ended for (h,) in found} == {True, False}


def wrapped(rows: list[list[int]]) -> list[list[int]]:
    return [[SOS, *row, EOS] for row in rows]


def decode(model, rows, **settings) -> list[list[Hypothesis]]:
    examples = [Example(src, [SOS, EOS]) for src in wrapped(rows)]
    options = DecodeSettings(batch_size=5, max_length_a=1.0, max_length_b=2, **settings)
    return decode_examples(model, examples, sos=SOS, eos=EOS, pad=PAD, device=CPU, settings=options)


def rescore(model, sources, nbest) -> list[list[float]]:
    """Teacher-forced log-probabilities of every hypothesis, <eos> included where it ended."""
    examples, shape = [], []
    for src, hypotheses in zip(sources, nbest, strict=True):
        for h in hypotheses:
            eos = [EOS] if h.ended else []
            examples.append(Example(src, [SOS, *h.tokens, *eos]))
        shape.append(len(hypotheses))
    scores = iter(score_examples(model, examples, pad=PAD, device=CPU, batch_size=7))
    return [[next(scores) for _ in range(n)] for n in shape]


@pytest.mark.parametrize(
    ("beam_size", "n_best", "eos_bias"), [(1, 1, 1.0), (2, 2, 1.0), (5, 5, 2.0), (4, 3, -20.0)]
)
def test_log_probs_equal_teacher_forced_rescoring(beam_size, n_best, eos_bias):
    model = random_model(5, eos_bias)
    rows = sentences(11, seed=5)
    limits = [len(row) + 2 for row in rows]  # max_length_a 1, max_length_b 2

    nbest = decode(model, rows, beam_size=beam_size, n_best=n_best)

    assert [len(h) for h in nbest] == [n_best] * len(rows)
    assert_well_formed(nbest, limits)
    for hypotheses, scores in zip(nbest, rescore(model, wrapped(rows), nbest), strict=True):
        assert [h.log_prob for h in hypotheses] == pytest.approx(scores, abs=1e-4)
        assert all(h.score == h.log_prob for h in hypotheses)
    if eos_bias < 0:  # it never ends by itself: every hypothesis runs to its sentence's limit
        assert [{len(h.tokens) for h in hs} for hs in nbest] == [{limit} for limit in limits]


@pytest.mark.parametrize(("beam_size", "n_best", "alpha"), [(6, 4, 0.0), (16, 16, 0.7)])
def test_nbest_lists_are_sorted_distinct_and_full(beam_size, n_best, alpha):
    model = random_model(6)
    rows = sentences(8, seed=6)
    limits = [len(row) + 4 for row in rows]
    nbest = beam(model, rows, limits, beam_size=beam_size, n_best=n_best, alpha=alpha)
    assert_well_formed(nbest, limits)
    for hypotheses in nbest:
        assert len(hypotheses) == n_best
        assert len({tuple(h.tokens) for h in hypotheses}) == n_best
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)


def test_a_sentence_does_not_depend_on_its_batch():
    model = random_model(7)
    rows = sentences(12, seed=7)
    limits = [len(row) + 3 for row in rows]
    options = {"beam_size": 3, "n_best": 3, "alpha": 0.6, "min_length": 1}
    alone = [
        beam(model, [row], [limit], **options)[0] for row, limit in zip(rows, limits, strict=True)
    ]
    order = torch.randperm(12, generator=torch.Generator().manual_seed(7)).tolist()
    for size in (2, 5, 12):
        for start in range(0, 12, size):
            chosen = order[start : start + size]
            found = beam(model, [rows[i] for i in chosen], [limits[i] for i in chosen], **options)
            for i, hypotheses in zip(chosen, found, strict=True):
                assert [h.tokens for h in hypotheses] == [h.tokens for h in alone[i]]
                for h, reference in zip(hypotheses, alone[i], strict=True):
                    assert h.log_prob == pytest.approx(reference.log_prob, abs=1e-5)
                    assert h.score == pytest.approx(reference.score, abs=1e-5)
    assert len({tuple(h[0].tokens) for h in alone}) > 3


def test_min_length_holds_where_max_length_allows():
    model = random_model(8, eos_bias=4.0)  # stops early
    rows = sentences(10, seed=8)
    limits = [6, 7, 8, 9, 10, 2, 3, 1, 6, 6]
    shortest = beam(model, rows, limits, beam_size=3, n_best=3)
    assert min(len(h.tokens) for hs in shortest for h in hs) < 3  # so min_length has work to do

    found = beam(model, rows, limits, beam_size=3, n_best=3, min_length=3)

    assert_well_formed(found, limits)
    for hypotheses, limit in zip(found, limits, strict=True):
        assert all(len(h.tokens) >= min(3, limit) for h in hypotheses)
    for hypotheses, limit in zip(found[5:8], limits[5:8], strict=True):
        assert all(len(h.tokens) == limit for h in hypotheses)  # below min_length: at the limit
    # <eos> is barred, not renormalised away: the log-probabilities stay the model's.
    for hypotheses, scores in zip(found, rescore(model, rows, found), strict=True):
        assert [h.log_prob for h in hypotheses] == pytest.approx(scores, abs=1e-4)


def test_every_sentence_keeps_its_own_max_length():
    model = random_model(9, eos_bias=-20.0)  # never stops by itself
    rows = sentences(6, seed=9)
    limits = [1, 2, 5, 8, 3, 13]
    found = beam(model, rows, limits, beam_size=4, n_best=4)
    assert [{len(h.tokens) for h in hs} for hs in found] == [{limit} for limit in limits]
    assert_well_formed(found, limits)


@pytest.mark.parametrize("alpha", [0.6, 1.0, 2.0])
def test_score_is_log_prob_over_the_length_penalty(alpha):
    model = random_model(10)
    rows = sentences(10, seed=10)
    limits = [len(row) + 1 for row in rows]
    found = beam(model, rows, limits, beam_size=4, n_best=4, alpha=alpha)
    assert_well_formed(found, limits)  # so `ended` agrees with the lengths
    endings = set()
    for hypotheses in found:
        for h in hypotheses:
            length = len(h.tokens) + (1 if h.ended else 0)
            endings.add(h.ended)
            assert h.score == pytest.approx(h.log_prob / ((5 + length) / 6) ** alpha, rel=1e-6)
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
    assert endings == {True, False}  # both kinds of length were checked


def test_alpha_zero_ranks_by_log_prob():
    model = random_model(11)
    rows = sentences(8, seed=11)
    found = beam(model, rows, [12] * 8, beam_size=4, n_best=4, alpha=0.0)
    for hypotheses in found:
        assert [h.score for h in hypotheses] == [h.log_prob for h in hypotheses]
        log_probs = [h.log_prob for h in hypotheses]
        assert log_probs == sorted(log_probs, reverse=True)


def test_length_penalty_known_values():
    assert length_penalty(1, 1.0) == 1.0
    assert length_penalty(7, 0.5) == pytest.approx(math.sqrt(2))
    assert length_penalty(13, 2.0) == pytest.approx(9.0)
    assert length_penalty(40, 0.0) == 1.0


@pytest.mark.parametrize(("n_best", "beam_size"), [(3, 2), (0, 2), (2, 1)])
def test_n_best_outside_one_to_beam_size_is_refused(n_best, beam_size):
    message = f"n_best ({n_best}) must be between 1 and beam_size ({beam_size})"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        beam(random_model(0), [[4, 5]], [5], beam_size=beam_size, n_best=n_best)


def test_min_length_holds_with_beam_size_one():
    model = random_model(8, eos_bias=4.0)  # stops early
    rows = [row for row in sentences(10, seed=8) if len(row) >= 2]  # limits len + 2 >= 4
    assert min(len(h[0].tokens) for h in decode(model, rows, beam_size=1)) < 3
    found = decode(model, rows, beam_size=1, min_length=3)
    assert min(len(h[0].tokens) for h in found) >= 3
