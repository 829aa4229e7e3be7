"""The model protocol, checked for every registered architecture (models.REGISTRY).

A new `model.type` joins by being registered and by adding its tiny settings to TINY below;
it then has to prove every property here, instead of repeating these tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from tiny_models import (
    EOS,
    PAD,
    SOS,
    SRC_VOCAB,
    TGT_VOCAB,
    TINY,
    TRAINING_LR,
    TYPES,
    build,
    make,
    padded,
    sentences,
)

from seq2seq import checkpoint
from seq2seq.config import MODEL_CONFIGS, Config
from seq2seq.data.batching import collate
from seq2seq.data.examples import Example
from seq2seq.data.vocab import SPECIALS, Vocab
from seq2seq.models import REGISTRY
from seq2seq.search import Hypothesis, beam_search, greedy_search

# Settings and Adam's learning rate under which a model learns the digit-reversal task.
TOY = {
    "lstm": ({"embedding_size": 32, "hidden_size": 128, "num_layers": 1, "dropout": 0.0}, 1e-2),
    "attention": ({"embedding_size": 32, "hidden_size": 64, "num_layers": 1, "dropout": 0.0},
                  1e-2),
    "transformer": ({"d_model": 64, "heads": 4, "encoder_layers": 2, "decoder_layers": 2,
                     "ff_size": 128, "dropout": 0.0, "pre_norm": True}, 3e-3),
}  # fmt: skip


def greedy(model, rows, extra: int = 0, fill: int = PAD) -> list[list[int]]:
    """Greedy search's tokens for each row."""
    src, lengths = padded(rows, extra, fill)
    found = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=lengths + 5)
    return [h.tokens for (h,) in found]


def test_every_registered_type_is_in_this_suite():
    assert set(TINY) == set(REGISTRY) == set(TOY) == set(TRAINING_LR) == set(MODEL_CONFIGS)


@pytest.mark.parametrize("kind", TYPES)
def test_the_suites_models_translate_by_their_source(kind):
    """The checks below compare translations; they only bite if translations differ."""
    found = greedy(make(kind), sentences(12, seed=1))
    assert len({tuple(tokens) for tokens in found}) >= 4
    assert sum(bool(tokens) for tokens in found) >= 6


@pytest.mark.parametrize("kind", TYPES)
def test_padding_never_changes_an_encoding_or_a_translation(kind):
    model = make(kind)
    rows = sentences(6, seed=1)
    src, lengths = padded(rows)
    more, _ = padded(rows, extra=4, fill=7)  # longer, and the padding holds a real token
    tokens = torch.full((len(rows),), SOS)
    for _ in range(4):  # the encodings, seen through the steps they drive
        expected, state = model.decode_step(tokens, model.encode(src, lengths))
        found, _ = model.decode_step(tokens, model.encode(more, lengths))
        assert torch.allclose(expected, found, atol=1e-5)
        tokens = expected.argmax(-1)
    assert greedy(model, rows) == greedy(model, rows, extra=4, fill=7)
    beams = [
        beam_search(model, s, lengths, sos=SOS, eos=EOS, beam_size=3, max_length=lengths + 5)
        for s in (src, more)
    ]
    assert_same_hypotheses(*beams)
    state, longer = model.encode(src, lengths), model.encode(more, lengths)
    if hasattr(state, "summary"):  # the sentence vector `seq2seq sentence-map` draws
        assert torch.allclose(state.summary(), longer.summary(), atol=1e-5)


def assert_same_hypotheses(found, expected) -> None:
    """The same tokens and endings; log-probabilities and scores equal up to rounding."""
    assert [[(h.tokens, h.ended) for h in hs] for hs in found] == [
        [(h.tokens, h.ended) for h in hs] for hs in expected
    ]
    for name in ("log_prob", "score"):
        numbers = [getattr(h, name) for hs in expected for h in hs]
        assert [getattr(h, name) for hs in found for h in hs] == pytest.approx(numbers, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("kind", TYPES)
def test_beam_1_equals_greedy(kind, alpha):
    model = make(kind)
    src, lengths = padded(sentences(8, seed=2))
    # Room to end for half the sentences; one short of a word-for-word translation for the rest.
    limits = torch.where(torch.arange(8) % 2 == 0, lengths + 5, (lengths - 3).clamp(min=1))
    expected = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=limits, alpha=alpha)
    found = beam_search(
        model, src, lengths, sos=SOS, eos=EOS, beam_size=1, max_length=limits, alpha=alpha
    )
    assert_same_hypotheses(found, expected)
    assert {h.ended for (h,) in expected} == {True, False}


