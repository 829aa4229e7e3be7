"""A tiny Seq2Seq learns to reverse digit strings in seconds: the model, the batching helpers,
teacher-forced training and greedy search work together."""

from __future__ import annotations

import random

import torch

from seq2seq.config import RecurrentConfig
from seq2seq.data.batching import collate
from seq2seq.data.dataset import Example
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.models import build_model
from seq2seq.search import greedy_search

DIGITS = [str(d) for d in range(10)]
VOCAB = Vocab([*SPECIALS, *DIGITS])


def example(digits: str) -> Example:
    """Source: the digits; target: the digits reversed; both framed by <sos> ... <eos>."""
    src = [VOCAB.sos, *VOCAB.encode(list(digits)), VOCAB.eos]
    tgt = [VOCAB.sos, *VOCAB.encode(list(reversed(digits))), VOCAB.eos]
    return Example(src, tgt)


def random_strings(rng: random.Random, n: int, exclude: set[str] = frozenset()) -> list[str]:
    out = []
    while len(out) < n:
        digits = "".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 8)))
        if digits not in exclude:
            out.append(digits)
    return out


def test_tiny_model_learns_to_reverse_digit_strings():
    torch.manual_seed(0)
    rng = random.Random(0)
    held_out = set(random_strings(rng, 200))
    config = RecurrentConfig(embedding_size=32, hidden_size=128, num_layers=1, dropout=0.0)
    model = build_model(config, **model_sizes(VOCAB, VOCAB))
    steps = 600
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Decaying to 0 settles the last steps, so the result does not hinge on where they stop.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=VOCAB.pad)

    model.train()
    for _ in range(steps):
        examples = [example(s) for s in random_strings(rng, 64, exclude=held_out)]
        batch = collate(examples, list(range(len(examples))), VOCAB.pad, VOCAB.pad)
        logits = model(batch.src, batch.src_lengths, batch.tgt, teacher_forcing_ratio=1.0)
        loss = criterion(logits.flatten(0, 1), batch.tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

    model.eval()
    test = sorted(held_out)
    batch = collate([example(s) for s in test], list(range(len(test))), VOCAB.pad, VOCAB.pad)
    result = greedy_search(
        model,
        batch.src,
        batch.src_lengths,
        sos=VOCAB.sos,
        eos=VOCAB.eos,
        max_length=batch.src_lengths + 2,  # room to overshoot: stopping is part of the task
    )
    outputs = ["".join(VOCAB.decode(tokens)) for tokens in result.tokens]
    exact = sum(out == s[::-1] for out, s in zip(outputs, test, strict=True)) / len(test)
    assert exact >= 0.95, f"exact match {exact:.2%}; e.g. {test[:3]} -> {outputs[:3]}"
