"""Reliability: each test injects a fault (a signal, a failed save, a NaN, an out-of-memory
error, a changed config or corpus, a malicious or foreign checkpoint, hostile input text) and
checks that training and translation fail cleanly or carry on exactly.

Training runs use the tiny recipe on the first 640 Multi30k training pairs (10 batches of 64
per epoch), validated on the first 100 validation pairs, written as plain files so that no run
tokenizes the whole corpus. An exact resume is checked bit for bit against a straight run.
"""

from __future__ import annotations

import ast
import contextlib
import gzip
import io
import itertools
import json
import logging
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import CONFIGS, MULTI30K, ROOT, cli, isolated
from safetensors.torch import load_file
from test_checkpoint import Plant, crash_when_moving_into_place, fail_in_weights
from test_cli import snapshot

from seq2seq import checkpoint
from seq2seq.config import Config, ConfigError, load_config
from seq2seq.errors import CheckpointError, TrainingDiverged, TrainingInterrupted
from seq2seq.models import Seq2Seq
from seq2seq.training import Trainer
from seq2seq.training import loop as loop_module
from seq2seq.training import step as step_module
from seq2seq.training.step import MAX_BAD_STEPS_IN_ROW, Updater
from seq2seq.translate import Translator

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    folder = tmp_path_factory.mktemp("corpus")
    write_split(folder, "train", 0, 640)
    write_split(folder, "val", 0, 100)
    return folder


def tiny(corpus: Path, output_dir: Path, *overrides: str) -> Config:
    return load_config(
        TINY, [f"output_dir={output_dir}", f"data.dir={corpus}", *RECIPE, *overrides]
    )


def tiny_argv(corpus: Path, output_dir: Path, *overrides: str) -> list:
    return ["train", TINY, f"output_dir={output_dir}", f"data.dir={corpus}", *RECIPE, *overrides]


def train(config: Config) -> Path:
    Trainer(config).train()
    return config.run_dir


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory) -> Path:
    """Two epochs without a stop: what every stopped and resumed run must reproduce."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("straight"), "train.epochs=2"))


@pytest.fixture(scope="module")
def one_epoch(corpus, tmp_path_factory) -> Path:
    """The same recipe stopped after one epoch; tests only read it."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("one_epoch"), "train.epochs=1"))


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


def error_line(capsys, code: int, *fragments: str, exit_code: int = 2, prefix="seq2seq: error: "):
    """The exit code, no traceback, and the error as the one and last `seq2seq:` line of
    stderr (log lines may precede it)."""
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    ours = [line for line in lines if line.startswith("seq2seq:")]
    assert len(ours) == 1 and lines[-1] == ours[0], err
    assert ours[0].startswith(prefix), ours[0]
    for fragment in fragments:
        assert fragment in ours[0], ours[0]
    return ours[0]


# Exact resume.


@pytest.mark.slow  # trains
def test_resume_in_the_middle_of_an_epoch_is_exact(corpus, straight, tmp_path, monkeypatch):
    # A clock that moves 10 s per look: each session of training takes 10 s.
    ticks = itertools.count(step=10.0)
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    run = train(tiny(corpus, tmp_path, "train.epochs=1.5"))
    state = json.loads((run / "last" / "trainer.json").read_text())
    assert (state["epoch"], state["step"], state["position"]) == (2, 15, 5)
    half = records(run)[-1]

    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))

    assert_same_run(run, straight)
    # Epoch 2 has one record, the whole one: its time and speed cover both sessions.
    assert [r["epoch"] for r in records(run)] == [1, 2]
    whole = records(run)[-1]
    assert (half["seconds"], whole["seconds"]) == (10.0, 20.0)
    tokens = records(straight)[-1]["tokens_per_second"] * records(straight)[-1]["seconds"]
    assert whole["tokens_per_second"] == pytest.approx(tokens / 20.0)


@pytest.mark.slow  # trains
def test_resume_at_an_epoch_boundary_is_exact(corpus, straight, tmp_path):
    run = train(tiny(corpus, tmp_path, "train.epochs=1"))
    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)
    assert [r["train_loss"] for r in records(run)] == [r["train_loss"] for r in records(straight)]


