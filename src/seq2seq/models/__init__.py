"""Model architectures behind one protocol (models/protocol.py), and the registry that builds
them by `model.type`. Models take sizes and token ids; none imports the data package."""

from __future__ import annotations

from seq2seq.config import ModelConfig
from seq2seq.models.protocol import DecoderState, Seq2SeqModel
from seq2seq.models.recurrent import RecurrentState, Seq2Seq

__all__ = ["REGISTRY", "DecoderState", "RecurrentState", "Seq2Seq", "Seq2SeqModel", "build_model"]

# model.type -> the class that implements it; each takes its typed config and the sizes below.
REGISTRY: dict[str, type] = {"lstm": Seq2Seq}


def build_model(
    config: ModelConfig, *, src_vocab_size: int, tgt_vocab_size: int, src_pad: int, tgt_pad: int
) -> Seq2SeqModel:
    return REGISTRY[config.type](
        config,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=tgt_vocab_size,
        src_pad=src_pad,
        tgt_pad=tgt_pad,
    )
