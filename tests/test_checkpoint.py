"""Checkpoints: a round trip keeps everything, a save is all or nothing, and anything that is
not a seq2seq checkpoint is refused with a message, never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    CONFIG,
    META,
    SRC,
    TGT,
    Plant,
    crash_when_moving_into_place,
    fail_in_weights,
    make_model,
    save,
)

from seq2seq import checkpoint
from seq2seq.errors import CheckpointError


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.tensor([[2, 4, 5, 6, 3], [2, 7, 3, 1, 1]])
    tgt = torch.tensor([[2, 4, 5, 6, 3], [2, 8, 4, 3, 1]])
    return src, torch.tensor([5, 3]), tgt


def assert_same_weights(model, other) -> None:
    mine, theirs = model.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name


def test_round_trip_keeps_weights_config_vocabs_and_meta(tmp_path):
    model = make_model()
    save(tmp_path / "ckpt", model)

    loaded = checkpoint.load(tmp_path / "ckpt")

    assert_same_weights(loaded.model, model)
    assert loaded.config == CONFIG
    assert loaded.src_vocab.itos == SRC.itos and loaded.tgt_vocab.itos == TGT.itos
    assert loaded.meta == {"format": checkpoint.FORMAT, "format_version": 1, **META}
    assert loaded.path == tmp_path / "ckpt"
    model.eval(), loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(*batch()), model(*batch()))


def test_a_run_directory_means_its_best_checkpoint(tmp_path):
    best, last = make_model(0), make_model(1)
    save(tmp_path / "run" / "best", best, {"epoch": 1})
    save(tmp_path / "run" / "last", last, {"epoch": 2})

    loaded = checkpoint.load(tmp_path / "run")

    assert loaded.path == tmp_path / "run" / "best"
    assert loaded.meta["epoch"] == 1
    assert_same_weights(loaded.model, best)
    assert checkpoint.load(tmp_path / "run" / "last").meta["epoch"] == 2


def fail_in_meta(monkeypatch):
    class FailingJson:
        """json, except that writing meta.json (the last file) fails."""

        loads = staticmethod(json.loads)

        @staticmethod
        def dumps(value, **kwargs):
            if "format" in value:
                raise KeyboardInterrupt
            return json.dumps(value, **kwargs)

    monkeypatch.setattr(checkpoint, "json", FailingJson)


@pytest.mark.parametrize("fail", [fail_in_weights, fail_in_meta])
def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, fail):
    before = make_model(0)
    save(tmp_path / "ckpt", before, {"epoch": 1})
    fail(monkeypatch)

    with pytest.raises((OSError, KeyboardInterrupt)):
        save(tmp_path / "ckpt", make_model(1), {"epoch": 2})

    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.meta["epoch"] == 1
    assert_same_weights(loaded.model, before)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind


@pytest.mark.parametrize("fail", [fail_in_weights, fail_in_meta])
def test_an_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch, fail):
    fail(monkeypatch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save(tmp_path / "ckpt", make_model())
    assert list(tmp_path.iterdir()) == []


def record_disk_order(monkeypatch) -> list[tuple]:
    """Every fsync, as (inode, size then), and every rename, as (source, target), in order."""
    events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", info.st_ino, info.st_size))
        real_fsync(fd)

    def rename(source, target, *args, **kwargs):
        events.append(("rename", Path(source), Path(target)))
        real_rename(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return events


@pytest.mark.parametrize("replacing", [False, True], ids=["first", "replacing"])
def test_a_save_is_on_disk_before_its_rename_and_the_rename_after(tmp_path, monkeypatch, replacing):
    """Power loss, unlike a killed process, loses what is only in the page cache: every file
    and the directory must reach the disk before the rename puts them in place, and the parent
    directory, which holds the rename, after it."""
    target = tmp_path / "last"
    if replacing:
        save(target, make_model(1))
    model = make_model(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_steps(model, optimizer, 1)
    events = record_disk_order(monkeypatch)

    save(target, model, optimizer=optimizer, trainer_state={"epoch": 2})

    into_place = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == target]
    assert len(into_place) == 1 and events[into_place[0]][1].name.startswith(".last.")
    before, after = events[: into_place[0]], events[into_place[0] + 1 :]
    synced = [(inode, size) for kind, inode, size in before if kind == "fsync"]
    files = sorted(target.iterdir())
    assert {f.name for f in files} == {
        "model.safetensors", "optimizer.safetensors", "trainer.json", "config.yaml",
        "vocab.json", "meta.json",
    }  # fmt: skip
    for file in files:  # each whole: synced after its last write
        assert (file.stat().st_ino, file.stat().st_size) in synced, file.name
    # The directory after its files: its entries name them all.
    directory = [i for i, (inode, _) in enumerate(synced) if inode == target.stat().st_ino]
    last_file = max(synced.index((f.stat().st_ino, f.stat().st_size)) for f in files)
    assert directory and directory[-1] > last_file
    assert tmp_path.stat().st_ino in [inode for kind, inode, _ in after if kind == "fsync"]


def test_a_save_interrupted_mid_swap_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    before, after = make_model(0), make_model(1)
    save(tmp_path / "ckpt", before, {"epoch": 1})
    with monkeypatch.context() as patch:
        crash_when_moving_into_place(patch, "ckpt")
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path / "ckpt", after, {"epoch": 2})

    assert not (tmp_path / "ckpt").exists()  # nothing partial under the final name
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.meta["epoch"] == 1
    assert_same_weights(loaded.model, before)

    # The next save completes the swap and cleans up.
    save(tmp_path / "ckpt", after, {"epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    assert_same_weights(checkpoint.load(tmp_path / "ckpt").model, after)


def test_a_run_directory_loads_after_an_interrupted_swap_of_best(tmp_path, monkeypatch):
    save(tmp_path / "run" / "best", make_model(0), {"epoch": 1})
    with monkeypatch.context() as patch:
        crash_when_moving_into_place(patch, "best")
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path / "run" / "best", make_model(1), {"epoch": 2})
    assert checkpoint.load(tmp_path / "run").meta["epoch"] == 1


def test_two_interrupted_swaps_still_leave_a_checkpoint(tmp_path, monkeypatch):
    save(tmp_path / "ckpt", make_model(0), {"epoch": 1})
    crash_when_moving_into_place(monkeypatch, "ckpt")
    for epoch in (2, 3):
        with pytest.raises(KeyboardInterrupt):
            save(tmp_path / "ckpt", make_model(epoch), {"epoch": epoch})
    assert checkpoint.load(tmp_path / "ckpt").meta["epoch"] == 1


def load_error(path) -> str:
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_refuses_a_missing_directory(tmp_path):
    message = load_error(tmp_path / "nowhere")
    assert "nowhere does not exist" in message


def test_refuses_a_directory_without_meta_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    message = load_error(tmp_path)
    assert "not a seq2seq checkpoint (no meta.json)" in message


@pytest.fixture
def saved(tmp_path) -> Path:
    save(tmp_path / "ckpt", make_model())
    return tmp_path / "ckpt"


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_refuses_meta_json_of_another_format(saved):
    edit_json(saved / "meta.json", format="huggingface")
    assert "meta.json has no format 'seq2seq-checkpoint'" in load_error(saved)


def test_refuses_another_format_version(saved):
    edit_json(saved / "meta.json", format_version=2)
    message = load_error(saved)
    assert "format version 2" in message and "reads version 1" in message


def test_refuses_meta_json_that_is_not_an_object(saved):
    (saved / "meta.json").write_text("[1, 2]")
    assert "meta.json" in load_error(saved)


def test_refuses_a_broken_vocabulary(saved):
    (saved / "vocab.json").write_text(json.dumps({"src": ["a", "b"], "tgt": TGT.itos}))
    message = load_error(saved)
    assert "vocab.json is unusable" in message and "must start with" in message


def change_hidden_size(saved: Path) -> None:
    config = yaml.safe_load((saved / "config.yaml").read_text())
    config["model"]["hidden_size"] = 32
    (saved / "config.yaml").write_text(yaml.safe_dump(config))


def test_refuses_weights_that_do_not_fit_the_config(saved):
    change_hidden_size(saved)
    message = load_error(saved)
    assert "model.safetensors does not fit its config" in message


def test_weights_that_do_not_fit_name_the_mismatch(saved):
    change_hidden_size(saved)
    assert "size mismatch" in load_error(saved)


def test_refuses_an_invalid_config(saved):
    config = yaml.safe_load((saved / "config.yaml").read_text())
    config["model"]["cell"] = "transformer"
    (saved / "config.yaml").write_text(yaml.safe_dump(config))
    message = load_error(saved)
    assert "config.yaml is unusable" in message and "model.cell='transformer'" in message


def test_refuses_a_pickle(saved):
    torch.save(make_model().state_dict(), saved / "model.safetensors")
    assert "model.safetensors" in load_error(saved)


def test_a_pickle_is_not_reported_as_a_config_mismatch(saved):
    torch.save(make_model().state_dict(), saved / "model.safetensors")
    assert "does not fit its config" not in load_error(saved)


def test_a_malicious_pickle_never_runs(saved, tmp_path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps({"weight": Plant(proof)}))
    assert proof.is_dir()  # the payload works when unpickled

    marker = tmp_path / "marker"
    (saved / "model.safetensors").write_bytes(pickle.dumps({"weight": Plant(marker)}))
    load_error(saved)
    assert not marker.exists()


def train_steps(model, optimizer, steps: int) -> None:
    for _ in range(steps):
        loss = model(*batch()).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_optimizer_state_round_trip(tmp_path):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_steps(model, optimizer, 3)
    trainer_state = {"epoch": 2, "step": 3, "best": -1.5, "batch_rng": [3, [1, 2], None]}
    save(tmp_path / "last", model, optimizer=optimizer, trainer_state=trainer_state)

    loaded = checkpoint.load(tmp_path / "last")
    restored = torch.optim.Adam(loaded.model.parameters(), lr=0.5)
    state = checkpoint.load_training_state(loaded.path, restored)

    assert state == trainer_state
    assert restored.param_groups[0]["lr"] == 0.01
    original = optimizer.state_dict()["state"]
    for param_id, values in restored.state_dict()["state"].items():
        assert values.keys() == original[param_id].keys()
        for key, value in values.items():
            assert torch.equal(value, original[param_id][key]), (param_id, key)
    # Training goes on exactly as it would have without the round trip.
    train_steps(model, optimizer, 2)
    train_steps(loaded.model, restored, 2)
    assert_same_weights(loaded.model, model)


def test_training_state_of_a_checkpoint_without_optimizer(saved):
    optimizer = torch.optim.Adam(make_model().parameters())
    with pytest.raises(CheckpointError, match="not resumable"):
        checkpoint.load_training_state(saved, optimizer)


def test_checkpoints_get_the_usual_permissions(saved, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file").write_text("x")

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(saved) == mode(plain)
    assert {p.name: mode(p) for p in saved.iterdir()} == {
        p.name: mode(plain / "file") for p in saved.iterdir()
    }


def test_a_copied_checkpoint_loads_elsewhere(saved, tmp_path):
    """A checkpoint stands on its own: moved anywhere, it loads the same."""
    shutil.copytree(saved, tmp_path / "elsewhere" / "copy")
    loaded = checkpoint.load(tmp_path / "elsewhere" / "copy")
    assert_same_weights(loaded.model, checkpoint.load(saved).model)
