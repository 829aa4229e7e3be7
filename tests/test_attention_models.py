"""What the attention models add to the contract: attention weights that are a distribution
over the real source tokens, the Transformer's key/value cache equal to recomputing the
prefix, and ensembles that mix architectures."""

from __future__ import annotations

import pytest
import torch
from tiny_models import EOS, SOS, TINY, build, make, padded, sentences

from seq2seq.models.ensemble import Ensemble
from seq2seq.models.transformer import PrefixRecomputation
from seq2seq.search import beam_search, greedy_search

ATTENTIVE = ["attention", "transformer"]


@pytest.mark.parametrize("kind", ATTENTIVE)
def test_attention_weights_sum_to_one_and_are_zero_on_padding(kind):
    model = make(kind)
    rows = sentences(5, seed=11)
    src, lengths = padded(rows, extra=3)
    state = model.encode(src, lengths)
    tokens = torch.full((5,), SOS)
    for _ in range(3):
        log_probs, state = model.decode_step(tokens, state)
        weights = state.attention()  # (B, S)
        assert weights.shape == src.shape
        assert torch.allclose(weights.sum(-1), torch.ones(5), atol=1e-5)
        for row, length in enumerate(lengths.tolist()):
            assert torch.all(weights[row, length:] == 0)
            assert torch.all(weights[row, :length] > 0)
        tokens = log_probs.argmax(-1)
    assert not torch.allclose(weights[0, : lengths[0]], weights[1, : lengths[0]])


def test_transformer_attention_by_layer_and_head_and_their_mean():
    model = make("transformer")
    src, lengths = padded(sentences(3, seed=12))
    _, state = model.decode_step(torch.full((3,), SOS), model.encode(src, lengths))
    heads = [state.attention(layer=1, head=h) for h in range(2)]
    assert torch.allclose(state.attention(), torch.stack(heads).mean(0))
    assert torch.allclose(state.attention(layer=0, head=1).sum(-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(state.attention(layer=0), state.attention(layer=1))
    with pytest.raises(ValueError, match="layer 2 does not exist; the decoder has 2 layers"):
        state.attention(layer=2)
    with pytest.raises(ValueError, match="head 5 does not exist; each layer has 2 heads"):
        state.attention(head=5)


def test_an_rnn_attention_has_no_layers_or_heads():
    model = make("attention")
    src, lengths = padded(sentences(2, seed=13))
    state = model.encode(src, lengths)
    with pytest.raises(ValueError, match="no step has been decoded yet"):
        state.attention()
    _, state = model.decode_step(torch.full((2,), SOS), state)
    with pytest.raises(ValueError, match="one attention"):
        state.attention(layer=0)


VARIANTS = [
    {"style": "luong", "score": "general"},
    {"style": "luong", "score": "dot", "input_feeding": False},
    {"style": "bahdanau", "score": "additive", "cell": "gru"},
]


@pytest.mark.parametrize("style", VARIANTS)
def test_every_attention_variant_decodes_as_its_training_forward(style):

    model = build("attention", settings={**TINY["attention"], **style})
    src, lengths = padded(sentences(4, seed=14))
    tgt, _ = padded(sentences(4, seed=15))
    tgt = tgt.clamp(max=14)  # target ids within the target vocabulary
    with torch.no_grad():
        forward = torch.log_softmax(model(src, lengths, tgt), -1)
        state, steps = model.encode(src, lengths), []
        for t in range(tgt.size(1) - 1):
            log_probs, state = model.decode_step(tgt[:, t], state)
            steps.append(log_probs)
    assert torch.allclose(forward, torch.stack(steps, 1), atol=1e-5)


def test_cached_transformer_decoding_equals_recomputing_the_prefix():
    model = make("transformer")
    reference = PrefixRecomputation(model).eval()
    src, lengths = padded(sentences(6, seed=16))
    tokens = torch.full((6,), SOS)
    cached, recomputed = model.encode(src, lengths), reference.encode(src, lengths)
    for _ in range(6):
        mine, cached = model.decode_step(tokens, cached)
        theirs, recomputed = reference.decode_step(tokens, recomputed)
        assert torch.allclose(mine, theirs, atol=1e-5)
        tokens = mine.argmax(-1)
    limits = lengths + 5
    assert [
        h.tokens for (h,) in greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=limits)
    ] == [
        h.tokens
        for (h,) in greedy_search(reference, src, lengths, sos=SOS, eos=EOS, max_length=limits)
    ]
    beams = [
        beam_search(m, src, lengths, sos=SOS, eos=EOS, beam_size=4, max_length=limits, n_best=4)
        for m in (model, reference)
    ]
    assert [[h.tokens for h in hyps] for hyps in beams[0]] == [
        [h.tokens for h in hyps] for hyps in beams[1]
    ]


def test_an_ensemble_may_mix_architectures_that_share_vocabularies():
    members = [make("lstm"), make("attention"), make("transformer")]
    ensemble = Ensemble(members).eval()
    src, lengths = padded(sentences(4, seed=17))
    tgt, _ = padded(sentences(4, seed=18))
    tgt = tgt.clamp(max=14)
    tokens = torch.full((4,), SOS)
    log_probs, state = ensemble.decode_step(tokens, ensemble.encode(src, lengths))
    mean = torch.stack([m.decode_step(tokens, m.encode(src, lengths))[0] for m in members]).mean(0)
    assert torch.allclose(log_probs, torch.log_softmax(mean, -1), atol=1e-6)
    with torch.no_grad():
        forward = ensemble(src, lengths, tgt)
        state, steps = ensemble.encode(src, lengths), []
        for t in range(tgt.size(1) - 1):
            step, state = ensemble.decode_step(tgt[:, t], state)
            steps.append(step)
    assert torch.allclose(forward, torch.stack(steps, 1), atol=1e-5)
    found = beam_search(
        ensemble, src, lengths, sos=SOS, eos=EOS, beam_size=3, max_length=lengths + 4
    )
    assert len(found) == 4 and all(hyps for hyps in found)


def test_the_transformers_position_table_grows_to_what_a_sentence_needs():
    from seq2seq.models.transformer import sinusoids

    model = make("transformer")
    size = model.config.d_model
    assert torch.equal(model._positions(10), sinusoids(10, size))
    assert torch.equal(model._positions(300), sinusoids(300, size))  # beyond the first table
    assert model.position_table.size(0) >= 300
    assert "position_table" not in model.state_dict()
