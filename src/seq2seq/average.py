"""Checkpoint averaging: the mean of several checkpoints' weights, written as an ordinary
checkpoint directory (Vaswani et al. 2017, section 6.1, averaged the last 5 or 20 checkpoints;
fairseq's average_checkpoints.py does the same). The members must be one model: the same
model settings, vocabularies and text preparation (compat.py), as the epoch-K/ checkpoints of
one run are.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq import checkpoint
from seq2seq.compat import check_combinable
from seq2seq.errors import ParameterError, Seq2SeqError
from seq2seq.loader import load_checkpoint


def last_epochs(run_dir: str | Path, count: int) -> list[Path]:
    """The run's last `count` epoch-K/ checkpoints, oldest first."""
    if count < 1:
        raise ParameterError("last", f"{{parameter}} must be at least 1 (got {count})")
    if not Path(run_dir).is_dir():
        raise Seq2SeqError(f"run directory {run_dir} does not exist; give the run's directory")
    kept = checkpoint.epoch_checkpoints(Path(run_dir))
    if len(kept) < count:
        names = ", ".join(path.name for path in kept) or "none"
        raise ParameterError(
            "last",
            f"{run_dir} holds {len(kept)} epoch checkpoints ({names}), fewer than "
            f"{{parameter}} {count}; train with train.keep_checkpoints={count} or more",
        )
    return kept[-count:]


def average_checkpoints(paths: list[str | Path], output: str | Path) -> list[Path]:
    """Write the mean of the checkpoints' weights to `output`, with the config and
    vocabularies of the last of them; returns the members' directories. Weights are summed
    in float64 one checkpoint at a time, so memory holds a few models whatever the count."""
    output = Path(output)
    _check_output(output)
    first = last = None
    members, sums = [], {}
    for path in paths:
        last = load_checkpoint(path)
        first = first or last
        check_combinable(first, last, how="average")
        for name, tensor in last.model.state_dict().items():
            if tensor.is_floating_point():
                sums[name] = sums.get(name, 0) + tensor.double()
        members.append(last.path)
    weights = last.model.state_dict()  # any other tensor (an integer buffer) as the last has it
    for name, total in sums.items():
        weights[name] = (total / len(members)).to(weights[name].dtype)
    last.model.load_state_dict(weights)
    meta = {
        "epoch": last.meta.get("epoch"),
        "step": last.meta.get("step"),
        "averaged": [str(path) for path in members],
    }
    checkpoint.save(output, last.model, last.config, (last.src_vocab, last.tgt_vocab), meta)
    return members


def _check_output(output: Path) -> None:
    """Saving replaces `output` whole: never a run directory or a checkpoint that training
    wrote; only an earlier average may be replaced."""
    if not output.exists():
        return
    try:
        meta = json.loads((output / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not (isinstance(meta, dict) and "averaged" in meta):
        raise ParameterError(
            "output",
            f"{{parameter}} {output} already exists and is not an averaged checkpoint; "
            f"give a new directory",
        )