@pytest.mark.slow  # trains
def test_the_same_seed_gives_the_same_weights_and_another_seed_others(corpus, one_epoch, tmp_path):
    again = train(tiny(corpus, tmp_path / "again", "train.epochs=1"))
    other = train(tiny(corpus, tmp_path / "other", "train.epochs=1", "seed=4321"))
    assert_same_tensors(
        again / "last" / "model.safetensors", one_epoch / "last" / "model.safetensors"
    )
    mine, theirs = (load_file(run / "last" / "model.safetensors") for run in (one_epoch, other))
    assert not any(torch.equal(mine[name], theirs[name]) for name in mine)


# Early stopping, kept epoch checkpoints and the schedule, across stops and resumes.

VAL_LOSS = {1: 3.0, 2: 2.0, 3: 2.5, 4: 2.4, 5: 2.6}  # by epoch: the best is epoch 2


def scripted_validation(monkeypatch) -> None:
    """Validation figures as VAL_LOSS scripts them: a known best, and no decoding."""

    def validate(self):
        loss = VAL_LOSS[self.epoch]
        figures = {"loss": loss, "free_loss": loss, "bleu": 1.0, "bleu_tokenized": 1.0}
        figures.update(ppl=math.exp(loss), free_ppl=math.exp(loss), chrf=1.0)
        return {f"val_{key}": value for key, value in figures.items()}

    monkeypatch.setattr(Trainer, "validate", validate)


