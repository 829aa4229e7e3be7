"""Helpers shared by the test files (fixtures are in conftest.py): the tiny training
recipe on the first 640 Multi30k pairs, run comparisons, a small checkpoint, and the faults
that tests inject. Training runs are checked bit for bit where they must be exact."""

from __future__ import annotations

import gzip
import itertools
import json
import os
from pathlib import Path

import torch
from conftest import CONFIGS, MULTI30K, ROOT
from safetensors.torch import load_file

from seq2seq import checkpoint
from seq2seq.config import Config, RecurrentConfig, TrainConfig, load_config
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.models import build_model
from seq2seq.training import Trainer

TINY = CONFIGS / "tiny.yaml"


RECIPE = [
    "data.train_limit=640",
    "train.batch_size=64",
    "model.dropout=0.3",  # dropout and teacher forcing draw random numbers: resume must too
    "train.teacher_forcing_ratio=0.5",
]


STEPS_PER_EPOCH = 10


GOLDEN = ROOT / "tests" / "data" / "golden"


GOLDEN_DE = ROOT / "tests" / "data" / "golden.de"


NAN, INF = float("nan"), float("inf")


def write_split(folder: Path, split: str, start: int, count: int) -> None:
    """Lines start..start+count of a Multi30k split as plain `{split}.de` / `{split}.en`."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("de", "en"):
        with gzip.open(MULTI30K / f"{split}.{lang}.gz", "rt", encoding="utf-8") as handle:
            lines = list(itertools.islice(handle, start, start + count))
        (folder / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")


def tiny(corpus: Path, output_dir: Path, *overrides: str) -> Config:
    return load_config(
        TINY, [f"output_dir={output_dir}", f"data.dir={corpus}", *RECIPE, *overrides]
    )


def tiny_argv(corpus: Path, output_dir: Path, *overrides: str) -> list:
    return ["train", TINY, f"output_dir={output_dir}", f"data.dir={corpus}", *RECIPE, *overrides]


def train(config: Config) -> Path:
    Trainer(config).train()
    return config.run_dir


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def assert_same_tensors(path: Path, other: Path) -> None:
    mine, theirs = load_file(path), load_file(other)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), f"{path.name}: {name}"


def assert_same_run(run: Path, expected: Path) -> None:
    """Bit-identical weights, optimizer and trainer state (RNGs included) in last/, and the
    same logged figures for the final epoch."""
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_tensors(run / "last" / name, expected / "last" / name)
    trainer_state = json.loads((run / "last" / "trainer.json").read_text())
    expected_state = json.loads((expected / "last" / "trainer.json").read_text())
    for state in (trainer_state, expected_state):  # wall-clock time, never the same
        assert state.pop("epoch_seconds") > 0
    assert trainer_state == expected_state
    final, expected_final = records(run)[-1], records(expected)[-1]
    for key in ("epoch", "step", "train_loss", "val_loss", "val_free_loss", "val_bleu"):
        assert final[key] == expected_final[key], key


def inject(trainer: Trainer, faults: dict) -> dict[int, dict[str, torch.Tensor]]:
    """Patch the training forward pass: at step s (from 0), faults[s] is either a value added
    to the logits (NaN or inf) or an exception to raise. Returns the weights as they were
    before each training step."""
    model, real = trainer.model, trainer.model.forward
    before: dict[int, dict[str, torch.Tensor]] = {}

    def forward(*args, **kwargs):
        if not model.training:
            return real(*args, **kwargs)
        before[trainer.step] = {k: v.clone() for k, v in model.state_dict().items()}
        fault = faults.get(trainer.step)
        if isinstance(fault, BaseException):
            raise fault
        logits = real(*args, **kwargs)
        return logits if fault is None else logits + fault

    model.forward = forward
    return before


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


SRC = Vocab([*SPECIALS, "ein", "mann", "über", "straße"])


TGT = Vocab([*SPECIALS, "a", "man", "over", "street", "é"])


CONFIG = Config(
    name="ckpt",
    model=RecurrentConfig(embedding_size=8, hidden_size=16, num_layers=2, dropout=0.0),
    train=TrainConfig(epochs=3, lr=0.01, teacher_forcing_ratio=1.0),
)


META = {"epoch": 2, "step": 40, "metrics": {"val_loss": 1.25, "val_bleu": 3.5}}


def make_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(CONFIG.model, **model_sizes(SRC, TGT))


def save(path: Path, model, meta=META, **kwargs) -> None:
    checkpoint.save(path, model, CONFIG, (SRC, TGT), meta, **kwargs)


def fail_in_weights(monkeypatch):
    import safetensors.torch

    real = safetensors.torch.save_file

    def half_written(tensors, path, *args, **kwargs):
        real(dict(list(tensors.items())[:2]), path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)


def crash_when_moving_into_place(monkeypatch, name: str):
    """The finished temporary directory cannot be renamed to `name`: the old checkpoint has
    already been moved aside, the new one never arrives."""
    real = Path.rename

    def rename(self, target):
        if self.name.startswith(f".{name}.") and not self.name.endswith(".old"):
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)


class Plant:
    """Unpickling this creates a directory: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def signal_at_step(monkeypatch, number: int, step: int) -> None:
    """Deliver signal `number` to this process during training step `step` (counted from 1),
    as `kill` or Ctrl-C would."""
    real, sent = Trainer._batch, []

    def batch(self, indices):
        if self.step + 1 == step and not sent:  # the update in flight is step + 1
            sent.append(number)
            os.kill(os.getpid(), number)
        return real(self, indices)

    monkeypatch.setattr(Trainer, "_batch", batch)
