"""An RNN encoder-decoder with attention.

- Bahdanau, Cho and Bengio (2015), "Neural Machine Translation by Jointly Learning to Align
  and Translate": a bidirectional encoder; each step attends with the previous decoder state
  (additive scores, section 3.1 and appendix A), reads the context into the RNN and predicts
  from the new state, the context and the input embedding (`style: bahdanau`).
- Luong, Pham and Manning (2015), "Effective Approaches to Attention-based Neural Machine
  Translation": attend with the new decoder state (general or dot scores, section 3.1), then
  an attentional layer tanh(W_c [context; state]) predicts; with input feeding (section 3.3)
  that vector is part of the next step's input (`style: luong`).

Attention never looks at padding: masked scores get zero weight. The state keeps the weights
of the step just decoded (`state.attention()`), for plots and the server.

Shapes: B batch, S source length, T target length, E embedding, H hidden, L layers,
V target vocabulary, A attention size (H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.config import AttentionConfig
from seq2seq.models.forcing import mixed_forcing
from seq2seq.models.packing import length_mask, pack, unpack
from seq2seq.models.rnn import rnn_layer


@dataclass
class AttentionState:
    """The decoder's RNN state, the encoder's outputs it attends to, and the last weights."""

    hidden: torch.Tensor  # (L, B, H)
    cell: torch.Tensor | None  # (L, B, H) for LSTMs
    memory: torch.Tensor  # (B, S, H) encoder outputs
    keys: torch.Tensor  # (B, S, A) the memory as the score function reads it
    mask: torch.Tensor  # (B, S) True at real source tokens
    feed: torch.Tensor | None  # (B, 1, H) the last attentional vector (Luong input feeding)
    weights: torch.Tensor | None = None  # (B, S) the attention of the step just decoded

    def select(self, index: torch.Tensor) -> AttentionState:
        def rows(tensor, dim=0):
            return None if tensor is None else tensor.index_select(dim, index)

        return AttentionState(
            rows(self.hidden, 1),
            rows(self.cell, 1),
            rows(self.memory),
            rows(self.keys),
            rows(self.mask),
            rows(self.feed),
            rows(self.weights),
        )

    def attention(self, layer: int | None = None, head: int | None = None) -> torch.Tensor:
        """(B, S) weights over the source of the step just decoded; they sum to 1 and are 0
        on padding. An RNN has one attention: layer and head must be None."""
        if layer is not None or head is not None:
            raise ValueError("an RNN attention model has one attention: no layer or head")
        if self.weights is None:
            raise ValueError("no step has been decoded yet")
        return self.weights

    def summary(self) -> torch.Tensor:
        """(B, H): the decoder's initial top-layer state, the bridge from the encoder."""
        return self.hidden[-1]


