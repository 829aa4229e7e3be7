"""Tiny models of every registered type, trained for a moment so that their choices depend on
the source, with their vocabularies and source sentences: shared by the model contract tests
and the attention tests."""

from __future__ import annotations

import functools
import random

import torch

from seq2seq.config import MODEL_CONFIGS
from seq2seq.data.batching import collate
from seq2seq.data.examples import Example
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.models import REGISTRY, build_model

# Small models, trained for a moment (`make`) so that their choices depend on the source.
TINY = {
    "lstm": {"embedding_size": 12, "hidden_size": 16, "num_layers": 2, "dropout": 0.2},
    "attention": {"embedding_size": 12, "hidden_size": 16, "num_layers": 2, "dropout": 0.2},
    "transformer": {"d_model": 16, "heads": 2, "encoder_layers": 2, "decoder_layers": 2,
                    "ff_size": 32, "dropout": 0.2, "attention_dropout": 0.1},
}  # fmt: skip
# Adam's learning rate for the moment of training in `make` (a Transformer collapses to
# stopping at once at the recurrent models' rate).
TRAINING_LR = {"lstm": 3e-2, "attention": 3e-2, "transformer": 1e-2}
TYPES = sorted(REGISTRY)
WORDS = [f"w{i}" for i in range(15)]
SRC_VOCAB = Vocab([*SPECIALS, *WORDS])
TGT_VOCAB = Vocab([*SPECIALS, *WORDS[:11]])
PAD, SOS, EOS = TGT_VOCAB.pad, TGT_VOCAB.sos, TGT_VOCAB.eos


def build(kind: str, seed: int = 0, settings: dict | None = None, vocabs=(SRC_VOCAB, TGT_VOCAB)):
    torch.manual_seed(seed)
    config = MODEL_CONFIGS[kind](**(TINY[kind] if settings is None else settings))
    return build_model(config, **model_sizes(*vocabs)).eval()


@functools.cache
def trained_state(kind: str, seed: int) -> dict:
    """A tiny model trained for a moment to translate word i as word i mod 11: its
    outputs depend on the source and stop at varied lengths, unlike a random model's."""
    model = build(kind, seed).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=TRAINING_LR[kind])
    for step in range(60):
        rows = sentences(32, seed=1000 + step)
        targets = [[SOS, *(4 + (w - 4) % 11 for w in row[1:-1]), EOS] for row in rows]
        batch = collate([Example(s, t) for s, t in zip(rows, targets, strict=True)], [], PAD, PAD)
        logits = model(batch.src, batch.src_lengths, batch.tgt)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch.tgt[:, 1:].flatten(), ignore_index=PAD
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.state_dict()


def make(kind: str, seed: int = 0):
    """The briefly trained tiny model of this type, in eval mode."""
    model = build(kind, seed)
    model.load_state_dict(trained_state(kind, seed))
    return model


def sentences(n: int, seed: int, vocab: Vocab = SRC_VOCAB) -> list[list[int]]:
    """n source sentences of 1..9 word ids, framed by <sos> ... <eos> as the data package does."""
    rng = random.Random(seed)
    return [
        [SOS, *(rng.randrange(4, len(vocab)) for _ in range(rng.randint(1, 9))), EOS]
        for _ in range(n)
    ]


def padded(rows: list[list[int]], extra: int = 0, fill: int = PAD):
    """(B, S + extra) source ids padded with `fill` (padding is never read, whatever it holds)
    and their (B,) lengths."""
    src = torch.full((len(rows), max(map(len, rows)) + extra), fill)
    for i, row in enumerate(rows):
        src[i, : len(row)] = torch.tensor(row)
    return src, torch.tensor([len(row) for row in rows])
