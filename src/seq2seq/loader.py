"""Opening what a user names: a run (its best checkpoint), a checkpoint, an ensemble of them,
or a CTranslate2 export, as one `Checkpoint` to decode with.

It sits above the pieces it picks between: the checkpoint format (checkpoint.py), exports
(export/load.py), the check that members can be combined (compat.py) and int8 decoding
(quantize.py); none of them imports this module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.checkpoint import Checkpoint
from seq2seq.compat import check_combinable
from seq2seq.errors import CheckpointError
from seq2seq.export import manifest
from seq2seq.export.load import load_export
from seq2seq.models.ensemble import Ensemble
from seq2seq.quantize import check_quantize, quantized


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """A run or a checkpoint, with its PyTorch weights: for the commands that need the weights
    themselves (export, average, compare, sentence-map). An export is refused, naming the run
    it came from."""
    if manifest.is_export(Path(path)):
        raise CheckpointError(
            f"{path} is a CTranslate2 export, which decodes but holds no PyTorch weights; "
            f"give the run it came from ({manifest.read(Path(path)).checkpoint})"
        )
    return checkpoint.load(path, device)


def load_ensemble(
    paths: list[str | Path], device: torch.device | str = "cpu", *, quantize: str = "none"
) -> Checkpoint:
    """One checkpoint, or several averaged as an ensemble; members must read and write the same
    vocabularies and prepare text the same way. A CTranslate2 export decodes alone. `quantize`:
    "int8" decodes in int8, "auto" where that was measured to pay (quantize.py)."""
    check_quantize(quantize)
    if any(manifest.is_export(Path(path)) for path in paths):
        return _load_export(paths, torch.device(device), quantize)
    members = [load_checkpoint(path, device) for path in paths]
    first = members[0]
    for other in members[1:]:
        check_combinable(first, other, how="ensemble")
    if len(members) == 1:
        return quantized(first, quantize)
    model = Ensemble([member.model for member in members]).to(device)
    meta = {"members": [str(member.path) for member in members]}
    ensemble = Checkpoint(model, first.config, first.src_vocab, first.tgt_vocab, meta, first.path)
    return quantized(ensemble, quantize)


def _load_export(paths: list[str | Path], device: torch.device, quantize: str) -> Checkpoint:
    if len(paths) > 1:
        raise CheckpointError(
            f"{', '.join(map(str, paths))}: a CTranslate2 export decodes alone, not in an "
            f"ensemble; drop --ensemble, or ensemble the runs they came from"
        )
    return load_export(paths[0], device, quantize=quantize)
