"""The LSTM encoder-decoder of Sutskever, Vinyals and Le (2014), "Sequence to Sequence Learning
with Neural Networks", section 2: a multi-layer LSTM reads the source into its final hidden and
cell states, which initialise a multi-layer LSTM that generates the target. GRU is an option.

On CPU the speed code of models/cpu_rnn.py runs the same computation faster, unless
`model.cpu_fast_path` is false.

Shapes: B batch, S source length, T target length, E embedding, H hidden, L layers,
V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from seq2seq.config import RecurrentConfig
from seq2seq.models import cpu_rnn
from seq2seq.models.forcing import draw_gold_inputs, mixed_forcing
from seq2seq.models.packing import pack
from seq2seq.models.rnn import rnn_layer


@dataclass
class RecurrentState:
    """What the decoder carries from step to step: hidden (L, B, H) and, for LSTMs, cell."""

    hidden: torch.Tensor
    cell: torch.Tensor | None

    def select(self, index: torch.Tensor) -> RecurrentState:
        """Keep (and repeat or reorder) batch entries, as beam search needs."""
        cell = None if self.cell is None else self.cell.index_select(1, index)
        return RecurrentState(self.hidden.index_select(1, index), cell)

    def summary(self) -> torch.Tensor:
        """One vector per sentence (B, H): the top layer's hidden state, as the paper's Figure 2
        projects after reading the source."""
        return self.hidden[-1]

    def as_rnn_state(self):
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    @classmethod
    def from_rnn_state(cls, state) -> RecurrentState:
        return cls(*state) if isinstance(state, tuple) else cls(state, None)


class Encoder(nn.Module):
    def __init__(self, config: RecurrentConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.p = config.dropout
        self.fast = config.cpu_fast_path
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.rnn = rnn_layer(config, config.embedding_size, config.hidden_size)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RecurrentState:
        """src: (B, S), src_lengths: (B,) on the CPU. Padding is never read."""
        embedded = self.embedding(src)  # (B, S, E)
        if self.fast and embedded.is_cpu:
            embedded = cpu_rnn.dropout(embedded, self.p, self.training)
            state = cpu_rnn.final_states_by_length(
                self.rnn, embedded, src_lengths, self.p, self.training
            )
            return RecurrentState.from_rnn_state(state)
        embedded = F.dropout(embedded, self.p, self.training)
        packed = pack(embedded, src_lengths)
        return RecurrentState.from_rnn_state(self.rnn(packed)[1])  # (L, B, H), batch order


class Decoder(nn.Module):
    def __init__(self, config: RecurrentConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.p = config.dropout
        self.fast = config.cpu_fast_path
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.rnn = rnn_layer(config, config.embedding_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, vocab_size)

    def forward(
        self, tokens: torch.Tensor, state: RecurrentState, noise: list | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Run over tokens (B, T') in one call; returns logits (B, T', V) and the new state."""
        outputs, state = self.run(tokens, state, noise)
        return self.output(outputs), state

    def run(
        self, tokens: torch.Tensor, state: RecurrentState, noise: list | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """The top layer's outputs (B, T', H) and the new state, before the output layer.
        `noise`, from `noise()`, fixes the dropout masks (fast path only)."""
        embedded = self.embedding(tokens)  # (B, T', E)
        if self.fast and embedded.is_cpu:
            embedding_keep, layer_keep = (noise[0], noise[1:]) if noise else (None, None)
            embedded = cpu_rnn.dropout(embedded, self.p, self.training, embedding_keep)
            outputs, rnn_state = cpu_rnn.run_layers(
                self.rnn, embedded, state.as_rnn_state(), self.p, self.training, layer_keep
            )  # (B, T', H)
        else:
            embedded = F.dropout(embedded, self.p, self.training)
            outputs, rnn_state = self.rnn(embedded, state.as_rnn_state())  # (B, T', H)
        return outputs, RecurrentState.from_rnn_state(rnn_state)

    def noise(self, tokens: torch.Tensor) -> list[torch.Tensor] | None:
        """Dropout masks for reading tokens (B, T'), so that a pass over the same positions can
        be repeated exactly. None in eval mode or without dropout."""
        if not self.training or self.p == 0.0:
            return None
        return cpu_rnn.dropout_masks(self.rnn, self.embedding.embedding_dim, tokens, self.p)


def _slice(noise: list | None, start: int, end: int) -> list | None:
    return noise and [keep[:, start:end] for keep in noise]


class Seq2Seq(nn.Module):
    """The paper's encoder-decoder behind the model protocol (models/protocol.py)."""

    def __init__(
        self,
        config: RecurrentConfig,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        src_pad: int,
        tgt_pad: int,
        joint_vocab: bool = False,  # the paper's model keeps separate embeddings regardless
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

        A ratio of 1.0 (the paper's training) is a single decoder call over the whole target.
        Below it, the shared step-by-step loop (`forcing.mixed_forcing`) decides each step,
        except when training on the CPU fast path: there a pass without gradients finds the
        inputs the loop would read, and one decoder call over them, with the same dropout
        masks, computes the logits (see `_read_predictions`; tests check it equals the loop).
        """
        fast = self.config.cpu_fast_path and src.is_cpu and torch.is_grad_enabled()
        if teacher_forcing_ratio < 1.0 and not fast:
            return mixed_forcing(self, src, src_lengths, tgt, teacher_forcing_ratio, generator)
        state = self.encode(src, src_lengths)
        inputs = tgt[:, :-1]  # (B, T-1)
        if teacher_forcing_ratio >= 1.0:
            return self.decoder(inputs, state)[0]
        gold = draw_gold_inputs(inputs.size(1), teacher_forcing_ratio, generator)
        noise = self.decoder.noise(inputs)
        with torch.no_grad():
            inputs = self._read_predictions(inputs, gold, state, noise)
        return self.decoder(inputs, state, noise)[0]

    def _read_predictions(self, inputs, gold, state, noise) -> torch.Tensor:
        """The inputs (B, T-1) the decoder reads: the true token, or where `gold` says not, the
        argmax of the step before, found run by run (a run: a predicted input and the true
        inputs after it) with the output layer applied only to the last step of each run.

        With these inputs and the same dropout masks, a single decoder call over the whole
        target computes exactly the logits of the step-by-step loop. On CPU that call's
        forward and backward cost far less than one oneDNN call per run, which pays for this
        pass without gradients (measured: docs/speed.md).
        """
        inputs = inputs.clone()
        for start, end in _segments(gold)[:-1]:  # the last run feeds no prediction
            outputs, state = self.decoder.run(
                inputs[:, start:end], state, _slice(noise, start, end)
            )
            inputs[:, end] = self.decoder.output(outputs[:, -1]).argmax(-1)
        return inputs


def _segments(gold: list[bool]) -> list[tuple[int, int]]:
    """(start, end) of the runs of decoder inputs that each begin at a predicted input (or at
    input 0, always <sos>) and go on through the true inputs that follow."""
    starts = [t for t in range(1, len(gold)) if not gold[t]]
    return list(zip([0, *starts], [*starts, len(gold)], strict=True))
