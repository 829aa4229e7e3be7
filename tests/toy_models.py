"""Small random models for the search and ensemble tests, shared so that they agree."""

from __future__ import annotations

import torch

from seq2seq.config import RecurrentConfig
from seq2seq.models import Seq2Seq

PAD, SOS, EOS = 1, 2, 3
SRC_VOCAB, TGT_VOCAB = 17, 13


def random_model(seed: int, eos_bias: float = 1.0, unlikely: float = -30.0) -> Seq2Seq:
    """A random model whose output depends on the source (wide init, sharpened output layer),
    so that different seeds translate differently. `eos_bias` sets how soon it stops (1.0:
    some sentences at once, some after a few tokens, some never); <sos> and <pad> get the bias
    `unlikely`, so they are never likely, as in a trained model."""
    torch.manual_seed(seed)
    config = RecurrentConfig(
        embedding_size=8, hidden_size=16, num_layers=2, dropout=0.0, init_range=1
    )
    model = Seq2Seq(
        config, src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, src_pad=PAD, tgt_pad=PAD
    ).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(3.0)
        model.decoder.output.bias.zero_()
        model.decoder.output.bias[EOS] = eos_bias
        model.decoder.output.bias[[PAD, SOS]] = unlikely
    return model


def sentences(n: int, seed: int, shortest: int = 1, longest: int = 9) -> list[list[int]]:
    """n random source sentences of shortest..longest tokens (no specials)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (n,), generator=generator).tolist()
    return [
        torch.randint(4, SRC_VOCAB, (length,), generator=generator).tolist() for length in lengths
    ]


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) padded source ids and their (B,) lengths."""
    src = torch.full((len(rows), max(map(len, rows))), PAD)
    for i, row in enumerate(rows):
        src[i, : len(row)] = torch.tensor(row)
    return src, torch.tensor([len(row) for row in rows])