@pytest.fixture(scope="module")
def stopped_early(corpus, tmp_path_factory) -> Path:
    """Up to 10 epochs with patience 2, stopped without a break after epoch 4."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"), pytest.MonkeyPatch.context() as patch:
        scripted_validation(patch)
        output_dir = tmp_path_factory.mktemp("stopped_early")
        return train(tiny(corpus, output_dir, "train.epochs=10", "train.patience=2"))


@pytest.mark.slow  # trains
def test_early_stopping_stops_after_patience_epochs_without_improvement(
    corpus, stopped_early, tmp_path, monkeypatch, caplog
):
    log = records(stopped_early)
    assert [(r["epoch"], r["best"]) for r in log] == [(1, True), (2, True), (3, False), (4, False)]
    assert checkpoint.load(stopped_early).meta["epoch"] == 2
    assert json.loads((stopped_early / "last" / "trainer.json").read_text())["best_epoch"] == 2

    scripted_validation(monkeypatch)
    run = shutil.copytree(stopped_early, tmp_path / "tiny")
    with caplog.at_level(logging.INFO, logger="seq2seq.training"):
        train(tiny(corpus, tmp_path, "train.epochs=20", "train.patience=2", "resume=true"))
    assert records(run) == log  # more epochs do not restart a stopped run
    assert checkpoint.load(run / "last").meta["step"] == 4 * STEPS_PER_EPOCH
    why = "stopped early after epoch 4: val_loss has not improved for 2 epochs (best: epoch 2)"
    assert any(why in r.getMessage() for r in caplog.records)

    train(tiny(corpus, tmp_path, "train.epochs=20", "train.patience=3", "resume=true"))
    assert [r["epoch"] for r in records(run)] == [1, 2, 3, 4, 5]  # more patience does


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    "first", ["train.epochs=3", "train.epochs=2.5"], ids=["boundary", "inside"]
)
def test_a_run_stopped_and_resumed_stops_early_exactly_as_a_straight_one(
    corpus, stopped_early, tmp_path, monkeypatch, first
):
    scripted_validation(monkeypatch)
    run = train(tiny(corpus, tmp_path, first, "train.patience=2"))
    train(tiny(corpus, tmp_path, "train.epochs=10", "train.patience=2", "resume=true"))
    assert_same_run(run, stopped_early)
    assert [r["epoch"] for r in records(run)][-2:] == [3, 4]


@pytest.mark.slow  # trains
def test_a_run_saved_before_early_stopping_existed_resumes(corpus, one_epoch, straight, tmp_path):
    """Its trainer.json has no best_epoch: patience counts from the resume."""
    run = shutil.copytree(one_epoch, tmp_path / "tiny")
    state = json.loads((run / "last" / "trainer.json").read_text())
    del state["best_epoch"]
    (run / "last" / "trainer.json").write_text(json.dumps(state))
    train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)


@pytest.mark.slow  # trains
def test_keep_checkpoints_keeps_the_last_n_epochs(corpus, tmp_path, monkeypatch):
    scripted_validation(monkeypatch)
    run = train(tiny(corpus, tmp_path, "train.epochs=4", "train.keep_checkpoints=3"))
    kept = ["epoch-2", "epoch-3", "epoch-4"]
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["best", "config.yaml", *kept, "last", "log.jsonl"]
    )
    for name in kept:
        meta = checkpoint.load(run / name).meta
        assert (meta["epoch"], meta["step"]) == (int(name[6:]), int(name[6:]) * STEPS_PER_EPOCH)
        assert not (run / name / "optimizer.safetensors").exists()  # weights only
    for name, same in (("epoch-2", "best"), ("epoch-4", "last")):
        assert_same_tensors(run / name / "model.safetensors", run / same / "model.safetensors")

    train(tiny(corpus, tmp_path, "train.epochs=5", "train.keep_checkpoints=2", "resume=true"))
    assert sorted(p.name for p in run.glob("*epoch-*")) == ["epoch-4", "epoch-5"]

    train(tiny(corpus, tmp_path, "train.epochs=1", "overwrite=true"))  # the replaced run goes
    assert not list(run.glob("*epoch-*"))


@pytest.mark.slow  # trains
def test_the_inverse_sqrt_rate_follows_the_step_across_a_resume(corpus, tmp_path):
    recipe = ["train.lr_schedule=inverse_sqrt", "train.warmup_steps=20", "train.lr=0.01"]
    run = train(tiny(corpus, tmp_path, "train.epochs=1", *recipe))
    train(tiny(corpus, tmp_path, "train.epochs=3", *recipe, "resume=true"))
    # Each epoch logs the rate of its last update: steps 10 (warming up), 20 (the peak), 30.
    expected = [0.01 * 10 / 20, 0.01, 0.01 * math.sqrt(20 / 30)]
    assert [r["lr"] for r in records(run)] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow  # trains
def test_validation_bleu_with_beam_search_and_plain_loss_are_what_evaluate_gives(
    corpus, tmp_path, capsys
):
    """valid_beam_size=3 gives the BLEU of `evaluate --beam-size 3`; with label smoothing the
    validation loss stays the plain cross-entropy that evaluate reports."""
    overrides = ["train.epochs=1", "train.valid_beam_size=3", "train.label_smoothing=0.1"]
    run = train(tiny(corpus, tmp_path, *overrides))
    (record,) = records(run)
    capsys.readouterr()
    figures = {}
    for beam in (3, 1):
        argv = ["evaluate", run / "last", "--split", "val", "--beam-size", beam, "--json"]
        assert cli(argv) == 0
        figures[beam] = json.loads(capsys.readouterr().out)
    for key in ("bleu", "bleu_tokenized", "chrf", "loss", "free_loss"):
        assert record[f"val_{key}"] == pytest.approx(figures[3][key], abs=1e-9), key
    assert figures[1]["bleu"] != figures[3]["bleu"]  # the beam did change the translations


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


def signal_at_step(monkeypatch, number: int, step: int) -> None:
    """Deliver signal `number` to this process during training step `step` (counted from 1),
    as `kill` or Ctrl-C would."""
    real = Updater.finite

    def finite(self, step_index, loss_value, norm):
        if step_index + 1 == step:
            os.kill(os.getpid(), number)
        return real(self, step_index, loss_value, norm)

    monkeypatch.setattr(Updater, "finite", finite)


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
    real_finite, real_save_file = Updater.finite, checkpoint.save_file

    def finite(self, step, loss_value, norm):
        if step + 1 == 13:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real_finite(self, step, loss_value, norm)

    def save_file(tensors, path, *args, **kwargs):
        if pressed:
            os.kill(os.getpid(), signal.SIGINT)
        return real_save_file(tensors, path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Updater, "finite", finite)
        patch.setattr(checkpoint, "save_file", save_file)
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
    line = error_line(capsys, code, exit_code=130, prefix="seq2seq: stopped by SIGINT")
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


# Non-finite losses and out of memory.


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


@pytest.mark.slow  # trains
def test_a_non_finite_loss_skips_the_update_and_is_counted(corpus, tmp_path, caplog):
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1"))
    before = inject(trainer, {3: NAN, 6: INF})
    with caplog.at_level(logging.WARNING, logger="seq2seq.training"):
        trainer.train()

    assert same_weights(before[3], before[4]) and same_weights(before[6], before[7])
    assert not same_weights(before[4], before[5])  # a finite step does update
    assert trainer.optimizer.state_dict()["state"][0]["step"] == STEPS_PER_EPOCH - 2
    (record,) = records(tmp_path / "tiny")
    assert record["skipped_steps"] == 2 and record["step"] == STEPS_PER_EPOCH
    assert torch.isfinite(torch.tensor(record["train_loss"]))
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 2 and warnings[0].startswith("step 3:")


@pytest.mark.slow  # trains
def test_non_finite_losses_not_in_a_row_do_not_stop_training(corpus, tmp_path):
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1"))
    bad = [*range(1, MAX_BAD_STEPS_IN_ROW), *range(MAX_BAD_STEPS_IN_ROW + 1, STEPS_PER_EPOCH)]
    inject(trainer, dict.fromkeys(bad, NAN))
    assert trainer.train()["skipped_steps"] == len(bad)


@pytest.mark.slow  # trains
def test_non_finite_losses_in_a_row_stop_training_with_one_line(
    corpus, tmp_path, monkeypatch, capsys
):
    real = Seq2Seq.forward
    steps = []

    def forward(self, *args, **kwargs):
        logits = real(self, *args, **kwargs)
        if self.training:
            steps.append(len(steps))
            return logits + (NAN if steps[-1] >= 3 else 0.0)
        return logits

    monkeypatch.setattr(Seq2Seq, "forward", forward)
    code = cli(tiny_argv(corpus, tmp_path, "train.epochs=1"))
    last_bad = 3 + MAX_BAD_STEPS_IN_ROW - 1
    error_line(
        capsys,
        code,
        f"{MAX_BAD_STEPS_IN_ROW} steps in a row had a non-finite loss or gradient",
        f"(step {last_bad})",
        "lower train.lr",
    )
    assert len(steps) == last_bad + 1  # it stopped at once


@pytest.mark.slow  # trains
def test_a_nan_validation_loss_never_becomes_the_best(corpus, tmp_path, monkeypatch):
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=3"))
    model, real = trainer.model, trainer.model.forward

    def forward(*args, **kwargs):
        logits = real(*args, **kwargs)
        return logits + NAN if not model.training and trainer.epoch in (1, 3) else logits

    model.forward = forward
    saves = []
    real_save = checkpoint.save

    def save(path, *args, **kwargs):
        saves.append((Path(path).name, args[3]["epoch"]))
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save)
    trainer.train()

    log = records(tmp_path / "tiny")
    assert [r["best"] for r in log] == [False, True, False]
    assert [r["val_loss"] != r["val_loss"] for r in log] == [True, False, True]  # NaN
    assert [epoch for name, epoch in saves if name == "best"] == [2]
    assert checkpoint.load(tmp_path / "tiny").meta["epoch"] == 2


@pytest.mark.slow  # trains
def test_out_of_memory_on_the_cpu_stops_with_advice(corpus, tmp_path, monkeypatch, capsys):
    real = Seq2Seq.forward

    def forward(self, *args, **kwargs):
        if self.training:
            raise torch.OutOfMemoryError("DefaultCPUAllocator: not enough memory")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Seq2Seq, "forward", forward)
    code = cli(tiny_argv(corpus, tmp_path, "train.epochs=1"))
    error_line(capsys, code, "out of memory on a batch of 64 sentences", "lower train.batch_size")


@pytest.fixture
def on_gpu(monkeypatch) -> list:
    """Make Updater._out_of_memory take its GPU branch (and count torch.cuda.empty_cache
    calls) on this CPU-only machine; everything else still runs on the CPU."""
    real = Updater._out_of_memory
    emptied = []

    def out_of_memory(self, batch):
        cpu, self.device = self.device, torch.device("cuda")
        try:
            return real(self, batch)
        finally:
            self.device = cpu

    monkeypatch.setattr(Updater, "_out_of_memory", out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    return emptied


@pytest.mark.slow  # trains
def test_out_of_gpu_memory_skips_the_batch_and_counts_it(corpus, tmp_path, on_gpu, caplog):
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1"))
    before = inject(trainer, {4: torch.OutOfMemoryError("CUDA out of memory")})
    with caplog.at_level(logging.WARNING, logger="seq2seq.training"):
        record = trainer.train()
    assert (record["oom_batches"], record["skipped_steps"], record["step"]) == (1, 0, 10)
    assert same_weights(before[4], before[5])
    assert on_gpu == [True]
    assert any("out of GPU memory on a batch of 64" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # trains
def test_out_of_gpu_memory_gives_up_after_the_limit(corpus, tmp_path, on_gpu, monkeypatch):
    monkeypatch.setattr(step_module, "MAX_OOM_BATCHES", 3)
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1"))
    inject(trainer, {s: torch.OutOfMemoryError("CUDA") for s in range(STEPS_PER_EPOCH)})
    with pytest.raises(TrainingDiverged, match="out of GPU memory on 4 batches; lower train.batch"):
        trainer.train()
    assert trainer.step == 3


# Changed configs and data.


@pytest.mark.slow  # trains
def test_resume_with_a_changed_config_lists_every_change(one_epoch, corpus):
    before = snapshot(one_epoch)
    overrides = ["resume=true", "train.epochs=2", "model.hidden_size=32", "train.lr=0.01"]
    with pytest.raises(ConfigError) as error:
        Trainer(tiny(corpus, one_epoch.parent, *overrides))
    assert "cannot resume with a changed config (model.hidden_size: 64 -> 32; train.lr: " in str(
        error.value
    )
    assert "0.001 -> 0.01); " in str(error.value) and "overwrite=true" in str(error.value)
    assert snapshot(one_epoch) == before


@pytest.mark.slow  # trains
def test_resume_anyway_with_another_model_shape_is_a_clean_error(corpus, tmp_path, capsys):
    train(tiny(corpus, tmp_path, "train.epochs=1"))
    overrides = ["resume=true", "overwrite=true", "train.epochs=2", "model.hidden_size=32"]
    error_line(capsys, cli(tiny_argv(corpus, tmp_path, *overrides)))


@pytest.mark.slow  # trains
def test_a_moved_run_directory_resumes(one_epoch, straight, corpus, tmp_path):
    shutil.copytree(one_epoch, tmp_path / "tiny")
    run = train(tiny(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_same_run(run, straight)


@pytest.mark.slow  # trains
def test_overwrite_replaces_a_run_with_another_config(corpus, tmp_path):
    run = train(tiny(corpus, tmp_path, "train.epochs=1"))
    train(tiny(corpus, tmp_path, "train.epochs=1", "overwrite=true", "model.hidden_size=32"))
    for name in ("best", "last"):
        assert checkpoint.load(run / name).config.model.hidden_size == 32
    assert len(records(run)) == 1


@pytest.mark.slow  # trains
def test_an_overwrite_stopped_early_leaves_no_best_of_the_replaced_run(
    corpus, tmp_path, monkeypatch
):
    run = train(tiny(corpus, tmp_path, "train.epochs=1"))
    signal_at_step(monkeypatch, signal.SIGTERM, 2)
    with pytest.raises(TrainingInterrupted):
        train(tiny(corpus, tmp_path, "train.epochs=1", "overwrite=true", "model.hidden_size=32"))
    assert checkpoint.load(run / "last").config.model.hidden_size == 32
    assert not (run / "best").exists()


@pytest.mark.slow  # trains
def test_resume_on_data_with_other_vocabularies_is_refused_before_training(tmp_path, capsys):
    data = tmp_path / "data"
    write_split(data, "train", 0, 640)
    write_split(data, "val", 0, 100)
    assert cli(tiny_argv(data, tmp_path, "train.epochs=1")) == 0
    capsys.readouterr()
    run = tmp_path / "tiny"
    write_split(data, "train", 640, 640)  # the corpus changed under the run
    before = snapshot(run)

    code = cli(tiny_argv(data, tmp_path, "train.epochs=2", "resume=true"))

    error_line(capsys, code, f"cannot resume: the data gives other vocabularies than {run}/last")
    assert snapshot(run) == before


@pytest.mark.parametrize("fault", ["not-utf8", "misaligned"])
def test_a_broken_training_file_is_one_line_from_the_cli(tmp_path, capsys, fault):
    data = tmp_path / "data"
    write_split(data, "val", 0, 10)
    de, en = "Ein Hund.\nZwei Katzen.\nGrüße.\n", "A dog.\nTwo cats.\nGreetings.\n"
    encoding = "latin-1" if fault == "not-utf8" else "utf-8"
    (data / "train.de").write_bytes(de.encode(encoding))
    (data / "train.en").write_text(en if fault == "not-utf8" else en[:-11], encoding="utf-8")
    argv = ["train", TINY, f"output_dir={tmp_path / 'runs'}", "data.corpus=files"]
    code = cli([*argv, f"data.dir={data}"])
    if fault == "not-utf8":
        error_line(capsys, code, f"{data / 'train.de'} line 3 is not valid UTF-8")
    else:
        error_line(capsys, code, f"{data / 'train.de'} has 3 lines but {data / 'train.en'} has 2")
    assert not (tmp_path / "runs").exists()


# Untrusted checkpoints.

UNSAFE_CALLS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "cPickle.loads",
    "_pickle.load",
    "_pickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "shelve.open",
    "yaml.unsafe_load",
    "yaml.full_load",
}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve"}
# Deliberate: test_checkpoint.py unpickles its own payload once, to prove that it works.
ALLOWED = {
    ("tests/test_checkpoint.py", "import pickle"),
    ("tests/test_checkpoint.py", 'pickle.loads(pickle.dumps({"weight": Plant(proof)}))'),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
            found += [(node.lineno, f"import {n}") for n in names if n in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            UNSAFE_MODULES
        ):
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS or name.startswith("dill."):
                found.append((node.lineno, name))
            elif name == "torch.load" and not _constant(_keyword(node, "weights_only"), True):
                found.append((node.lineno, "torch.load without weights_only=True"))
            elif name in ("np.load", "numpy.load") and not _constant(
                _keyword(node, "allow_pickle"), False
            ):
                found.append((node.lineno, f"{name} without allow_pickle=False"))
            elif name == "yaml.load" and "SafeLoader" not in _dotted(
                _keyword(node, "Loader") or ast.Name("")
            ):
                found.append((node.lineno, "yaml.load without a SafeLoader"))
    return found


def test_no_code_unpickles_or_loads_unsafely():
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    problems = []
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        relative = path.relative_to(ROOT).as_posix()
        for number, what in unsafe_loads(ast.parse(source, str(path))):
            if (relative, lines[number - 1].strip()) not in ALLOWED:
                problems.append(f"{relative}:{number}: {what}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def test_the_scan_finds_what_it_looks_for():
    source = (
        "import pickle\nimport torch, numpy as np\nfrom dill import loads\n"
        "torch.load(f)\ntorch.load(f, weights_only=False)\ntorch.load(f, weights_only=True)\n"
        "np.load(f)\nnp.load(f, allow_pickle=False)\npickle.loads(b)\njoblib.load(f)\n"
        "yaml.load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
    )
    assert [n for n, _ in unsafe_loads(ast.parse(source))] == [1, 3, 4, 5, 7, 9, 10, 11]


def payload(name: str, marker: Path) -> bytes:
    """What an attacker would put in place of a checkpoint file to create `marker` on a
    careless load: a torch pickle for the weights, a raw pickle for the optimizer state, a
    text (protocol 0) pickle for trainer.json, a python-object tag for config.yaml."""
    if name == "model.safetensors":
        buffer = io.BytesIO()
        torch.save({"weight": Plant(marker)}, buffer)
        return buffer.getvalue()
    if name == "optimizer.safetensors":
        return pickle.dumps({"0.exp_avg": Plant(marker)})
    if name == "trainer.json":
        return pickle.dumps(Plant(marker), protocol=0)
    return f"!!python/object/apply:os.mkdir [{marker}]\n".encode()


@pytest.fixture(scope="module")
def resumable(corpus, tmp_path_factory) -> Path:
    """A run whose last/ files the tests below replace, and put back."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("resumable"), "train.epochs=1"))