class Attention(nn.Module):
    """Scores of a query against the memory, masked softmax, and the weighted context."""

    def __init__(self, score: str, size: int):
        super().__init__()
        self.score = score
        if score == "additive":  # v^T tanh(W_q q + W_k m)
            self.key = nn.Linear(size, size, bias=False)
            self.query = nn.Linear(size, size)
            self.v = nn.Linear(size, 1, bias=False)
        elif score == "general":  # q^T W m
            self.key = nn.Linear(size, size, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """The memory (B, S, H) as the scores read it, computed once per sentence."""
        return memory if self.score == "dot" else self.key(memory)

    def forward(self, query, keys, memory, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, H) -> context (B, T, H) and weights (B, T, S)."""
        if self.score == "additive":
            hidden = torch.tanh(self.query(query).unsqueeze(2) + keys.unsqueeze(1))  # (B,T,S,A)
            scores = self.v(hidden).squeeze(-1)  # (B, T, S)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(memory.dtype)
        return weights @ memory, weights  # (B, T, H), (B, T, S)


class AttentionSeq2Seq(nn.Module):
    """Bidirectional encoder, attention, and a decoder that reads the context; behind the model
    protocol (models/protocol.py)."""

    def __init__(
        self,
        config: AttentionConfig,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        src_pad: int,
        tgt_pad: int,
        joint_vocab: bool = False,
    ):
        super().__init__()
        self.config = config
        embedding, hidden = config.embedding_size, config.hidden_size
        self.lstm = config.cell == "lstm"
        self.feeding = config.style == "luong" and config.input_feeding
        self.src_embedding = nn.Embedding(src_vocab_size, embedding, padding_idx=src_pad)
        self.encoder = rnn_layer(config, embedding, hidden // 2, bidirectional=True)
        # The bridge: the decoder starts from a projection of both directions' final states.
        self.bridge = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(1 + self.lstm))
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embedding, padding_idx=tgt_pad)
        self.attention = Attention(config.score, hidden)
        if config.style == "bahdanau":
            self.decoder = rnn_layer(config, embedding + hidden, hidden)
            self.output = nn.Linear(2 * hidden + embedding, tgt_vocab_size)
        else:
            inputs = embedding + (hidden if self.feeding else 0)
            self.decoder = rnn_layer(config, inputs, hidden)
            self.combine = nn.Linear(2 * hidden, hidden, bias=False)
            self.output = nn.Linear(hidden, tgt_vocab_size)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> AttentionState:
        """src (B, S), src_lengths (B,) on the CPU; packed, so padding is never read."""
        embedded = self.dropout(self.src_embedding(src))  # (B, S, E)
        outputs, final = self.encoder(pack(embedded, src_lengths))
        memory = unpack(outputs, total_length=src.size(1))
        finals = final if self.lstm else (final,)  # each (2L, B, H/2), batch order
        hidden, *cell = [
            torch.tanh(bridge(self._directions(part)))
            for bridge, part in zip(self.bridge, finals, strict=True)
        ]  # (L, B, H)
        mask = length_mask(src_lengths, src.size(1), src.device)  # (B, S)
        feed = memory.new_zeros(src.size(0), 1, memory.size(-1)) if self.feeding else None
        keys = self.attention.keys(memory)
        return AttentionState(hidden, cell[0] if cell else None, memory, keys, mask, feed)

    @staticmethod
    def _directions(final: torch.Tensor) -> torch.Tensor:
        """(2L, B, H/2), directions interleaved per layer -> (L, B, H), both joined."""
        layers2, batch, half = final.shape
        return (
            final.view(layers2 // 2, 2, batch, half)
            .transpose(1, 2)
            .reshape(layers2 // 2, batch, 2 * half)
        )

    def _step(self, embedded: torch.Tensor, state: AttentionState):
        """One decoder step: embedded (B, 1, E) -> logits (B, 1, V) and the new state."""
        rnn_state = (state.hidden, state.cell) if self.lstm else state.hidden
        if self.config.style == "bahdanau":
            query = state.hidden[-1].unsqueeze(1)  # (B, 1, H): the previous state
            context, weights = self.attention(query, state.keys, state.memory, state.mask)
            output, rnn_state = self.decoder(torch.cat([embedded, context], -1), rnn_state)
            features = torch.cat([output, context, embedded], -1)  # (B, 1, 2H + E)
            feed = None
        else:
            inputs = torch.cat([embedded, state.feed], -1) if self.feeding else embedded
            output, rnn_state = self.decoder(inputs, rnn_state)  # (B, 1, H): the new state
            context, weights = self.attention(output, state.keys, state.memory, state.mask)
            features = torch.tanh(self.combine(torch.cat([context, output], -1)))  # (B, 1, H)
            feed = features if self.feeding else None
        logits = self.output(self.dropout(features))  # (B, 1, V)
        hidden, cell = rnn_state if self.lstm else (rnn_state, None)
        new = AttentionState(
            hidden, cell, state.memory, state.keys, state.mask, feed, weights.squeeze(1)
        )
        return logits, new

    def decode_step(
        self, tokens: torch.Tensor, state: AttentionState
    ) -> tuple[torch.Tensor, AttentionState]:
        """tokens (B,) -> log-probabilities of the next token (B, V) and the new state."""
        embedded = self.dropout(self.tgt_embedding(tokens.unsqueeze(1)))  # (B, 1, E)
        logits, state = self._step(embedded, state)
        return torch.log_softmax(logits.squeeze(1).float(), dim=-1), state

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (B, T-1, V) for tgt[:, 1:] given src (B, S) and tgt (B, T). Without input
        feeding, Luong's decoder runs over the whole target in one call and attends for all
        steps at once; otherwise the steps follow each other, each reading the true token."""
        if teacher_forcing_ratio < 1.0:
            return mixed_forcing(self, src, src_lengths, tgt, teacher_forcing_ratio, generator)
        state = self.encode(src, src_lengths)
        embedded = self.dropout(self.tgt_embedding(tgt[:, :-1]))  # (B, T-1, E)
        if self.config.style == "luong" and not self.feeding:
            rnn_state = (state.hidden, state.cell) if self.lstm else state.hidden
            outputs, _ = self.decoder(embedded, rnn_state)  # (B, T-1, H)
            context, _ = self.attention(outputs, state.keys, state.memory, state.mask)
            features = torch.tanh(self.combine(torch.cat([context, outputs], -1)))
            return self.output(self.dropout(features))
        steps = []
        for t in range(embedded.size(1)):
            logits, state = self._step(embedded[:, t : t + 1], state)
            steps.append(logits)
        return torch.cat(steps, dim=1)
