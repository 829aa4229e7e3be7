"""Model architectures behind one protocol (models/protocol.py), and the registry that builds
them by `model.type`. Models take sizes and token ids; none imports the data package."""

from __future__ import annotations

from seq2seq.config import ModelConfig
from seq2seq.models.attention import AttentionSeq2Seq, AttentionState
from seq2seq.models.protocol import DecoderState, Seq2SeqModel
from seq2seq.models.recurrent import RecurrentState, Seq2Seq
from seq2seq.models.transformer import Transformer, TransformerState

__all__ = [
    "REGISTRY",
    "AttentionSeq2Seq",
    "AttentionState",
    "DecoderState",
    "RecurrentState",
    "Seq2Seq",
    "Seq2SeqModel",
    "Transformer",
    "TransformerState",
    "build_model",
]

# model.type -> the class that implements it; each takes its typed config and the sizes below.
REGISTRY: dict[str, type] = {
    "lstm": Seq2Seq,
    "attention": AttentionSeq2Seq,
    "transformer": Transformer,
}


def build_model(
    config: ModelConfig,
    *,
    src_vocab_size: int,
    tgt_vocab_size: int,
    src_pad: int,
    tgt_pad: int,
    joint_vocab: bool = False,
) -> Seq2SeqModel:
    """The model `config.type` names. `joint_vocab`: source and target ids mean the same
    tokens, so a model may share its embeddings (only the Transformer does)."""
    return REGISTRY[config.type](
        config,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        src_pad=src_pad,
        tgt_pad=tgt_pad,
        joint_vocab=joint_vocab,
    )
