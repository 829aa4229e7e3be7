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
from torch.nn import functional as F
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


def dropout(
    x: torch.Tensor, p: float, training: bool, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Inverted dropout, with a given mask of kept entries (`keep`, boolean) or a fresh one.

    On CPU a uniform draw and a comparison are about three times faster than the Bernoulli
    sampling of `F.dropout` (measured: 1.6 ms against 5.1 ms for a 128 x 15 x 256 tensor);
    other devices have a fused kernel.
    """
    if not training or p == 0.0:
        return x
    if keep is None:
        if not x.is_cpu:
            return F.dropout(x, p, True)
        keep = torch.rand(x.shape, dtype=x.dtype) >= p
    return x * (keep * (1.0 / (1.0 - p))).to(x.dtype)


_RNN_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def run_layers(
    rnn: nn.LSTM | nn.GRU,
    x: torch.Tensor,
    state,
    p: float,
    training: bool,
    keep: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple | torch.Tensor]:
    """The stacked RNN `rnn` over x (B, T, in) from state, one layer at a time with our own
    dropout between layers (fresh, or the masks `keep` for layers 2..L); same parameters and
    results as `rnn(x, state)` without dropout.

    The module's own multi-layer call is used wherever no dropout mask of ours is needed:
    without dropout (evaluation, decoding: one call per step costs less than one per layer)
    and on GPUs (cuDNN, fused dropout). Training on CPU, each layer is one oneDNN call.
    """
    if keep is None and not (x.is_cpu and training and p > 0.0 and rnn.num_layers > 1):
        return rnn(x, state)
    lstm = isinstance(rnn, nn.LSTM)
    hidden, cell = state if lstm else (state, None)
    outputs, hiddens, cells = x, [], []
    for layer in range(rnn.num_layers):
        if layer > 0:
            outputs = dropout(outputs, p, training, keep[layer - 1] if keep else None)
        params = [getattr(rnn, f"{name}_l{layer}") for name in _RNN_PARAMETERS]
        if lstm:
            layer_state = (hidden[layer : layer + 1], cell[layer : layer + 1])
            outputs, h, c = torch.lstm(
                outputs, layer_state, params, True, 1, 0.0, training, False, True
            )
            cells.append(c)
        else:
            outputs, h = torch.gru(
                outputs, hidden[layer : layer + 1], params, True, 1, 0.0, training, False, True
            )
        hiddens.append(h)
    final = torch.cat(hiddens)
    return outputs, ((final, torch.cat(cells)) if lstm else final)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.p = config.dropout
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.rnn = _rnn(config)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> RecurrentState:
        """src: (B, S), src_lengths: (B,) on the CPU. Padding is never read."""
        embedded = dropout(self.embedding(src), self.p, self.training)  # (B, S, E)
        if not embedded.is_cpu:  # cuDNN reads packed sequences natively
            packed = pack_padded_sequence(
                embedded, src_lengths, batch_first=True, enforce_sorted=False
            )
            return RecurrentState.from_rnn_state(self.rnn(packed)[1])  # (L, B, H), batch order
        return self._by_length(embedded, src_lengths)

    def _by_length(self, embedded: torch.Tensor, src_lengths: torch.Tensor) -> RecurrentState:
        """The final states of every sentence, exactly, from dense (fast, oneDNN) RNN calls.

        PyTorch's packed path on CPU steps through time op by op; dense calls are 1.1x (float32)
        to 1.6x (bfloat16) faster but read padding. So the batch is sorted by length and run in
        time slices: slice j covers the steps between the j-1-th and j-th distinct lengths, for
        the sentences at least that long, starting from the states the previous slice ended
        in. A sentence's final state is taken from the slice that ends at its length. Slices
        of a stacked RNN are exact, as every layer at step t depends only on steps up to t.
        """
        batch_size = embedded.size(0)
        lengths, order = src_lengths.sort(descending=True)
        embedded = embedded.index_select(0, order)
        lengths = lengths.tolist()
        layers, hidden_size = self.rnn.num_layers, self.rnn.hidden_size
        zeros = embedded.new_zeros(layers, batch_size, hidden_size)
        state = (zeros, zeros) if isinstance(self.rnn, nn.LSTM) else zeros
        finals, start, alive = [], 0, batch_size
        for end in sorted(set(lengths)):
            _, state = run_layers(
                self.rnn, embedded[:alive, start:end], state, self.p, self.training
            )
            still = sum(length > end for length in lengths)  # rows 0..still-1 go on
            finals.append(_rows(state, still, alive))
            state = _rows(state, 0, still)
            start, alive = end, still
        finals.reverse()  # longest first, as the sorted batch
        merged = RecurrentState.from_rnn_state(_cat_rows(finals))
        return merged.select(order.argsort())  # back to the batch's own order


def _rows(state, start: int, end: int):
    """Batch rows start..end-1 of an RNN state (L, B, H) or an LSTM's pair of them."""
    if isinstance(state, tuple):
        return tuple(part[:, start:end] for part in state)
    return state[:, start:end]


def _cat_rows(states: list):
    """RNN states (or LSTM pairs of them) stacked along the batch, the inverse of `_rows`."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
    return torch.cat(states, dim=1)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, pad_id: int):
        super().__init__()
        self.p = config.dropout
        self.embedding = nn.Embedding(vocab_size, config.embedding_size, padding_idx=pad_id)
        self.rnn = _rnn(config)
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
        `noise`, from `noise()`, fixes the dropout masks."""
        embedding_keep, layer_keep = (noise[0], noise[1:]) if noise else (None, None)
        embedded = dropout(self.embedding(tokens), self.p, self.training, embedding_keep)
        outputs, rnn_state = run_layers(
            self.rnn, embedded, state.as_rnn_state(), self.p, self.training, layer_keep
        )  # (B, T', H)
        return outputs, RecurrentState.from_rnn_state(rnn_state)

    def noise(self, tokens: torch.Tensor) -> list[torch.Tensor] | None:
        """Dropout masks for reading tokens (B, T'): the embeddings' and those between layers,
        so that a pass over the same positions can be repeated exactly. None in eval mode."""
        if not self.training or self.p == 0.0:
            return None
        rnn = self.rnn
        sizes = [self.embedding.embedding_dim] + [rnn.hidden_size] * (rnn.num_layers - 1)
        return [torch.rand(*tokens.shape, size, device=tokens.device) >= self.p for size in sizes]


def _slice(noise: list | None, start: int, end: int) -> list | None:
    return noise and [keep[:, start:end] for keep in noise]


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
        A ratio of 1.0 (the paper's training) is a single decoder call over the whole target.
        Below it, runs of consecutive true inputs go through the decoder in one call each, and
        only the steps whose successor reads a prediction need their argmax on the spot; when
        training on CPU, that pass runs without gradients and a single call over the inputs
        it found computes the logits (see `_read_predictions`).
        """
        state = self.encode(src, src_lengths)
        inputs = tgt[:, :-1]  # (B, T-1)
        if teacher_forcing_ratio >= 1.0:
            return self.decoder(inputs, state)[0]
        gold = draw_gold_inputs(inputs.size(1), teacher_forcing_ratio, generator)
        if src.is_cpu and torch.is_grad_enabled():
            noise = self.decoder.noise(inputs)
            with torch.no_grad():
                inputs = self._read_predictions(inputs, gold, state, noise)
            return self.decoder(inputs, state, noise)[0]
        return self._by_segments(inputs, gold, state)

    def _by_segments(self, inputs, gold, state, noise=None) -> torch.Tensor:
        """Logits (B, T-1, V), one decoder call per run of true inputs; each run but the first
        starts by reading the previous step's prediction."""
        pieces, prediction = [], None
        for start, end in _segments(gold):
            segment = inputs[:, start:end]
            if prediction is not None:
                segment = torch.cat([prediction.unsqueeze(1), segment[:, 1:]], dim=1)
            logits, state = self.decoder(segment, state, _slice(noise, start, end))
            pieces.append(logits)  # (B, end - start, V)
            prediction = logits[:, -1].argmax(-1)  # (B,)
        return torch.cat(pieces, dim=1)

    def _read_predictions(self, inputs, gold, state, noise) -> torch.Tensor:
        """The inputs (B, T-1) the decoder reads: the true token, or where `gold` says not, the
        argmax of the step before, found run by run with the output layer applied only to the
        last step of each run.

        With these inputs and the same dropout masks, a single decoder call over the whole
        target computes exactly the logits `_by_segments` would. On CPU that call's forward and
        backward cost far less than one oneDNN call per run, which pays for this pass without
        gradients (measured at tf 0.5, float32: 1.44x -> 1.59x the tutorial step).
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
