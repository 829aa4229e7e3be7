"""Greedy search: batched decoding equals a plain one-sentence-at-a-time argmax loop, stops at
<eos> or at each sentence's own length limit, and never lets sentences affect each other."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from toy_models import EOS, SOS, TGT_VOCAB, padded, random_model, sentences

from seq2seq.models import Seq2Seq
from seq2seq.search import greedy_search, max_lengths


@dataclass
class ScriptState:
    rows: torch.Tensor  # (B,) which script each batch entry follows
    steps: torch.Tensor  # (B,) how many tokens it has emitted

    def select(self, index: torch.Tensor) -> ScriptState:
        return ScriptState(self.rows[index], self.steps[index])


class ScriptedModel:
    """Emits scripts[i][t] at step t for the sentence whose src[:, 1] is i (then <eos>), so the
    right output is known. The chosen token's logit is 2 + t, every other logit 0."""

    def __init__(self, scripts: list[list[int]]):
        self.scripts = scripts
        self.inputs: list[list[int]] = []  # the tokens each decode_step call was given

    def encode(self, src, src_lengths):
        return ScriptState(src[:, 1].clone(), torch.zeros(src.size(0), dtype=torch.long))

    def decode_step(self, tokens, state):
        self.inputs.append(tokens.tolist())
        logits = torch.zeros(tokens.size(0), TGT_VOCAB)
        for b, (row, step) in enumerate(
            zip(state.rows.tolist(), state.steps.tolist(), strict=True)
        ):
            script = self.scripts[row]
            logits[b, script[step] if step < len(script) else EOS] = 2.0 + step
        return torch.log_softmax(logits, -1), ScriptState(state.rows, state.steps + 1)


def scripted_log_prob(step: int) -> float:
    """The log-probability ScriptedModel gives its chosen token at this step."""
    logit = 2.0 + step
    return logit - math.log(math.exp(logit) + TGT_VOCAB - 1)


def scripted_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.tensor([[SOS, row, EOS] for row in range(n)])
    return src, torch.full((n,), 3)


def test_greedy_stops_at_eos_or_max_length_with_known_scores():
    scripts = [
        [5, 6, EOS, 7, 8],  # stops at <eos>; what follows is never emitted
        [5, 6, 7, 8, 9, 10],  # cut at its max_length 3
        [EOS],  # an empty translation
        [9, 9, 9],  # <eos> would come at step 3, but max_length 3 ends it first
        [4, 4, 4, 4, EOS],  # the longest: 5 steps
    ]
    model = ScriptedModel(scripts)
    src, lengths = scripted_batch(len(scripts))

    result = greedy_search(
        model, src, lengths, sos=SOS, eos=EOS, max_length=torch.tensor([10, 3, 4, 3, 8])
    )

    assert [h.tokens for (h,) in result] == [[5, 6], [5, 6, 7], [], [9, 9, 9], [4, 4, 4, 4]]
    assert [h.ended for (h,) in result] == [True, False, True, False, True]
    steps_scored = [3, 3, 1, 3, 5]  # <eos> is scored when it ends a sentence
    expected = [sum(scripted_log_prob(t) for t in range(n)) for n in steps_scored]
    assert [h.log_prob for (h,) in result] == pytest.approx(expected, abs=1e-5)
    assert [h.score for (h,) in result] == [h.log_prob for (h,) in result]  # alpha 0
    # The batch stops once all sentences have, well before the largest max_length (10).
    assert len(model.inputs) == 5


def test_greedy_feeds_back_its_own_predictions():
    model = ScriptedModel([[5, 6, 7, EOS], [8, 9, EOS]])
    src, lengths = scripted_batch(2)
    greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=torch.tensor([6, 6]))
    assert model.inputs[:3] == [[SOS, SOS], [5, 8], [6, 9]]
    assert model.inputs[3][0] == 7


def test_max_lengths_scales_the_source_length_and_caps_it():
    lengths = max_lengths(torch.tensor([0, 3, 10, 20]), 1.5, 10)
    assert lengths.tolist() == [10, 14, 25, 40]
    assert max_lengths(torch.tensor([0, 3, 10, 20]), 1.5, 10, limit=20).tolist() == [10, 14, 20, 20]