@dataclass
class PrefixState:
    src: torch.Tensor  # (B, S)
    src_lengths: torch.Tensor  # (B,)
    prefix: torch.Tensor  # (B, t) the tokens fed so far

    def select(self, index: torch.Tensor) -> PrefixState:
        return PrefixState(self.src[index], self.src_lengths[index], self.prefix[index])


class Recomputed:
    """Any registered model decoded without its cache: every step runs the teacher-forced
    training forward over the source and the whole prefix again."""

    def __init__(self, model):
        self.model = model

    def encode(self, src, src_lengths) -> PrefixState:
        return PrefixState(src, src_lengths, src.new_zeros(src.size(0), 0))

    def decode_step(self, tokens, state: PrefixState):
        prefix = torch.cat([state.prefix, tokens.unsqueeze(1)], dim=1)  # (B, t + 1)
        tgt = torch.cat([prefix, prefix[:, :1]], dim=1)  # the forward predicts all but one
        logits = self.model(state.src, state.src_lengths, tgt)[:, -1]  # (B, V)
        new = PrefixState(state.src, state.src_lengths, prefix)
        return torch.log_softmax(logits.float(), dim=-1), new


@pytest.mark.parametrize("kind", TYPES)
def test_cached_decoding_equals_recomputing_the_prefix(kind):
    """The state each decode_step hands on (recurrent states, key/value caches), reordered by
    beam search, gives what recomputing the prefix from scratch gives."""
    model = make(kind)
    src, lengths = padded(sentences(6, seed=10))
    limits = lengths + 3
    for search, options in ((greedy_search, {}), (beam_search, {"beam_size": 3, "n_best": 3})):
        found = search(model, src, lengths, sos=SOS, eos=EOS, max_length=limits, **options)
        expected = search(
            Recomputed(model), src, lengths, sos=SOS, eos=EOS, max_length=limits, **options
        )
        assert_same_hypotheses(found, expected)


@pytest.mark.parametrize("kind", TYPES)
def test_a_length_limit_of_0_gives_the_empty_hypothesis_cut_there(kind):
    """search.py's decision, for every architecture: no step is taken for that sentence, and
    the others decode as they would alone."""
    model = make(kind)
    rows = sentences(4, seed=11)
    src, lengths = padded(rows)
    limits = torch.tensor([0, 6, 0, 5])
    cut = Hypothesis([], 0.0, 0.0, ended=False)
    for search, options in ((greedy_search, {}), (beam_search, {"beam_size": 3, "n_best": 2})):
        found = search(model, src, lengths, sos=SOS, eos=EOS, max_length=limits, **options)
        assert found[0] == found[2] == [cut] * options.get("n_best", 1)
        for i in (1, 3):
            src_i, lengths_i = padded([rows[i]])
            alone = search(
                model, src_i, lengths_i, sos=SOS, eos=EOS, max_length=limits[i : i + 1], **options
            )
            assert_same_hypotheses(found[i : i + 1], alone)


@pytest.mark.parametrize("kind", TYPES)
def test_chained_decode_steps_give_the_training_forwards_log_probs(kind):
    model = make(kind)
    src, lengths = padded(sentences(5, seed=3))
    tgt, _ = padded(sentences(5, seed=4, vocab=TGT_VOCAB))
    with torch.no_grad():
        forward = torch.log_softmax(model(src, lengths, tgt, 1.0).float(), dim=-1)
        state, steps = model.encode(src, lengths), []
        for t in range(tgt.size(1) - 1):
            log_probs, state = model.decode_step(tgt[:, t], state)
            steps.append(log_probs)
    assert forward.shape == (5, tgt.size(1) - 1, len(TGT_VOCAB))
    assert torch.allclose(forward, torch.stack(steps, dim=1), atol=1e-5)


@pytest.mark.parametrize("kind", TYPES)
def test_state_select_repeats_and_reorders_rows_exactly(kind):
    model = make(kind)
    src, lengths = padded(sentences(4, seed=5))
    index = torch.tensor([2, 0, 0, 3, 1])
    tokens = torch.tensor([SOS] * 4)
    state, chosen = model.encode(src, lengths), None
    for step in range(3):  # after encoding and after steps: every part of the state follows
        chosen = state.select(index) if chosen is None else chosen
        log_probs, state = model.decode_step(tokens, state)
        chosen_log_probs, chosen = model.decode_step(tokens[index], chosen)
        assert torch.equal(chosen_log_probs, log_probs[index]), step
        if hasattr(state, "summary"):
            assert torch.equal(chosen.summary(), state.summary()[index]), step
        tokens = log_probs.argmax(-1)


