"""An export directory loaded as a `Checkpoint` whose model is a CTranslate2 translator."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.checkpoint import Checkpoint
from seq2seq.errors import Seq2SeqError
from seq2seq.export import manifest
from seq2seq.export.engine import CTranslate2Model
from seq2seq.export.requirement import ctranslate2


def load_export(path: str | Path, device: torch.device, *, quantize: str = "none") -> Checkpoint:
    """The export at `path`, decoding on `device` with as many threads as PyTorch has (see
    `threads`).
    `quantize="int8"` decodes a float export in int8 (CTranslate2 converts at load time);
    otherwise it decodes in the precision it was exported in."""
    path = Path(path)
    found = manifest.read(path)
    if device.type not in ("cpu", "cuda"):
        raise Seq2SeqError(
            f"CTranslate2 decodes on cpu or cuda, not {device.type}; pass --device cpu"
        )
    config = checkpoint.read_config(path)
    src_vocab, tgt_vocab = checkpoint.read_vocabs(path, config.data)
    translator = ctranslate2().Translator(
        str(path),
        device=device.type,
        device_index=device.index or 0,
        compute_type="int8" if quantize == "int8" else "default",
        **threads(device),
    )
    model = CTranslate2Model(
        translator, src_vocab=src_vocab, tgt_vocab=tgt_vocab, position_rows=found.position_rows
    )
    meta = {"export": True, **vars(found)}
    return Checkpoint(model, config, src_vocab, tgt_vocab, meta, path)


def threads(device: torch.device) -> dict:
    """On a CPU, one worker per thread, each decoding a batch on one thread, rather than one
    worker multiplying each matrix on every thread: our models' matrices are too small to
    share, so int8 decodes files, a busy server's batches and lone sentences faster this way
    (the figures: docs/export-measured.md, Threads). `CTranslate2Model` queues every batch at
    once, so that the workers have work."""
    if device.type == "cpu":
        return {"inter_threads": torch.get_num_threads(), "intra_threads": 1}
    return {"inter_threads": 1}
