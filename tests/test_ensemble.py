"""Ensembles: one member is that model; two average their members' log-probabilities at every
step; greedy and beam search run on them unchanged; load_ensemble only joins checkpoints that
share vocabularies and text preparation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from toy_models import EOS, PAD, SOS, SRC_VOCAB, TGT_VOCAB, random_model

from seq2seq import checkpoint, loader
from seq2seq.config import Config, RecurrentConfig
from seq2seq.data.examples import Example
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.decode import score_examples
from seq2seq.errors import CheckpointError
from seq2seq.models import Seq2Seq, build_model
from seq2seq.models.ensemble import Ensemble
from seq2seq.search import beam_search, greedy_search


def batch(n: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n sources of 1 to 8 tokens, padded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=generator)
    src = torch.full((n, int(lengths.max())), PAD)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, SRC_VOCAB, (length,), generator=generator)
    return src, lengths


def limits_for(lengths: torch.Tensor) -> torch.Tensor:
    return lengths + 2


def search_both(model, src, lengths):
    greedy = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=limits_for(lengths))
    nbest = beam_search(
        model,
        src,
        lengths,
        sos=SOS,
        eos=EOS,
        beam_size=3,
        n_best=3,
        alpha=0.5,
        max_length=limits_for(lengths),
    )
    return greedy, nbest


def test_an_ensemble_of_one_is_that_model():
    model = random_model(0)
    src, lengths = batch()
    greedy, nbest = search_both(model, src, lengths)
    ensemble_greedy, ensemble_nbest = search_both(Ensemble([model]).eval(), src, lengths)
    assert ensemble_greedy == greedy
    assert ensemble_nbest == nbest
    assert len({tuple(h.tokens) for (h,) in greedy}) > 3  # the sentences' outputs differ


def test_an_ensemble_of_two_copies_is_that_model():
    model, copy = random_model(0), random_model(0)
    src, lengths = batch()
    greedy, nbest = search_both(model, src, lengths)
    ensemble_greedy, ensemble_nbest = search_both(Ensemble([model, copy]).eval(), src, lengths)
    for found, expected in ((ensemble_greedy, greedy), (ensemble_nbest, nbest)):
        assert [[(h.tokens, h.ended) for h in hs] for hs in found] == [
            [(h.tokens, h.ended) for h in hs] for hs in expected
        ]
        log_probs = [h.log_prob for hs in expected for h in hs]
        assert [h.log_prob for hs in found for h in hs] == pytest.approx(log_probs, abs=1e-6)


def test_decode_step_averages_the_members_log_probs():
    first, second = random_model(1), random_model(2)
    ensemble = Ensemble([first, second]).eval()
    src, lengths = batch(5)
    state = ensemble.encode(src, lengths)
    states = [first.encode(src, lengths), second.encode(src, lengths)]
    tokens = torch.full((5,), SOS)
    inputs = torch.randint(4, TGT_VOCAB, (4, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for step in range(5):
            log_probs, state = ensemble.decode_step(tokens, state)
            members = [
                m.decode_step(tokens, s) for m, s in zip((first, second), states, strict=True)
            ]
            states = [s for _, s in members]
            # The mean of the members' log-probs, renormalised over the vocabulary.
            expected = torch.log_softmax((members[0][0] + members[1][0]) / 2, dim=-1)  # (B, V)
            assert torch.allclose(log_probs, expected, atol=1e-6)
            assert not torch.allclose(members[0][0], members[1][0], atol=0.1)  # they differ
            if step < 4:
                tokens = inputs[step]
    # select() keeps, repeats or reorders the rows of every member's state alike.
    index = torch.tensor([4, 0, 0, 2])
    chosen = state.select(index)
    for member, alone in zip(chosen.members, states, strict=True):
        assert torch.equal(member.hidden, alone.hidden[:, index])
        assert torch.equal(member.cell, alone.cell[:, index])


def path_log_prob(model, src: torch.Tensor, length: int, tokens: list[int], end: bool) -> float:
    """The sum of the model's step log-probabilities along tokens (and <eos> if it ended)."""
    state = model.encode(src.unsqueeze(0)[:, :length], torch.tensor([length]))
    total, previous = 0.0, SOS
    with torch.no_grad():
        for token in [*tokens, *([EOS] if end else [])]:
            log_probs, state = model.decode_step(torch.tensor([previous]), state)
            total += log_probs[0, token].item()
            previous = token
    return total


def test_greedy_and_beam_search_score_the_ensembles_averaged_log_probs():
    ensemble = Ensemble([random_model(1), random_model(2, eos_bias=-1.0)]).eval()
    src, lengths = batch(8, seed=4)
    limits = limits_for(lengths)
    greedy, nbest = search_both(ensemble, src, lengths)
    one = beam_search(ensemble, src, lengths, sos=SOS, eos=EOS, beam_size=1, max_length=limits)
    assert [[(h.tokens, h.ended) for h in hs] for hs in one] == [
        [(h.tokens, h.ended) for h in hs] for hs in greedy
    ]
    assert [h.log_prob for (h,) in one] == pytest.approx([h.log_prob for (h,) in greedy], abs=1e-6)

    endings = set()
    for i, hypotheses in enumerate(nbest):
        length, limit = int(lengths[i]), int(limits[i])
        assert len(hypotheses) == 3
        for h in hypotheses:
            endings.add(h.ended)
            expected = path_log_prob(ensemble, src[i], length, h.tokens, h.ended)
            assert h.log_prob == pytest.approx(expected, abs=1e-4)
            assert EOS not in h.tokens
            assert len(h.tokens) < limit if h.ended else len(h.tokens) == limit
    assert endings == {True, False}