@pytest.mark.parametrize("kind", TYPES)
def test_a_translation_does_not_depend_on_its_batch(kind):
    model = make(kind)
    rows = sentences(7, seed=6)
    src, lengths = padded(rows)
    together = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=lengths + 5)
    beams = beam_search(model, src, lengths, sos=SOS, eos=EOS, beam_size=3, max_length=lengths + 5)
    for i, row in enumerate(rows):
        src, lengths = padded([row])
        (alone,) = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=lengths + 5)
        assert alone[0].tokens == together[i][0].tokens
        assert alone[0].log_prob == pytest.approx(together[i][0].log_prob, abs=1e-5)
        beam_alone = beam_search(
            model, src, lengths, sos=SOS, eos=EOS, beam_size=3, max_length=lengths + 5
        )
        assert beam_alone[0][0].tokens == beams[i][0].tokens


@pytest.mark.parametrize("kind", TYPES)
def test_a_checkpoint_round_trip_keeps_the_model(kind, tmp_path):
    model = make(kind)
    config = Config(name="contract", model=model.config)
    checkpoint.save(tmp_path / "ckpt", model, config, (SRC_VOCAB, TGT_VOCAB), {"epoch": 1})
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.config.model == model.config
    rows = sentences(5, seed=8)
    assert greedy(loaded.model, rows) == greedy(model, rows)
    src, lengths = padded(rows)
    tgt, _ = padded(sentences(5, seed=9, vocab=TGT_VOCAB))
    with torch.no_grad():
        assert torch.equal(loaded.model(src, lengths, tgt), model(src, lengths, tgt))
    assert not torch.equal(build(kind, seed=8)(src, lengths, tgt), model(src, lengths, tgt))


DIGITS = Vocab([*SPECIALS, *(str(d) for d in range(10))])


def reversal(digits: str) -> Example:
    """Source: the digits; target: the digits reversed; both framed by <sos> ... <eos>."""
    return Example(
        [DIGITS.sos, *DIGITS.ids(list(digits)), DIGITS.eos],
        [DIGITS.sos, *DIGITS.ids(list(reversed(digits))), DIGITS.eos],
    )


def digit_strings(rng: random.Random, n: int, exclude: frozenset = frozenset()) -> list[str]:
    out = []
    while len(out) < n:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 8)))
        if digits not in exclude:
            out.append(digits)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", TYPES)
def test_a_tiny_model_learns_to_reverse_digit_strings(kind):
    """Model, batching, teacher-forced training and greedy search work together: held-out
    strings come back reversed, stopping included."""
    settings, lr = TOY[kind]
    model = build(kind, settings=settings, vocabs=(DIGITS, DIGITS))
    rng = random.Random(0)
    held_out = frozenset(digit_strings(rng, 200))
    steps = 600
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    # Decaying to 0 settles the last steps, so the result does not hinge on where they stop.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    for _ in range(steps):
        examples = [reversal(s) for s in digit_strings(rng, 64, exclude=held_out)]
        batch = collate(examples, list(range(len(examples))), DIGITS.pad, DIGITS.pad)
        logits = model(batch.src, batch.src_lengths, batch.tgt, teacher_forcing_ratio=1.0)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt[:, 1:].flatten(), ignore_index=DIGITS.pad
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

    model.eval()
    test = sorted(held_out)
    batch = collate([reversal(s) for s in test], list(range(len(test))), DIGITS.pad, DIGITS.pad)
    result = greedy_search(
        model,
        batch.src,
        batch.src_lengths,
        sos=DIGITS.sos,
        eos=DIGITS.eos,
        max_length=batch.src_lengths + 2,  # room to overshoot: stopping is part of the task
    )
    outputs = ["".join(DIGITS.tokens(h.tokens)) for (h,) in result]
    exact = sum(out == s[::-1] for out, s in zip(outputs, test, strict=True)) / len(test)
    assert exact >= 0.95, f"exact match {exact:.2%}; e.g. {test[:3]} -> {outputs[:3]}"
