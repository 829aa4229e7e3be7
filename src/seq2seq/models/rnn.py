"""The RNN layer that both recurrent architectures (models/recurrent.py, models/attention.py)
build their encoders and decoders from."""

from __future__ import annotations

from torch import nn

from seq2seq.config import AttentionConfig, RecurrentConfig


def rnn_layer(
    config: RecurrentConfig | AttentionConfig,
    input_size: int,
    hidden_size: int,
    *,
    bidirectional: bool = False,
) -> nn.LSTM | nn.GRU:
    """A batch-first stack of `config.num_layers` LSTM or GRU layers (`config.cell`), with
    `config.dropout` between layers (PyTorch warns about dropout on a single layer)."""
    rnn_class = nn.LSTM if config.cell == "lstm" else nn.GRU
    return rnn_class(
        input_size,
        hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        batch_first=True,
        bidirectional=bidirectional,
    )
