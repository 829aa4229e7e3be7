"""The LSTM encoder-decoder of Sutskever, Vinyals and Le (2014), "Sequence to Sequence Learning
with Neural Networks", section 2: a multi-layer LSTM reads the source into its final hidden and
cell states, which initialise a multi-layer LSTM that generates the target. GRU is an option.

Shapes: B batch, S source length, T target length, E embedding, H hidden, L layers,
V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.config import ModelConfig


@dataclass
class RecurrentState:
    """What the decoder carries from step to step: hidden (L, B, H) and, for LSTMs, cell."""

    hidden: torch.Tensor
    cell: torch.Tensor | None

    def select(self, index: torch.Tensor) -> RecurrentState:
        """Keep (and repeat or reorder) batch entries, as beam search needs."""
        cell = None if self.cell is None else self.cell.index_select(1, index)
        return RecurrentState(self.hidden.index_select(1, index), cell)

    def as_rnn_state(self):
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    @classmethod
    def from_rnn_state(cls, state) -> RecurrentState:
        return cls(*state) if isinstance(state, tuple) else cls(state, None)


def draw_gold_inputs(
    steps: int, teacher_forcing_ratio: float, generator: torch.Generator | None
) -> list[bool]:
    """For each decoder input position, whether it reads the true token (else a prediction).
    A ratio of 0 draws nothing, so that evaluation never moves the random state."""
    if teacher_forcing_ratio <= 0.0:
        return [False] * steps
    return (torch.rand(steps, generator=generator) < teacher_forcing_ratio).tolist()


def _rnn(config: ModelConfig) -> nn.Module:
    rnn_class = nn.LSTM if config.cell == "lstm" else nn.GRU
    return rnn_class(
        config.embedding_size,
        config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        batch_first=True,
    )


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _rnn(config)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RecurrentState:
        """src: (B, S), src_lengths: (B,) on the CPU. Padding is never read (packed input)."""
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)  # final states in the batch's own order: (L, B, H)
        return RecurrentState.from_rnn_state(state)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = _rnn(config)
        self.output = nn.Linear(config.hidden_size, vocab_size)

    def forward(
        self, tokens: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Run over tokens (B, T') in one call; returns logits (B, T', V) and the new state."""
        embedded = self.dropout(self.embedding(tokens))  # (B, T', E)
        outputs, rnn_state = self.rnn(embedded, state.as_rnn_state())  # (B, T', H)
        return self.output(outputs), RecurrentState.from_rnn_state(rnn_state)


class Seq2Seq(nn.Module):
    """Encoder-decoder with the decoding interface `encode()` / `decode_step()`.

    Search code sees only that interface and the state's `select()`, so an attention model
    (whose state would also carry the encoder outputs and mask) or a Transformer (a cache) can
    implement it without changes to the search.
    """

    def __init__(
        self,
        config: ModelConfig,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        src_pad: int,
        tgt_pad: int,
    ):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, src_vocab_size, src_pad)
        self.decoder = Decoder(config, tgt_vocab_size, tgt_pad)
        for parameter in self.parameters():  # section 3.4: uniform in [-0.08, 0.08]
            nn.init.uniform_(parameter, -config.init_range, config.init_range)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RecurrentState:
        return self.encoder(src, src_lengths)

    def decode_step(
        self, tokens: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, RecurrentState]:
        """tokens (B,) -> log-probabilities of the next token (B, V) and the new state."""
        logits, state = self.decoder(tokens.unsqueeze(1), state)
        return torch.log_softmax(logits.squeeze(1).float(), dim=-1), state

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (B, T-1, V) for tgt[:, 1:], given src (B, S) and tgt (B, T).

        With probability `teacher_forcing_ratio` a step reads the true previous token, else the
        model's own prediction; the draw is per step for the whole batch, as in the tutorial.
        Runs of consecutive true inputs go through the LSTM and the output layer in one call,
        so a ratio of 1.0 (the paper's training) is a single call over the whole target, and
        only the steps whose successor reads a prediction need their argmax on the spot.
        """
        state = self.encode(src, src_lengths)
        inputs = tgt[:, :-1]  # (B, T-1)
        steps = inputs.size(1)
        if teacher_forcing_ratio >= 1.0:
            return self.decoder(inputs, state)[0]
        gold = draw_gold_inputs(steps, teacher_forcing_ratio, generator)
        starts = [t for t in range(1, steps) if not gold[t]]  # input 0 is always <sos>
        bounds = list(zip([0, *starts], [*starts, steps], strict=True))
        pieces = []
        prediction = None
        for start, end in bounds:
            segment = inputs[:, start:end]
            if start > 0:  # this segment starts by reading the previous step's prediction
                segment = torch.cat([prediction.unsqueeze(1), segment[:, 1:]], dim=1)
            logits, state = self.decoder(segment, state)  # (B, end - start, V)
            pieces.append(logits)
            prediction = logits[:, -1].argmax(-1)  # (B,)
        return torch.cat(pieces, dim=1)  # (B, T-1, V)
