"""Stopping: a save that fails part way leaves last/ loadable; a signal saves the step and
resuming from it is exact; a second Ctrl-C keeps the previous last/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
from conftest import assert_error, cli
from helpers import (
    STEPS_PER_EPOCH,
    assert_same_run,
    crash_when_moving_into_place,
    fail_in_weights,
    records,
    signal_at_step,
    tiny,
    tiny_argv,
    train,
)

from seq2seq import checkpoint
from seq2seq.errors import TrainingInterrupted
from seq2seq.training import Trainer

# A save that fails part way.


def crash_moving_last(monkeypatch) -> None:
    crash_when_moving_into_place(monkeypatch, "last")


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    "fault", [fail_in_weights, crash_moving_last], ids=["disk-full", "killed-mid-swap"]
)
def test_a_failed_save_leaves_last_loadable_and_resumable(corpus, straight, tmp_path, fault):
    run = train(tiny(corpus, tmp_path, "train.epochs=1"))
    with pytest.MonkeyPatch.context() as patch:
        fault(patch)
        with pytest.raises((OSError, KeyboardInterrupt)):  # the end-of-epoch-2 save
            train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))

    assert checkpoint.load(run / "last").meta["step"] == STEPS_PER_EPOCH
    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "last", "log.jsonl"]


# Signals.


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    ("number", "step"),
    [(signal.SIGTERM, 13), (signal.SIGINT, 4), (signal.SIGTERM, STEPS_PER_EPOCH)],
    ids=["sigterm-in-epoch-2", "sigint-in-epoch-1", "sigterm-at-the-last-step-of-epoch-1"],
)
def test_a_signal_saves_the_step_and_resuming_is_exact(
    corpus, straight, tmp_path, monkeypatch, number, step
):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with monkeypatch.context() as patch:
        signal_at_step(patch, number, step)
        with pytest.raises(TrainingInterrupted) as error:
            train(tiny(corpus, tmp_path, "train.epochs=2"))

    name, run = signal.Signals(number).name, tmp_path / "tiny"
    message = str(error.value)
    assert f"stopped by {name}" in message and f"step {step};" in message
    assert f"saved in {run / 'last'}" in message and "name=tiny resume=true" in message
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    meta = json.loads((run / "last" / "meta.json").read_text())
    assert meta["step"] == step and meta["metrics"] == {"interrupted": name}

    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)
    assert [r["train_loss"] for r in records(run)] == [r["train_loss"] for r in records(straight)]


@pytest.mark.slow  # trains
def test_a_second_ctrl_c_during_the_stopping_save_keeps_the_previous_last(
    corpus, straight, tmp_path, monkeypatch
):
    """Ctrl-C asks for a stop; the save that follows is cut short by a second Ctrl-C."""
    pressed = []
    real_batch, real_save_file = Trainer._batch, safetensors.torch.save_file

    def batch(self, indices):
        if self.step + 1 == 13 and not pressed:  # in update 13
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real_batch(self, indices)

    def save_file(tensors, path, *args, **kwargs):
        if pressed:
            os.kill(os.getpid(), signal.SIGINT)
        return real_save_file(tensors, path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_batch", batch)
        patch.setattr(safetensors.torch, "save_file", save_file)
        with pytest.raises(KeyboardInterrupt):
            train(tiny(corpus, tmp_path, "train.epochs=2"))

    run = tmp_path / "tiny"
    assert checkpoint.load(run / "last").meta["step"] == STEPS_PER_EPOCH
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "last", "log.jsonl"]
    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)


@pytest.mark.slow  # trains
def test_a_signal_through_the_cli_exits_130_with_how_to_resume(
    corpus, tmp_path, monkeypatch, capsys
):
    signal_at_step(monkeypatch, signal.SIGINT, 4)
    code = cli(tiny_argv(corpus, tmp_path, "train.epochs=2"))
    line = assert_error(capsys, code, exit_code=130, prefix="seq2seq: stopped by SIGINT")
    assert "resume=true" in line
    assert checkpoint.load(tmp_path / "tiny" / "last").meta["step"] == 4


@pytest.mark.slow  # trains
def test_sigterm_to_a_training_process(corpus, tmp_path):
    """A real `kill`: the process stops after a step, saves last/ and exits with 130."""
    argv = [sys.executable, "-m", "seq2seq.cli", *map(str, tiny_argv(corpus, tmp_path))]
    argv += ["train.epochs=1000", "train.num_threads=1"]
    run = tmp_path / "tiny"
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not (run / "log.jsonl").exists():  # an epoch is done: training is under way
                assert process.poll() is None, (tmp_path / "err").read_text()
                assert time.monotonic() < deadline, "training did not start in time"
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stderr = (tmp_path / "err").read_text()
    assert returncode == 130, stderr
    assert stderr.splitlines()[-1].startswith("seq2seq: stopped by SIGTERM"), stderr
    assert "resume=true" in stderr.splitlines()[-1]
    assert checkpoint.load(run / "last").meta["metrics"] == {"interrupted": "SIGTERM"}
