"""The recurrent encoder-decoder: padding never changes an encoding, forward() agrees with the
step-by-step decoding interface under every teacher-forcing ratio, and the paper's init."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.config import RecurrentConfig
from seq2seq.models import RecurrentState, Seq2Seq
from seq2seq.models.cpu_rnn import dropout, run_layers
from seq2seq.models.forcing import mixed_forcing

SRC_VOCAB, TGT_VOCAB, PAD = 23, 19, 1


def make_model(cell: str = "lstm", *, init_range: float = 0.3, seed: int = 0) -> Seq2Seq:
    """Two layers and dropout, so eval mode and the layer stacking both matter; a wide init so
    that argmax choices differ from step to step."""
    torch.manual_seed(seed)
    config = RecurrentConfig(
        cell=cell,
        embedding_size=8,
        hidden_size=16,
        num_layers=2,
        dropout=0.3,
        init_range=init_range,
    )
    return Seq2Seq(
        config, src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, src_pad=PAD, tgt_pad=PAD
    ).eval()


def random_ids(generator: torch.Generator, *shape: int, vocab: int) -> torch.Tensor:
    """Ids that are never <pad> (ids 2.. vocab-1)."""
    return torch.randint(2, vocab, shape, generator=generator)


def targets(batch_size: int = 3, length: int = 9, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tgt = random_ids(generator, batch_size, length, vocab=TGT_VOCAB)
    tgt[:, 0] = 2  # <sos>
    return tgt


def sources(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    src = random_ids(generator, 3, 7, vocab=SRC_VOCAB)
    lengths = torch.tensor([7, 4, 6])
    for row, length in enumerate(lengths.tolist()):
        src[row, length:] = PAD
    return src, lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_does_not_change_the_encoding(cell):
    model = make_model(cell)
    generator = torch.Generator().manual_seed(3)
    sentence = random_ids(generator, 1, 4, vocab=SRC_VOCAB)
    longer = random_ids(generator, 2, 9, vocab=SRC_VOCAB)
    # The short sentence sits in the middle of the batch, padded from 4 to 9 tokens.
    batch = torch.cat([longer[:1], torch.full((1, 9), PAD), longer[1:]])
    batch[1, :4] = sentence[0]
    lengths = torch.tensor([9, 4, 7])
    batch[2, 7:] = PAD

    alone = model.encode(sentence, torch.tensor([4]))
    padded = model.encode(batch, lengths)

    assert torch.allclose(padded.hidden[:, 1], alone.hidden[:, 0], atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(padded.cell[:, 1], alone.cell[:, 0], atol=1e-6)
    # Whatever stands in the padding is never read, not even a real token.
    batch[1, 4:] = random_ids(generator, 5, vocab=SRC_VOCAB)
    garbage = model.encode(batch, lengths)
    assert torch.allclose(garbage.hidden[:, 1], alone.hidden[:, 0], atol=1e-6)
    # ... while the sentence's own tokens are read: the check above can fail.
    batch[1, 3] = (batch[1, 3] + 1 - 2) % (SRC_VOCAB - 2) + 2
    changed = model.encode(batch, lengths)
    assert not torch.allclose(changed.hidden[:, 1], alone.hidden[:, 0], atol=1e-6)


def reference_encoding(model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor):
    """The encoding as PyTorch's packed path computes it (the path used on GPUs)."""
    embedded = model.encoder.embedding(src)
    packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    return RecurrentState.from_rnn_state(model.encoder.rnn(packed)[1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cpu_time_slices_encode_as_the_packed_path_with_equal_gradients(cell):
    model = make_model(cell)
    generator = torch.Generator().manual_seed(4)
    lengths = torch.tensor([3, 9, 1, 9, 5, 3, 7])  # repeats, ties and a one-token sentence
    src = random_ids(generator, len(lengths), 9, vocab=SRC_VOCAB)
    for row, length in enumerate(lengths.tolist()):
        src[row, length:] = PAD

    def outputs_and_gradients(encode):
        model.zero_grad()
        state = encode(model, src, lengths)
        parts = [state.hidden] + ([state.cell] if cell == "lstm" else [])
        sum((part * torch.arange(part.numel()).view_as(part)).sum() for part in parts).backward()
        grads = [p.grad.clone() for p in model.encoder.parameters()]
        return [part.detach() for part in parts], grads

    ours, our_grads = outputs_and_gradients(lambda m, s, n: m.encode(s, n))
    reference, reference_grads = outputs_and_gradients(reference_encoding)
    for mine, theirs in zip(ours + our_grads, reference + reference_grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_by_layer_run_equals_the_stacked_module(cell):
    model = make_model(cell)
    rnn = model.decoder.rnn
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 8, generator=generator)
    hidden = torch.randn(2, 3, 16, generator=generator)
    state = (hidden, torch.randn(2, 3, 16, generator=generator)) if cell == "lstm" else hidden
    # Training with dropout takes the layer-by-layer path; a mask that keeps everything and a
    # negligible rate make it comparable with the module's own call without dropout.
    keep_all = [torch.ones(3, 6, 16, dtype=torch.bool)]
    ours, our_state = run_layers(rnn, x, state, 1e-7, training=True, keep=keep_all)
    theirs, their_state = rnn(x, state)
    assert torch.allclose(ours, theirs, atol=1e-6)
    mine, reference = map(RecurrentState.from_rnn_state, (our_state, their_state))
    assert torch.allclose(mine.hidden, reference.hidden, atol=1e-6)
    if cell == "lstm":
        assert torch.allclose(mine.cell, reference.cell, atol=1e-6)


def test_dropout_zeroes_a_share_p_and_rescales_the_rest():
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    dropped = dropout(x, 0.3, training=True)
    zeros = (dropped == 0).float().mean().item()
    assert abs(zeros - 0.3) < 0.01
    assert torch.allclose(dropped[dropped != 0], torch.tensor(1 / 0.7))
    assert abs(dropped.mean().item() - 1.0) < 0.02  # the expectation is kept
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    bf16 = dropout(x.bfloat16(), 0.5, training=True)
    assert bf16.dtype == torch.bfloat16 and set(bf16.unique().tolist()) == {0.0, 2.0}


def test_parameters_start_uniform_in_init_range():
    model = make_model(init_range=0.05)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.abs().max() <= 0.05
    # Uniform over the whole range (not, say, PyTorch's default init or zeros).
    assert values.abs().max() > 0.049
    assert abs(values.mean().item()) < 0.002
    assert values.std().item() == pytest.approx(0.05 / 3**0.5, rel=0.02)
    # Biases and the <pad> embedding rows too: the paper initialises every parameter.
    assert model.decoder.output.bias.abs().max() > 0.01
    assert model.encoder.embedding.weight[PAD].abs().max() > 0.01


def decode_by_steps(model, src, lengths, tgt, gold_steps) -> torch.Tensor:
    """Log-probabilities (B, T-1, V) from decode_step: input t is tgt[:, t] where gold_steps[t],
    else the previous step's argmax."""
    state = model.encode(src, lengths)
    token, outputs = tgt[:, 0], []
    for t in range(tgt.size(1) - 1):
        if t > 0:
            token = tgt[:, t] if gold_steps[t] else outputs[-1].argmax(-1)
        log_probs, state = model.decode_step(token, state)
        outputs.append(log_probs)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_teacher_forced_forward_equals_decode_steps_on_gold_inputs(cell):
    model = make_model(cell)
    src, lengths = sources()
    tgt = targets()
    tgt[1, 6:] = PAD  # a shorter target; padding is fed like any token, in both paths

    with torch.no_grad():
        logits = model(src, lengths, tgt, teacher_forcing_ratio=1.0)
        expected = decode_by_steps(model, src, lengths, tgt, [True] * tgt.size(1))

    assert logits.shape == (3, tgt.size(1) - 1, TGT_VOCAB)
    assert torch.allclose(torch.log_softmax(logits, -1), expected, atol=1e-5)


def test_free_running_forward_feeds_back_the_argmax():
    model = make_model()
    src, lengths = sources()
    tgt = targets()

    with torch.no_grad():
        logits = model(src, lengths, tgt, teacher_forcing_ratio=0.0)
        expected = decode_by_steps(model, src, lengths, tgt, [False] * tgt.size(1))
        forced = model(src, lengths, tgt, teacher_forcing_ratio=1.0)

    assert torch.allclose(torch.log_softmax(logits, -1), expected, atol=1e-5)
    # Only <sos> is read from the target: another reference changes nothing...
    with torch.no_grad():
        other = model(src, lengths, targets(seed=7), teacher_forcing_ratio=0.0)
    assert torch.allclose(other, logits, atol=1e-6)
    # ... and the predictions differ from the gold inputs, so the two modes really differ.
    assert not torch.allclose(forced, logits, atol=1e-3)


def test_mixed_teacher_forcing_follows_the_generator_draws():
    model = make_model()
    src, lengths = sources()
    tgt = targets(length=12)
    steps = tgt.size(1) - 1

    draws = torch.rand(steps, generator=torch.Generator().manual_seed(5)) < 0.5
    assert draws[1:].any() and not draws[1:].all()  # the seed mixes gold and predicted inputs

    with torch.no_grad():
        first = model(src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
        second = model(src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
        expected = decode_by_steps(model, src, lengths, tgt, draws.tolist())
        forced = model(src, lengths, tgt, 1.0)
        free = model(src, lengths, tgt, 0.0)

    assert first.shape == (3, steps, TGT_VOCAB)
    assert torch.equal(first, second)
    assert torch.allclose(torch.log_softmax(first, -1), expected, atol=1e-5)
    assert not torch.allclose(first, forced, atol=1e-3)
    assert not torch.allclose(first, free, atol=1e-3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_forward_with_predicted_inputs_equals_the_step_by_step_decoder(cell, monkeypatch):
    """With gradients on CPU, forward() finds the predicted inputs without gradients and then
    runs the decoder once; logits and gradients equal those of one call per step under the
    same dropout masks."""
    model = make_model(cell).train()
    src, lengths = sources()
    tgt = targets(length=12)
    gold = torch.rand(11, generator=torch.Generator().manual_seed(5)) < 0.5
    assert gold[1:].any() and not gold[1:].all()
    torch.manual_seed(6)
    noise = model.decoder.noise(tgt[:, :-1])
    monkeypatch.setattr(model.decoder, "noise", lambda tokens: noise)

    def logits_and_gradients(compute):
        model.zero_grad()
        torch.manual_seed(7)  # the same encoder dropout in both
        logits = compute()
        (logits * torch.arange(logits.numel()).view_as(logits) / logits.numel()).sum().backward()
        return [logits.detach()] + [p.grad.clone() for p in model.parameters()]

    ours = logits_and_gradients(
        lambda: model(src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
    )

    def step_by_step():
        """One decoder call per step, under the same masks: the loop the fast path replaces."""
        state, outputs = model.encode(src, lengths), []
        for t in range(tgt.size(1) - 1):
            token = tgt[:, t] if t == 0 or gold[t] else outputs[-1].argmax(-1)
            masks = [keep[:, t : t + 1] for keep in noise]
            logits, state = model.decoder(token.unsqueeze(1), state, masks)
            outputs.append(logits.squeeze(1))
        return torch.stack(outputs, dim=1)

    reference = logits_and_gradients(step_by_step)
    for mine, theirs in zip(ours, reference, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)
    # The masks matter: other ones give other logits.
    monkeypatch.setattr(model.decoder, "noise", lambda tokens: [~keep for keep in noise])
    assert not torch.allclose(
        logits_and_gradients(
            lambda: model(src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
        )[0],
        ours[0],
    )


def test_forward_uses_dropout_only_in_training_mode():
    model = make_model()
    src, lengths = sources()
    tgt = targets()
    with torch.no_grad():
        evaluated = [model(src, lengths, tgt) for _ in range(2)]
        model.train()
        trained = [model(src, lengths, tgt) for _ in range(2)]
    assert torch.equal(evaluated[0], evaluated[1])
    assert not torch.allclose(trained[0], trained[1])


def test_gru_state_has_no_cell():
    model = make_model("gru")
    src, lengths = sources()
    state = model.encode(src, lengths)
    assert state.cell is None
    assert state.hidden.shape == (2, 3, 16)  # (L, B, H)
    log_probs, state = model.decode_step(torch.full((3,), 2), state)
    assert state.cell is None
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert isinstance(state.as_rnn_state(), torch.Tensor)


def test_lstm_state_carries_hidden_and_cell():
    model = make_model("lstm")
    src, lengths = sources()
    state = model.encode(src, lengths)
    assert state.hidden.shape == state.cell.shape == (2, 3, 16)
    assert not torch.allclose(state.hidden, state.cell)
    hidden, cell = state.as_rnn_state()
    assert hidden is state.hidden and cell is state.cell


def test_state_select_reorders_and_repeats_batch_entries():
    hidden = torch.arange(2 * 3 * 4, dtype=torch.float).view(2, 3, 4)  # (L, B, H)
    cell = -hidden
    index = torch.tensor([2, 0, 0, 1])

    selected = RecurrentState(hidden, cell).select(index)

    assert selected.hidden.shape == (2, 4, 4)
    for position, source in enumerate(index.tolist()):
        assert torch.equal(selected.hidden[:, position], hidden[:, source])
        assert torch.equal(selected.cell[:, position], cell[:, source])
    assert RecurrentState(hidden, None).select(index).cell is None


def test_selected_state_decodes_like_the_original_entries():
    model = make_model()
    src, lengths = sources()
    state = model.encode(src, lengths)
    tokens = torch.tensor([5, 6, 7])
    log_probs, _ = model.decode_step(tokens, state)

    index = torch.tensor([1, 1, 0])
    selected_log_probs, _ = model.decode_step(tokens[index], state.select(index))

    assert torch.allclose(selected_log_probs, log_probs[index], atol=1e-6)


def plain_twin(model: Seq2Seq) -> Seq2Seq:
    """The same model with `cpu_fast_path: false`: nn.LSTM / nn.GRU calls only."""
    config = dataclasses.replace(model.config, cpu_fast_path=False)
    twin = Seq2Seq(
        config, src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, src_pad=PAD, tgt_pad=PAD
    )
    twin.load_state_dict(model.state_dict())
    return twin.train(model.training)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.0])
def test_the_plain_path_computes_what_the_fast_path_does(cell, ratio):
    """Without dropout the two paths are the same function: equal states, logits, gradients."""
    fast = make_model(cell)
    plain = plain_twin(fast)
    for model in (fast, plain):
        for part in (model.encoder, model.decoder):
            part.p = part.rnn.dropout = 0.0
    src, lengths = sources()
    tgt = targets(length=12)

    def run(model):
        model.train()  # gradients and the training code paths, without dropout
        model.zero_grad()
        state = model.encode(src, lengths)
        logits = model(src, lengths, tgt, ratio, torch.Generator().manual_seed(5))
        torch.log_softmax(logits, -1)[..., 3].sum().backward()
        return [state.hidden.detach(), torch.log_softmax(logits.detach(), -1)] + [
            p.grad.clone() for p in model.parameters()
        ]

    for mine, theirs in zip(run(fast), run(plain), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_the_fast_mixed_forcing_path_equals_the_shared_loop():
    """At a ratio below 1 in eval mode with gradients on, the fast path runs; the shared loop
    of search.py is what it must equal, and what the plain path runs."""
    model = make_model()
    src, lengths = sources()
    tgt = targets(length=12)
    fast = model(src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
    shared = mixed_forcing(model, src, lengths, tgt, 0.5, torch.Generator().manual_seed(5))
    assert torch.allclose(torch.log_softmax(fast, -1), shared, atol=1e-5)
    other_draws = mixed_forcing(model, src, lengths, tgt, 0.5, torch.Generator().manual_seed(9))
    assert not torch.allclose(other_draws, shared, atol=1e-3)
