"""Model architectures behind one decoding interface.

A model provides `encode(src, src_lengths) -> state` and
`decode_step(tokens, state) -> (log_probs, state)`, where `state.select(index)` keeps, repeats
or reorders batch entries; `forward(src, src_lengths, tgt, teacher_forcing_ratio)` gives the
training logits.
"""

from __future__ import annotations

from seq2seq.config import ModelConfig
from seq2seq.data.vocab import Vocab
from seq2seq.models.recurrent import RecurrentState, Seq2Seq

__all__ = ["RecurrentState", "Seq2Seq", "build_model"]


def build_model(config: ModelConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Seq2Seq:
    return Seq2Seq(
        config, len(src_vocab), len(tgt_vocab), src_pad=src_vocab.pad, tgt_pad=tgt_vocab.pad
    )
