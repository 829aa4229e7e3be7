"""The only place that saves and loads checkpoints.

A checkpoint is a directory that stands on its own: `model.safetensors` (weights),
`config.yaml` (the full run config), `vocab.json` (source and target vocabularies) and
`meta.json` (format version, epoch, step, metrics). With `data.tokenizer: sentencepiece` it
holds the SentencePiece models too, which the vocabularies carry: `spm.joint.model` with
`data.joint_vocab`, else `spm.src.model` and `spm.tgt.model`; a spaCy checkpoint has none. A
resumable checkpoint adds `optimizer.safetensors` and `trainer.json`. Tensors are in
safetensors and everything else in JSON, YAML or SentencePiece's own format, so loading never
unpickles and never runs code from the file.

Saving writes a temporary directory, flushes its files and itself to the disk, renames it into
place and flushes the parent directory (writing.staged_dir), so neither an interrupted save, a
full disk nor a power loss leaves less than one whole checkpoint.

This module reads and writes the format and knows nothing of exports, ensembles or training:
opening whatever a user names (a run, a checkpoint, an ensemble or an export) is loader.py's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from seq2seq import writing
from seq2seq.config import (
    Config,
    ConfigError,
    DataConfig,
    config_from_dict,
    config_to_dict,
    one_line,
)
from seq2seq.data.subword import subword_vocab
from seq2seq.data.vocab import Vocab, model_sizes
from seq2seq.errors import CheckpointError
from seq2seq.models import Seq2SeqModel, build_model

FORMAT = "seq2seq-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: Seq2SeqModel
    config: Config
    src_vocab: Vocab
    tgt_vocab: Vocab
    meta: dict[str, Any]
    path: Path

    @property
    def vocabs(self) -> tuple[Vocab, Vocab]:
        return self.src_vocab, self.tgt_vocab


def subword_files(data: DataConfig) -> dict[str, str]:
    """The SentencePiece model file of each side ("src", "tgt") that a checkpoint holds."""
    if data.tokenizer != "sentencepiece":
        return {}
    if data.joint_vocab:
        return {"src": "spm.joint.model", "tgt": "spm.joint.model"}
    return {"src": "spm.src.model", "tgt": "spm.tgt.model"}


def save(
    path: Path,
    model: torch.nn.Module,
    config: Config,
    vocabs: tuple[Vocab, Vocab],
    meta: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint directory `path` whole, replacing any there (writing.staged_dir:
    the previous one survives any failure); a failure the user can fix is a WriteError."""
    with writing.staged_dir(path, replace=True) as tmp:
        writing.save_tensors(model_weights(model), tmp / "model.safetensors")
        (tmp / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        vocab = {"src": vocabs[0].itos, "tgt": vocabs[1].itos}
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        sides = dict(zip(("src", "tgt"), vocabs, strict=True))
        for side, name in subword_files(config.data).items():
            (tmp / name).write_bytes(sides[side].subword_model)
        if optimizer is not None:
            tensors, rest = _split_optimizer_state(optimizer.state_dict())
            writing.save_tensors(tensors, tmp / "optimizer.safetensors")
            (tmp / "trainer.json").write_text(
                json.dumps({"optimizer": rest, **(trainer_state or {})})
            )
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def remove(path: Path) -> None:
    """Delete a checkpoint directory; hidden first, so a stop part way through never leaves a
    half-deleted checkpoint where a command would find it."""
    hidden = Path(tempfile.mkdtemp(prefix=f".{path.name}.removing.", dir=path.parent))
    path.rename(hidden / path.name)
    shutil.rmtree(hidden)


def epoch_checkpoints(run_dir: Path) -> list[Path]:
    """A run's epoch-K/ checkpoints (train.keep_checkpoints), oldest first."""
    found = [
        path
        for path in Path(run_dir).glob("epoch-*")
        if path.name.removeprefix("epoch-").isdigit() and path.is_dir()
    ]
    return sorted(found, key=lambda path: int(path.name.removeprefix("epoch-")))


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (meaning its best checkpoint); if a save was
    interrupted mid-swap, the whole previous checkpoint it left."""
    path = Path(path)
    for candidate in (path, writing.previous(path), path / "best", writing.previous(path / "best")):
        if (candidate / "meta.json").is_file():
            return candidate
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; give a run directory or its "
            f"best/ or last/ checkpoint"
        )
    if (path / "config.yaml").is_file():  # a run directory before its first save
        raise CheckpointError(
            f"{path} has no checkpoint yet: a run saves best/ and last/ at the end of its "
            f"first epoch; give it then"
        )
    raise CheckpointError(
        f"{path} is not a seq2seq checkpoint (no meta.json); give a run "
        f"directory or its best/ or last/ checkpoint"
    )


def load(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    path = resolve(path)
    meta = _read_json(path / "meta.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a seq2seq checkpoint (meta.json has no format {FORMAT!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {meta.get('format_version')}, this seq2seq "
            f"reads version {FORMAT_VERSION}; use the seq2seq release that wrote it"
        )
    config = read_config(path)
    src_vocab, tgt_vocab = read_vocabs(path, config.data)
    model = build_model(config.model, **model_sizes(src_vocab, tgt_vocab))
    weights = _read_tensors(path / "model.safetensors")
    try:
        load_weights(model, weights)
    except RuntimeError as error:
        # PyTorch's first line only says "Error(s) in loading state_dict"; the next names it.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise CheckpointError(
            f"{path}/model.safetensors does not fit its config: {' '.join(lines[1:2])}"
        ) from None
    model.to(device).eval()  # loaded to decode; the trainer sets train mode itself
    return Checkpoint(model, config, src_vocab, tgt_vocab, meta, path)


def read_config(path: Path) -> Config:
    try:
        return config_from_dict(yaml.safe_load((path / "config.yaml").read_text()))
    except (OSError, yaml.YAMLError, ConfigError) as error:
        raise CheckpointError(f"{path}/config.yaml is unusable: {one_line(error)}") from None


def read_vocabs(path: Path, data: DataConfig) -> tuple[Vocab, Vocab]:
    vocab = _read_json(path / "vocab.json")
    try:
        vocabs = {"src": Vocab(vocab["src"]), "tgt": Vocab(vocab["tgt"])}
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}/vocab.json is unusable: {error}") from None
    models: dict[str, Vocab] = {}  # one Vocab per file: a joint model gives one for both
    for side, name in subword_files(data).items():
        if name not in models:
            models[name] = _read_subword_model(path / name)
        if models[name].itos != vocabs[side].itos:
            raise CheckpointError(
                f"{path}/{name} does not hold the {side} vocabulary of vocab.json; "
                f"the checkpoint is damaged"
            )
        vocabs[side] = models[name]
    return vocabs["src"], vocabs["tgt"]


def _read_subword_model(path: Path) -> Vocab:
    try:
        return subword_vocab(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing; a data.tokenizer=sentencepiece checkpoint needs its "
            f"SentencePiece model"
        ) from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unusable: {one_line(error)}") from None


def _aliases(model: torch.nn.Module) -> dict[str, str]:
    """Names of tied weights (a Transformer's output layer is its embedding) -> the first name
    of the same tensor, which alone is stored: safetensors refuses shared tensors."""
    first: dict[int, str] = {}
    aliases = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def model_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as stored: contiguous CPU tensors, each tied tensor once."""
    aliases = _aliases(model)
    return {
        name: tensor.detach().contiguous().cpu()
        for name, tensor in model.state_dict().items()
        if name not in aliases
    }


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load weights stored by `model_weights`, strictly: every weight there and no other."""
    weights = dict(weights)
    for alias, name in _aliases(model).items():
        if name in weights:
            weights.setdefault(alias, weights[name])
    model.load_state_dict(weights)


def load_training_state(path: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimizer from a resumable checkpoint; returns the rest of the trainer state."""
    if not (path / "optimizer.safetensors").is_file():
        raise CheckpointError(f"{path} is not resumable (no optimizer state); resume from last/")
    state = _read_json(path / "trainer.json")
    tensors = _read_tensors(path / "optimizer.safetensors")
    try:
        optimizer.load_state_dict(_join_optimizer_state(tensors, state.pop("optimizer")))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"{path}/trainer.json and optimizer.safetensors do not hold this run's optimizer "
            f"state ({type(error).__name__}: {error}); the checkpoint is damaged"
        ) from None
    return state


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (OSError, SafetensorError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({error}); "
            f"the checkpoint is damaged or was not written by seq2seq"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable: {error}") from None


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of an optimizer state_dict into a flat dict; the rest stays JSON."""
    tensors, plain = {}, {}
    for param_id, values in state["state"].items():
        plain[str(param_id)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain[str(param_id)][key] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state = {int(k): dict(v) for k, v in rest["state"].items()}
    for name, tensor in tensors.items():
        param_id, key = name.split(".", 1)
        state[int(param_id)][key] = tensor
    return {"state": state, "param_groups": rest["param_groups"]}
