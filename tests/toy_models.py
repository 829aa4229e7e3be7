"""Small random models for the search and ensemble tests, shared so that they agree."""

from __future__ import annotations

import torch

from seq2seq.config import ModelConfig
from seq2seq.models import Seq2Seq

PAD, SOS, EOS = 1, 2, 3
SRC_VOCAB, TGT_VOCAB = 17, 13


def random_model(seed: int, eos_bias: float = 1.0, unlikely: float = -30.0) -> Seq2Seq:
    """A random model whose output depends on the source (wide init, sharpened output layer),
    so that different seeds translate differently. `eos_bias` sets how soon it stops (1.0:
    some sentences at once, some after a few tokens, some never); <sos> and <pad> get the bias
    `unlikely`, so they are never likely, as in a trained model."""
    torch.manual_seed(seed)
    config = ModelConfig(embedding_size=8, hidden_size=16, num_layers=2, dropout=0.0, init_range=1)
    model = Seq2Seq(config, SRC_VOCAB, TGT_VOCAB, src_pad=PAD, tgt_pad=PAD).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(3.0)
        model.decoder.output.bias.zero_()
        model.decoder.output.bias[EOS] = eos_bias
        model.decoder.output.bias[[PAD, SOS]] = unlikely
    return model
