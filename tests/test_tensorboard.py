"""train.tensorboard: every logged figure of every epoch as a TensorBoard scalar, and one clear
line when the package is missing."""

from __future__ import annotations

import builtins
import json

import pytest
from conftest import CONFIGS, assert_error, cli


@pytest.mark.slow
def test_every_logged_figure_becomes_a_scalar_per_epoch(tmp_path, multi30k_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["train", CONFIGS / "tiny.yaml", f"output_dir={tmp_path}", f"data.dir={multi30k_dir}"]
    assert cli([*argv, "data.train_limit=200", "train.epochs=2", "train.tensorboard=true"]) == 0
    run = tmp_path / "tiny"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "val_loss", "val_bleu", "val_chrf", "lr", "tokens_per_second"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)
    assert "best" not in events.Tags()["scalars"]  # a boolean, not a figure


@pytest.mark.slow
def test_an_epoch_completed_on_resume_replaces_its_partial_point(tmp_path, multi30k_dir):
    """`train.epochs=1.5`, then resumed to 2: epoch 2 is one point, the whole epoch's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["train", CONFIGS / "tiny.yaml", f"output_dir={tmp_path}", f"data.dir={multi30k_dir}"]
    argv += ["data.train_limit=200", "train.tensorboard=true"]
    assert cli([*argv, "train.epochs=1.5"]) == 0
    assert cli([*argv, "train.epochs=2", "resume=true"]) == 0
    run = tmp_path / "tiny"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train_loss")
    assert [s.step for s in scalars] == [1, 2]
    assert [s.value for s in scalars] == pytest.approx([r["train_loss"] for r in records])


def test_asking_for_tensorboard_without_the_package_is_one_line(
    tmp_path, multi30k_dir, capsys, monkeypatch
):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    argv = ["train", CONFIGS / "tiny.yaml", f"output_dir={tmp_path}", f"data.dir={multi30k_dir}"]
    code = cli([*argv, "data.train_limit=50", "train.tensorboard=true"])
    assert_error(capsys, code, "train.tensorboard=true needs the tensorboard package")
    assert not (tmp_path / "tiny" / "last").exists()