def real_model(eos_bias: float = 1.0) -> Seq2Seq:
    return random_model(0, eos_bias, unlikely=-10.0)


def greedy_one_at_a_time(model, rows: list[list[int]], limits: list[int]):
    """The reference: one sentence, no batch, no padding, a plain loop."""
    tokens, scores, ended = [], [], []
    for row, limit in zip(rows, limits, strict=True):
        state = model.encode(torch.tensor([row]), torch.tensor([len(row)]))
        token, out, score, end = torch.tensor([SOS]), [], 0.0, False
        for _ in range(limit):
            log_probs, state = model.decode_step(token, state)
            score += log_probs.max().item()
            token = log_probs.argmax(-1)
            if token.item() == EOS:
                end = True
                break
            out.append(token.item())
        tokens.append(out)
        scores.append(score)
        ended.append(end)
    return tokens, scores, ended


def test_greedy_equals_a_one_sentence_at_a_time_argmax_loop():
    model = real_model()
    rows = sentences(12, seed=1, shortest=2, longest=8)
    limits = [4, 9, 1, 12, 7, 3, 12, 10, 5, 8, 12, 2]

    with torch.no_grad():
        result = greedy_search(
            model, *padded(rows), sos=SOS, eos=EOS, max_length=torch.tensor(limits)
        )
        expected_tokens, expected_scores, expected_ended = greedy_one_at_a_time(model, rows, limits)

    assert [h.tokens for (h,) in result] == expected_tokens
    assert [h.log_prob for (h,) in result] == pytest.approx(expected_scores, abs=1e-4)
    assert [h.ended for (h,) in result] == expected_ended
    # Both endings occur, so both are checked: some sentences stop at <eos>, some at their limit.
    assert set(expected_ended) == {True, False}


def test_outputs_stop_at_eos_and_hold_no_specials():
    model = real_model()
    rows = sentences(12, seed=2, shortest=2, longest=8)
    limits = torch.full((12,), 15)
    result = greedy_search(model, *padded(rows), sos=SOS, eos=EOS, max_length=limits)
    assert all(EOS not in h.tokens and SOS not in h.tokens for (h,) in result)
    assert any(0 < len(h.tokens) < 15 and h.ended for (h,) in result)  # stopped at their <eos>


def test_a_sentence_does_not_depend_on_the_rest_of_the_batch():
    model = real_model()
    rows = sentences(12, seed=1, shortest=2, longest=8)
    limits = [4, 9, 1, 12, 7, 3, 12, 10, 5, 8, 12, 2]
    first = greedy_search(model, *padded(rows), sos=SOS, eos=EOS, max_length=torch.tensor(limits))
    # The same sentences in reverse order, among new and longer neighbours with other limits.
    neighbours = [*sentences(4, seed=9, shortest=2, longest=8), [5] * 15]
    batch = [*neighbours, *reversed(rows)]
    batch_limits = [20, 1, 6, 30, 11, *reversed(limits)]
    second = greedy_search(
        model, *padded(batch), sos=SOS, eos=EOS, max_length=torch.tensor(batch_limits)
    )
    assert [h.tokens for (h,) in second[5:]] == [h.tokens for (h,) in first[::-1]]
    assert [h.ended for (h,) in second[5:]] == [h.ended for (h,) in first[::-1]]
    log_probs = [h.log_prob for (h,) in first[::-1]]
    assert [h.log_prob for (h,) in second[5:]] == pytest.approx(log_probs, abs=1e-4)
    assert len({tuple(h.tokens) for (h,) in first}) > 3  # the sentences' outputs differ


def test_every_sentence_keeps_its_own_max_length():
    model = real_model(eos_bias=-20.0)  # never stops by itself
    rows = sentences(6, seed=5, shortest=2, longest=8)
    limits = torch.tensor([1, 2, 5, 8, 3, 13])
    result = greedy_search(model, *padded(rows), sos=SOS, eos=EOS, max_length=limits)
    assert [len(h.tokens) for (h,) in result] == limits.tolist()
    assert not any(h.ended for (h,) in result)