@contextlib.contextmanager
def replaced(path: Path, content: bytes):
    original = path.read_bytes()
    path.write_bytes(content)
    try:
        yield
    finally:
        path.write_bytes(original)


LAST_FILES = ["model.safetensors", "optimizer.safetensors", "trainer.json", "config.yaml"]


# How each file of last/ refuses a payload, and the fix its message names.
REFUSALS = {
    "model.safetensors": "is not a readable safetensors file",
    "optimizer.safetensors": "is not a readable safetensors file",
    "trainer.json": "is unreadable",
    "config.yaml": "is unusable",
}


@pytest.mark.slow  # trains
@pytest.mark.parametrize("name", LAST_FILES)
def test_malicious_files_in_last_never_run_on_resume(resumable, corpus, tmp_path, name):
    marker = tmp_path / "marker"
    with (
        replaced(resumable / "last" / name, payload(name, marker)),
        pytest.raises(CheckpointError) as error,
    ):
        Trainer(tiny(corpus, resumable.parent, "train.epochs=2", "resume=true"))
    assert str(error.value).startswith(f"{resumable / 'last'}/{name} {REFUSALS[name]}")
    assert not marker.exists()


@pytest.mark.slow  # trains
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.safetensors", None),
        ("trainer.json", None),
        ("trainer.json", b"[1, 2"),
        ("config.yaml", None),
        ("optimizer.safetensors", None),
        ("trainer.json", b"{}"),
    ],
    ids=["model", "trainer-pickle", "trainer-cut", "config", "optimizer", "trainer-empty"],
)
def test_a_foreign_file_in_last_is_refused_in_one_line(
    resumable, corpus, tmp_path, capsys, name, content
):
    content = payload(name, tmp_path / "marker") if content is None else content
    with replaced(resumable / "last" / name, content):
        code = cli(tiny_argv(corpus, resumable.parent, "train.epochs=2", "resume=true"))
    error_line(capsys, code, f"{resumable / 'last'}/{name}")


