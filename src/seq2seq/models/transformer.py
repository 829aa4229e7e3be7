"""The Transformer of Vaswani et al. (2017), "Attention Is All You Need".

Sinusoidal positions (section 3.5), embeddings scaled by sqrt(d_model) (3.4), post-norm
residual blocks as the paper or pre-norm as an option, attention through PyTorch's
`scaled_dot_product_attention`. The decoder's input embedding is its output layer (3.4), and
with a joint vocabulary the encoder shares it too.

Decoding is incremental: the state keeps each decoder layer's self-attention keys and values
and the cross-attention keys and values of the source, computed once, so `decode_step` feeds
one token through the stack and never recomputes the prefix. `PrefixRecomputation` is the
reference it is tested and benchmarked against. The state also keeps every layer's
cross-attention weights of the step just decoded (`state.attention(layer, head)`).

Shapes: B batch, S source length, T target length, D d_model, N heads, K = D / N per head,
V target vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from seq2seq.config import TransformerConfig
from seq2seq.models.forcing import mixed_forcing
from seq2seq.models.packing import length_mask


@dataclass
class LayerCache:
    """One decoder layer's keys and values: of the prefix (growing) and of the source."""

    self_keys: torch.Tensor  # (B, N, t, K)
    self_values: torch.Tensor  # (B, N, t, K)
    cross_keys: torch.Tensor  # (B, N, S, K)
    cross_values: torch.Tensor  # (B, N, S, K)

    def select(self, index: torch.Tensor) -> LayerCache:
        return LayerCache(
            *(t.index_select(0, index) for t in (self.self_keys, self.self_values)),
            *(t.index_select(0, index) for t in (self.cross_keys, self.cross_values)),
        )


@dataclass
class TransformerState:
    """Everything a decoding step needs: the per-layer caches, the source mask, the number of
    tokens decoded so far and the last step's cross-attention; and the sentence's summary. The
    encoder output itself lives on only in the caches' cross keys and values: beam search
    reorders every field each step, and the (B, S, D) output would be reordered for nothing."""

    caches: list[LayerCache]
    mask: torch.Tensor  # (B, S) True at real source tokens
    steps: int
    summary_vector: torch.Tensor  # (B, D) the encoder output's mean over real source tokens
    weights: torch.Tensor | None = None  # (L, B, N, S) cross-attention of the last step

    def select(self, index: torch.Tensor) -> TransformerState:
        return TransformerState(
            [cache.select(index) for cache in self.caches],
            self.mask.index_select(0, index),
            self.steps,
            self.summary_vector.index_select(0, index),
            None if self.weights is None else self.weights.index_select(1, index),
        )

    def attention(self, layer: int | None = None, head: int | None = None) -> torch.Tensor:
        """(B, S) cross-attention of the step just decoded: one layer's (default the last)
        chosen head, or the mean over its heads; sums to 1, 0 on padding."""
        if self.weights is None:
            raise ValueError("no step has been decoded yet")
        layers, heads = self.weights.size(0), self.weights.size(2)
        layer = layers - 1 if layer is None else layer
        if not -layers <= layer < layers:
            raise ValueError(
                f"layer {layer} does not exist; the decoder has {layers} layers (0 to {layers - 1})"
            )
        if head is not None and not -heads <= head < heads:
            raise ValueError(
                f"head {head} does not exist; each layer has {heads} heads (0 to {heads - 1})"
            )
        chosen = self.weights[layer]  # (B, N, S)
        return chosen.mean(dim=1) if head is None else chosen[:, head]

    def summary(self) -> torch.Tensor:
        """(B, D): the mean of the encoder's outputs over the real source tokens."""
        return self.summary_vector


