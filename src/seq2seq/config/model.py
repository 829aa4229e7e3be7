"""The model section's keys: one class per model type, picked by `model.type`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seq2seq.config.keys import key, unless, when


@dataclass(frozen=True)
class RecurrentConfig:
    """`model.type: lstm`, the paper's attention-free encoder-decoder (models/recurrent.py)."""

    type: Literal["lstm"] = key("lstm", "The architecture; it decides which model keys follow.")
    cell: Literal["lstm", "gru"] = key("lstm", "The recurrent cell.")
    embedding_size: int = key(256, "E, the width of the token embeddings.", low=1)
    hidden_size: int = key(512, "H, the width of the recurrent state.", low=1)
    num_layers: int = key(2, "L, the layers of encoder and decoder.", low=1)
    dropout: float = key(0.5, "Dropout on embeddings and between layers.", low=0, below=1)
    init_range: float = key(
        0.08,
        "Every parameter starts uniform in [-init_range, init_range] (the paper's 0.08).",
        above=0,
    )
    cpu_fast_path: bool = key(
        True,
        "On CPU, dense oneDNN calls in exact time slices and our own dropout "
        "(models/cpu_rnn.py); false runs plain nn.LSTM / nn.GRU calls, tested equal, should a "
        "PyTorch release break the private calls the fast path makes. GPUs always run cuDNN.",
        applies=unless("device", "cuda", "mps"),
    )


@dataclass(frozen=True)
class AttentionConfig:
    """`model.type: attention`, an RNN encoder-decoder with attention (models/attention.py):
    Bahdanau et al. (2015) by default, Luong et al. (2015) with `style: luong`."""

    type: Literal["attention"] = key(
        "attention", "The architecture; it decides which model keys follow."
    )
    cell: Literal["lstm", "gru"] = key("lstm", "The recurrent cell.")
    embedding_size: int = key(256, "E, the width of the token embeddings.", low=1)
    hidden_size: int = key(
        512,
        "The decoder's state; the bidirectional encoder has hidden_size / 2 per direction, so "
        "its outputs have hidden_size features too. Must be even.",
        low=1,
    )
    num_layers: int = key(1, "The layers of encoder and decoder.", low=1)
    dropout: float = key(
        0.3, "Dropout on embeddings, between layers and before the output layer.", low=0, below=1
    )
    style: Literal["bahdanau", "luong"] = key(
        "bahdanau",
        "bahdanau: attend with the previous decoder state, and feed the context to the RNN and "
        "the output layer; luong: attend with the new decoder state, then an attentional layer.",
    )
    score: Literal["additive", "general", "dot"] = key(
        "additive", "additive (Bahdanau's MLP), general (Luong's bilinear) or dot."
    )
    input_feeding: bool = key(
        True,
        "luong only: the previous attentional vector is part of the next RNN input.",
        applies=when("model.style", "luong"),
    )

    def problems(self) -> list[str]:
        if self.hidden_size % 2:
            return [
                f"model.hidden_size={self.hidden_size} must be even: the bidirectional encoder "
                f"gives each direction half"
            ]
        return []


@dataclass(frozen=True)
class TransformerConfig:
    """`model.type: transformer`, Vaswani et al. (2017) (models/transformer.py)."""

    type: Literal["transformer"] = key(
        "transformer", "The architecture; it decides which model keys follow."
    )
    d_model: int = key(256, "D, the width of every layer; a multiple of `heads`.", low=1)
    heads: int = key(8, "Attention heads.", low=1)
    encoder_layers: int = key(3, "Encoder layers.", low=1)
    decoder_layers: int = key(3, "Decoder layers.", low=1)
    ff_size: int = key(1024, "The width of the feed-forward sublayers.", low=1)
    dropout: float = key(0.1, "Dropout on embeddings and after every sublayer.", low=0, below=1)
    attention_dropout: float = key(0.0, "Dropout on attention weights.", low=0, below=1)
    pre_norm: bool = key(
        False, "Layer norm before each sublayer (and after the stacks) instead of after each."
    )
    tie_embeddings: bool = key(
        True, "The decoder's input embedding is its output layer's weight (Press and Wolf, 2017)."
    )
    share_embeddings: bool = key(
        True,
        "With a joint vocabulary (data.joint_vocab), the encoder shares the decoder's embedding.",
        applies=when("data.joint_vocab", True),
    )

    def problems(self) -> list[str]:
        if self.d_model % self.heads:
            return [f"model.d_model={self.d_model} must be a multiple of model.heads={self.heads}"]
        return []


# Every architecture's settings, by `model.type`. A section's `type` picks its class; a key that
# belongs to another type is refused, naming the type it belongs to.
MODEL_CONFIGS: dict[str, type] = {
    "lstm": RecurrentConfig,
    "attention": AttentionConfig,
    "transformer": TransformerConfig,
}
ModelConfig = RecurrentConfig | AttentionConfig | TransformerConfig