def test_a_config_file_that_is_not_yaml_is_one_line(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train:\n  epochs: [1\n")
    error_line(capsys, cli(["train", tmp_path / "broken.yaml"]), "is not valid YAML")


# The golden checkpoint: format version 1, translated as recorded.


def translate_golden(capsys, *options) -> str:
    code = cli(["translate", GOLDEN, "--input", GOLDEN_DE, "--device", "cpu", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_the_golden_checkpoint_translates_as_recorded(capsys):
    expected = (ROOT / "tests" / "data" / "golden.greedy.en").read_text(encoding="utf-8")
    assert translate_golden(capsys) == expected
    # A sentence's translation does not depend on the batch it is decoded in.
    assert translate_golden(capsys, "--batch-size", "1") == expected


def test_the_golden_checkpoint_beam_search_n_best_as_recorded(capsys):
    expected = (ROOT / "tests" / "data" / "golden.beam3.nbest").read_text(encoding="utf-8")
    assert translate_golden(capsys, "--beam-size", "3", "--n-best", "2") == expected


def test_a_later_format_version_is_refused_in_one_line(tmp_path, capsys):
    shutil.copytree(GOLDEN, tmp_path / "golden")
    meta = json.loads((GOLDEN / "meta.json").read_text())
    (tmp_path / "golden" / "meta.json").write_text(json.dumps({**meta, "format_version": 2}))
    code = cli(["translate", tmp_path / "golden", "Ein Mann."])
    error_line(capsys, code, "checkpoint format version 2", "reads version 1")


# Device placement: saving writes tensors through .cpu(), and load(device="cpu") must put every
# tensor on the CPU. Without a GPU, a checkpoint written from GPU tensors cannot be made here;
# the CUDA test below runs only where one exists.


def test_load_on_the_cpu_puts_every_tensor_there():
    for device in ("cpu", torch.device("cpu")):
        model = checkpoint.load(GOLDEN, device).model
        tensors = [*model.parameters(), *model.buffers()]
        assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_non_contiguous_weights_are_saved_and_load_the_same(tmp_path):
    ckpt = checkpoint.load(GOLDEN)
    weight = ckpt.model.decoder.output.weight
    transposed = weight.detach().t().contiguous().t()  # same values, column-major storage
    assert not transposed.is_contiguous()
    ckpt.model.decoder.output.weight = torch.nn.Parameter(transposed)
    checkpoint.save(tmp_path / "c", ckpt.model, ckpt.config, (ckpt.src_vocab, ckpt.tgt_vocab), {})
    assert torch.equal(checkpoint.load(tmp_path / "c").model.decoder.output.weight, weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_checkpoint_saved_from_the_gpu_loads_on_the_cpu(tmp_path):
    ckpt = checkpoint.load(GOLDEN)
    on_gpu = checkpoint.load(GOLDEN, "cuda").model
    checkpoint.save(tmp_path / "c", on_gpu, ckpt.config, (ckpt.src_vocab, ckpt.tgt_vocab), {})
    loaded = checkpoint.load(tmp_path / "c", "cpu").model
    assert all(t.device.type == "cpu" for t in loaded.parameters())
    for name, tensor in ckpt.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


# Hostile translation input, on the golden checkpoint.


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(checkpoint.load(GOLDEN), torch.device("cpu"))


def assert_one_clean_line_each(lines: list[str], outputs: list[str]) -> None:
    assert len(outputs) == len(lines)
    assert all(isinstance(out, str) and "\n" not in out and "\r" not in out for out in outputs)


def test_lines_without_text_translate_to_empty_lines(translator):
    lines = ["", " ", "\t", "\u3000", "\r", " \t \r"]
    assert translator.translate(lines) == [""] * len(lines)
    assert translator.translate(["Ein Mann.", "", "Ein Mann."])[1] == ""


def test_a_very_long_line_is_truncated_with_a_warning(translator, caplog):
    words = ("ein mann sitzt auf einer bank . " * 800).split()[:5000]
    assert len(words) == 5000
    with caplog.at_level(logging.WARNING, logger="seq2seq.translate"):
        outputs = translator.translate([" ".join(words), "Ein Mann."])
    assert_one_clean_line_each(["long", "short"], outputs)
    assert any("data.max_length=1000" in r.getMessage() for r in caplog.records)
    assert outputs[0] == translator.translate([" ".join(words[:1000])])[0]


def test_unknown_scripts_and_invisible_characters_give_one_line_each(translator):
    lines = [
        "Ein Mann \U0001f600 sitzt \U0001f468\u200d\U0001f469\u200d\U0001f467 auf der Bank.",
        "一个男人坐在长凳上。",
        "رجل يجلس على مقعد",
        "\u202eEin Mann\u202c sitzt\u200f auf\u200e einer Bank.",  # bidi controls and marks
        "Ein\u200bMann\u200d\u2060sitzt\ufeff.",
        "😀",
        "\U0010ffff\ue000",  # private use
        "e\u0301\u0301\u0301",  # stacked combining marks
    ]
    outputs = translator.translate(lines)
    assert_one_clean_line_each(lines, outputs)
    assert all(outputs)


def test_nfc_and_nfd_input_translate_alike(translator):
    text = "Zwei Männer gehen über die Straße, Jürgen läuft."
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert translator.translate([nfd]) == translator.translate([text])


# str.splitlines() would also split at \x0b \x0c \x1c \x1d \x1e \x85 \u2028 \u2029.
CONTROL_LINES = [
    "Ein Mann sitzt auf einer Bank.\r",
    "Zwei\x00Hunde\x1b[31m spielen\x7f im Schnee.",
    "Eine Frau\u2028liest\x85ein Buch.\r",
    "\x0b\x0c\x1c\x1d\x1e",
    "Kinder\u2029laufen\x07 am Strand entlang.",
    "\r",
    "",
    "Ein\tMann\x08.",
]


def translate_file(tmp_path, capsys, *options) -> list[str]:
    (tmp_path / "in.de").write_bytes("\n".join(CONTROL_LINES).encode())  # no final newline
    code = cli(["translate", GOLDEN, "--input", tmp_path / "in.de", "--device", "cpu", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "\r" not in captured.out
    out = captured.out.split("\n")
    assert out.pop() == ""
    return out


def test_control_characters_and_crlf_give_one_output_line_per_input_line(
    translator, tmp_path, capsys
):
    out = translate_file(tmp_path, capsys)
    assert out == translator.translate([line.removesuffix("\r") for line in CONTROL_LINES])
    golden = (ROOT / "tests" / "data" / "golden.greedy.en").read_text(encoding="utf-8")
    assert out[0] == golden.splitlines()[0]  # the same sentence without the '\r'
    assert out[5:7] == ["", ""]


def test_control_characters_give_n_best_lines_per_input_line(tmp_path, capsys):
    out = translate_file(tmp_path, capsys, "--beam-size", "2", "--n-best", "2")
    numbers = [int(line.split(" ||| ")[0]) for line in out]
    assert numbers == [i for i in range(len(CONTROL_LINES)) for _ in range(2)]