def sinusoids(length: int, size: int, device=None) -> torch.Tensor:
    """(length, size) positional encodings: sin and cos at geometric wavelengths (3.5)."""
    positions = torch.arange(length, device=device, dtype=torch.float).unsqueeze(1)
    rates = torch.exp(torch.arange(0, size, 2, device=device) * (-math.log(10000.0) / size))
    table = torch.zeros(length, size, device=device)
    table[:, 0::2] = torch.sin(positions * rates)
    table[:, 1::2] = torch.cos(positions * rates[: size // 2])
    return table


# On CPU, SDPA runs its math backend (matrix products and a softmax). On a quiet machine it
# trained the tutorial-size model as fast as the flash kernel
# (benchmarks/transformer_speed.py --cpu-attention; docs/speed.md), and its backward
# is plain autograd. GPUs keep PyTorch's own choice.
_CPU_BACKENDS = [SDPBackend.MATH]
_ALL_BACKENDS = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.MATH,
]


class MultiHeadAttention(nn.Module):
    def __init__(self, size: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(size, size)
        self.key_value = nn.Linear(size, 2 * size)
        self.out = nn.Linear(size, size)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, N, T, K)."""
        batch, length, size = x.shape
        return x.view(batch, length, self.heads, size // self.heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.key_value(x).chunk(2, dim=-1)
        return self.split(keys), self.split(values)  # (B, N, T, K) each

    def forward(self, x, keys, values, mask=None, causal=False) -> torch.Tensor:
        """x (B, T, D) attends to keys and values (B, N, T', K); mask (B, T') True where
        allowed. Returns (B, T, D)."""
        query = self.split(self.query(x))  # (B, N, T, K)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, T')
        with sdpa_kernel(_CPU_BACKENDS if x.is_cpu else _ALL_BACKENDS):
            out = F.scaled_dot_product_attention(
                query,
                keys,
                values,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=causal,
            )  # (B, N, T, K)
        return self.out(out.transpose(1, 2).flatten(2))  # (B, T, D)

    def with_weights(self, x, keys, values, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """As forward for one query step x (B, 1, D), also returning the weights (B, N, S):
        the same attention computed in the open, as a plot needs."""
        query = self.split(self.query(x))  # (B, N, 1, K)
        scores = query @ keys.transpose(-1, -2) / math.sqrt(query.size(-1))  # (B, N, 1, S)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(values.dtype)
        dropped = F.dropout(weights, self.dropout, self.training)
        out = (dropped @ values).transpose(1, 2).flatten(2)  # (B, 1, D)
        return self.out(out), weights.squeeze(2)


class FeedForward(nn.Sequential):
    def __init__(self, size: int, hidden: int, dropout: float):
        super().__init__(
            nn.Linear(size, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, size)
        )


class Block(nn.Module):
    """A residual sublayer: x + dropout(f(x)), normalised after (post-norm, as the paper) or
    f applied to the normalised x (pre-norm)."""

    def __init__(self, size: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        size = config.d_model
        self.attention = MultiHeadAttention(size, config.heads, config.attention_dropout)
        self.feed_forward = FeedForward(size, config.ff_size, config.dropout)
        self.blocks = nn.ModuleList(Block(size, config.dropout, config.pre_norm) for _ in "ab")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        def attend(h):
            return self.attention(h, *self.attention.keys_values(h), mask)

        x = self.blocks[0](x, attend)
        return self.blocks[1](x, self.feed_forward)


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        size = config.d_model
        self.self_attention = MultiHeadAttention(size, config.heads, config.attention_dropout)
        self.cross_attention = MultiHeadAttention(size, config.heads, config.attention_dropout)
        self.feed_forward = FeedForward(size, config.ff_size, config.dropout)
        self.blocks = nn.ModuleList(Block(size, config.dropout, config.pre_norm) for _ in "abc")

    def forward(self, x, memory_keys, memory_values, mask) -> torch.Tensor:
        """All target positions x (B, T, D) at once, each seeing only itself and the past."""

        def attend_self(h):
            return self.self_attention(h, *self.self_attention.keys_values(h), causal=True)

        x = self.blocks[0](x, attend_self)
        x = self.blocks[1](x, lambda h: self.cross_attention(h, memory_keys, memory_values, mask))
        return self.blocks[2](x, self.feed_forward)

    def step(self, x: torch.Tensor, cache: LayerCache, mask: torch.Tensor):
        """One new position x (B, 1, D) against the cached prefix and source; returns the
        output (B, 1, D), the grown cache and the cross-attention weights (B, N, S)."""
        grown: dict = {}

        def attend_self(h):
            keys, values = self.self_attention.keys_values(h)  # (B, N, 1, K)
            grown["keys"] = torch.cat([cache.self_keys, keys], dim=2)
            grown["values"] = torch.cat([cache.self_values, values], dim=2)
            return self.self_attention(h, grown["keys"], grown["values"])

        def attend_source(h):
            out, grown["weights"] = self.cross_attention.with_weights(
                h, cache.cross_keys, cache.cross_values, mask
            )
            return out

        x = self.blocks[0](x, attend_self)
        x = self.blocks[1](x, attend_source)
        x = self.blocks[2](x, self.feed_forward)
        new = LayerCache(grown["keys"], grown["values"], cache.cross_keys, cache.cross_values)
        return x, new, grown["weights"]


class Transformer(nn.Module):
    """Encoder-decoder Transformer behind the model protocol (models/protocol.py)."""

    def __init__(
        self,
        config: TransformerConfig,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        src_pad: int,
        tgt_pad: int,
        joint_vocab: bool = False,
    ):
        super().__init__()
        self.config = config
        size = config.d_model
        self.scale = math.sqrt(size)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, size, padding_idx=tgt_pad)
        if joint_vocab and config.share_embeddings:
            self.src_embedding = self.tgt_embedding
        else:
            self.src_embedding = nn.Embedding(src_vocab_size, size, padding_idx=src_pad)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(config) for _ in range(config.encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(config) for _ in range(config.decoder_layers)
        )
        # Pre-norm stacks end in a norm of their own; post-norm blocks already end in one.
        self.encoder_norm = nn.LayerNorm(size) if config.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(size) if config.pre_norm else nn.Identity()
        self.output = nn.Linear(size, tgt_vocab_size, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self._init(tgt_pad, src_pad)
        # Not saved: a function of d_model alone; it moves with the model's device.
        self.register_buffer("position_table", sinusoids(128, size), persistent=False)
        if config.tie_embeddings:
            self.output.weight = self.tgt_embedding.weight

    def _init(self, tgt_pad: int, src_pad: int) -> None:
        """Xavier-uniform matrices, zero biases, N(0, D^-1/2) embeddings (as fairseq)."""
        for name, parameter in self.named_parameters():
            if "embedding" in name:
                nn.init.normal_(parameter, 0.0, self.config.d_model**-0.5)
            elif parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        with torch.no_grad():
            self.tgt_embedding.weight[tgt_pad].zero_()
            self.src_embedding.weight[src_pad].zero_()

    def _positions(self, end: int) -> torch.Tensor:
        """Positional encodings of positions 0..end-1 (end, D), from a table computed once and
        doubled when a longer sentence comes, not on every decoding step."""
        if self.position_table.size(0) < end:
            length = max(end, 2 * self.position_table.size(0))
            table = sinusoids(length, self.config.d_model, self.position_table.device)
            self.position_table = table  # the buffer, replaced
        return self.position_table[:end]

    def _embed(self, embedding: nn.Embedding, tokens: torch.Tensor, start: int = 0):
        """tokens (B, T) at positions start.. -> (B, T, D)."""
        positions = self._positions(start + tokens.size(1))
        embedded = embedding(tokens) * self.scale + positions[start:].to(embedding.weight.dtype)
        return self.dropout(embedded)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> TransformerState:
        mask = length_mask(src_lengths, src.size(1), src.device)  # (B, S)
        x = self._embed(self.src_embedding, src)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        memory = self.encoder_norm(x)  # (B, S, D)
        batch, heads, size = src.size(0), self.config.heads, self.config.d_model
        empty = memory.new_zeros(batch, heads, 0, size // heads)
        caches = [
            LayerCache(empty, empty, *layer.cross_attention.keys_values(memory))
            for layer in self.decoder_layers
        ]
        weights = mask.unsqueeze(-1).to(memory.dtype)
        summary = (memory * weights).sum(1) / weights.sum(1)  # (B, D)
        return TransformerState(caches, mask, 0, summary)

    def decode_step(
        self, tokens: torch.Tensor, state: TransformerState
    ) -> tuple[torch.Tensor, TransformerState]:
        """tokens (B,) -> log-probabilities of the next token (B, V) and the grown state."""
        x = self._embed(self.tgt_embedding, tokens.unsqueeze(1), start=state.steps)  # (B, 1, D)
        caches, weights = [], []
        for layer, cache in zip(self.decoder_layers, state.caches, strict=True):
            x, cache, layer_weights = layer.step(x, cache, state.mask)
            caches.append(cache)
            weights.append(layer_weights)
        logits = self.output(self.decoder_norm(x)).squeeze(1)  # (B, V)
        new = TransformerState(
            caches, state.mask, state.steps + 1, state.summary_vector, torch.stack(weights)
        )
        return torch.log_softmax(logits.float(), dim=-1), new

    def decode_prefix(self, prefix: torch.Tensor, state: TransformerState) -> torch.Tensor:
        """Logits (B, T, V) for every position of prefix (B, T) at once, from a fresh encoder
        state: the training forward's decoder, and the recomputing reference's."""
        x = self._embed(self.tgt_embedding, prefix)
        for layer, cache in zip(self.decoder_layers, state.caches, strict=True):
            x = layer(x, cache.cross_keys, cache.cross_values, state.mask)
        return self.output(self.decoder_norm(x))

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt: torch.Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (B, T-1, V) for tgt[:, 1:] given src (B, S) and tgt (B, T): every position
        in one pass, a causal mask keeping each from the future."""
        if teacher_forcing_ratio < 1.0:
            return mixed_forcing(self, src, src_lengths, tgt, teacher_forcing_ratio, generator)
        return self.decode_prefix(tgt[:, :-1], self.encode(src, src_lengths))


@dataclass
class PrefixState:
    encoded: TransformerState
    prefix: torch.Tensor  # (B, t) tokens fed so far

    def select(self, index: torch.Tensor) -> PrefixState:
        return PrefixState(self.encoded.select(index), self.prefix.index_select(0, index))


class PrefixRecomputation(nn.Module):
    """A Transformer decoded the way JoeyNMT's search does it: every step feeds the whole
    prefix through the decoder again. The reference that the cache is tested equal to and
    benchmarked against (benchmarks/transformer_speed.py); not for use."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> PrefixState:
        encoded = self.model.encode(src, src_lengths)
        return PrefixState(encoded, src.new_zeros(src.size(0), 0))

    def decode_step(self, tokens: torch.Tensor, state: PrefixState):
        prefix = torch.cat([state.prefix, tokens.unsqueeze(1)], dim=1)  # (B, t + 1)
        logits = self.model.decode_prefix(prefix, state.encoded)[:, -1]  # (B, V)
        return torch.log_softmax(logits.float(), dim=-1), PrefixState(state.encoded, prefix)
