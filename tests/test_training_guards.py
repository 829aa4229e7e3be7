"""Guards: non-finite losses skip the update and, in a row, stop training in one line; out of
memory stops on the CPU with advice and skips the batch on a GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import assert_error, cli
from helpers import (
    INF,
    NAN,
    STEPS_PER_EPOCH,
    inject,
    records,
    same_weights,
    tiny,
    tiny_argv,
)

from seq2seq import checkpoint
from seq2seq.errors import TrainingDiverged
from seq2seq.models import Seq2Seq
from seq2seq.training import Trainer
from seq2seq.training import loop as loop_module
from seq2seq.training.loop import MAX_BAD_STEPS_IN_ROW

# Non-finite losses and out of memory.


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
    assert_error(
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
    assert_error(capsys, code, "out of memory on a batch of 64 sentences", "lower train.batch_size")


@pytest.mark.slow  # trains
def test_out_of_memory_names_the_micro_batch_it_struck(corpus, tmp_path, monkeypatch, capsys):
    """With accumulation, the size in the advice is the micro-batch being computed, not the
    update's last one."""
    real_batch, sizes = Trainer._batch, []

    def batch(self, indices):
        collated = real_batch(self, indices)
        if self.step == 0:  # the micro-batches of the first update, collated before any forward
            sizes.append(collated.src.size(0))
        return collated

    def forward(self, *args, **kwargs):
        raise torch.OutOfMemoryError("DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(Trainer, "_batch", batch)
    monkeypatch.setattr(Seq2Seq, "forward", forward)
    argv = ["train.epochs=1", "train.batch_unit=tokens", "train.batch_size=300"]
    code = cli(tiny_argv(corpus, tmp_path, *argv, "train.accumulate=3"))
    first, *_, last = sizes
    assert first != last  # else the test could not tell them apart
    assert_error(capsys, code, f"out of memory on a batch of {first} sentences", "lower train")


@pytest.fixture
def on_gpu(monkeypatch) -> list:
    """Make Trainer._skip_out_of_memory take its GPU branch (and count torch.cuda.empty_cache
    calls) on this CPU-only machine; everything else still runs on the CPU."""
    real = Trainer._skip_out_of_memory
    emptied = []

    def out_of_memory(self, batch):
        cpu, self.device = self.device, torch.device("cuda")
        try:
            return real(self, batch)
        finally:
            self.device = cpu

    monkeypatch.setattr(Trainer, "_skip_out_of_memory", out_of_memory)
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
    monkeypatch.setattr(loop_module, "MAX_OOM_BATCHES", 3)
    trainer = Trainer(tiny(corpus, tmp_path, "train.epochs=1"))
    inject(trainer, {s: torch.OutOfMemoryError("CUDA") for s in range(STEPS_PER_EPOCH)})
    with pytest.raises(TrainingDiverged, match="out of GPU memory on 4 batches; lower train.batch"):
        trainer.train()
    assert trainer.step == 3