def test_ensemble_forward_gives_the_renormalised_average_of_log_probs():
    first, second = random_model(1), random_model(2)
    src, lengths = batch(4)
    tgt = torch.randint(4, TGT_VOCAB, (4, 6), generator=torch.Generator().manual_seed(5))
    tgt[:, 0] = SOS
    with torch.no_grad():
        averaged = Ensemble([first, second]).eval()(src, lengths, tgt)
        members = [torch.log_softmax(m(src, lengths, tgt), dim=-1) for m in (first, second)]
    expected = torch.log_softmax((members[0] + members[1]) / 2, dim=-1)
    assert torch.allclose(averaged, expected, atol=1e-6)
    assert torch.allclose(averaged.exp().sum(-1), torch.ones(4, 5), atol=1e-5)


def test_score_examples_of_an_ensemble_equals_the_searchs_log_prob():
    ensemble = Ensemble([random_model(1), random_model(2)]).eval()
    src, lengths = batch(6, seed=6)
    limits = lengths + 30  # long enough that every hypothesis ends with <eos>
    nbest = beam_search(
        ensemble, src, lengths, sos=SOS, eos=EOS, beam_size=2, n_best=2, max_length=limits
    )
    examples, found = [], []
    for i, hypotheses in enumerate(nbest):
        for h in hypotheses:
            assert h.ended and len(h.tokens) < int(limits[i])
            examples.append(Example(src[i, : int(lengths[i])].tolist(), [SOS, *h.tokens, EOS]))
            found.append(h.log_prob)
    scores = score_examples(ensemble, examples, pad=PAD, device=torch.device("cpu"))
    assert scores == pytest.approx(found, abs=1e-4)


# Checkpoints: load_ensemble joins only members that read and write text alike.

SRC = Vocab([*SPECIALS, "ein", "mann", "hund", "straße"])
TGT = Vocab([*SPECIALS, "a", "man", "dog", "street", "over"])
CONFIG = Config(
    name="member",
    model=RecurrentConfig(embedding_size=8, hidden_size=16, num_layers=1, dropout=0.0),
)


def save_member(path: Path, seed: int, config: Config = CONFIG, vocabs=(SRC, TGT)) -> Path:
    torch.manual_seed(seed)
    model = build_model(config.model, **model_sizes(*vocabs))
    checkpoint.save(path, model, config, vocabs, {"epoch": 1, "step": 1})
    return path


def test_load_ensemble_of_one_is_the_checkpoint(tmp_path):
    path = save_member(tmp_path / "a", 0)
    loaded = loader.load_ensemble([path])
    assert isinstance(loaded.model, Seq2Seq)
    assert loaded.path == path


def test_load_ensemble_averages_the_checkpoints(tmp_path):
    paths = [save_member(tmp_path / "a", 0), save_member(tmp_path / "b", 1)]
    loaded = loader.load_ensemble(paths)
    members = [checkpoint.load(path).model.eval() for path in paths]
    assert isinstance(loaded.model, Ensemble)
    assert loaded.meta == {"members": [str(p) for p in paths]}
    assert (loaded.src_vocab, loaded.tgt_vocab, loaded.config) == (SRC, TGT, CONFIG)
    src, lengths = torch.tensor([[4, 5, 6], [7, 4, PAD]]), torch.tensor([3, 2])
    with torch.no_grad():
        state = loaded.model.eval().encode(src, lengths)
        log_probs, _ = loaded.model.decode_step(torch.tensor([SOS, SOS]), state)
        expected = [
            m.decode_step(torch.tensor([SOS, SOS]), m.encode(src, lengths))[0] for m in members
        ]
    mean = torch.log_softmax((expected[0] + expected[1]) / 2, dim=-1)
    assert torch.allclose(log_probs, mean, atol=1e-6)


@pytest.mark.parametrize(
    "vocabs",
    [
        (SRC, Vocab([*SPECIALS, "a", "man", "dog", "street", "under"])),
        (Vocab([*SPECIALS, "ein", "mann", "hund", "strasse"]), TGT),
        (SRC, Vocab([*SPECIALS, "a", "man", "dog", "street"])),
    ],
    ids=["target", "source", "size"],
)
def test_load_ensemble_refuses_different_vocabularies(tmp_path, vocabs):
    first = save_member(tmp_path / "a", 0)
    second = save_member(tmp_path / "b", 1, vocabs=vocabs)
    with pytest.raises(CheckpointError, match="different vocabularies") as error:
        loader.load_ensemble([first, second])
    assert str(first) in str(error.value) and str(second) in str(error.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("reverse_source", False),
        ("lowercase", False),
        ("src_lang", "fr"),
        ("joint_vocab", True),
        ("max_length", 50),
    ],
)
def test_load_ensemble_refuses_different_text_preparation(tmp_path, key, value):
    other = dataclasses.replace(CONFIG, data=dataclasses.replace(CONFIG.data, **{key: value}))
    first = save_member(tmp_path / "a", 0)
    second = save_member(tmp_path / "b", 1, config=other)
    with pytest.raises(CheckpointError) as error:
        loader.load_ensemble([first, second])
    message = str(error.value)
    assert f"{second} has data.{key}={value!r} but {first} has" in message
    assert f"{getattr(CONFIG.data, key)!r}" in message
