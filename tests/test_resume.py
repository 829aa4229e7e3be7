"""Resuming: exact in the middle of an epoch and at its end, early stopping and kept
checkpoints across stops, the schedule, and what a changed config or corpus is refused."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_error, cli, isolated
from helpers import (
    STEPS_PER_EPOCH,
    TINY,
    assert_same_run,
    assert_same_tensors,
    records,
    signal_at_step,
    snapshot,
    tiny,
    tiny_argv,
    train,
    write_split,
)
from safetensors.torch import load_file

from seq2seq import checkpoint
from seq2seq.config import ConfigError, DataConfig
from seq2seq.errors import TrainingInterrupted
from seq2seq.training import Trainer
from seq2seq.training import loop as loop_module
from seq2seq.training.state import check_resumable

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


# A new value for each data key, valid with the tiny corpus (src_lang=en reads the English
# side twice). A data key added to DataConfig fails the test below until it is given one here.
DATA_ALTERNATIVES = {
    **{"corpus": "multi30k", "dir": "/elsewhere", "src_lang": "en", "tgt_lang": "de"},
    **{"train": "val", "train_weights": (1.0,), "valid": "train", "test": "val"},
    **{"columns": ("de", "en"), "holdout": (0.1, 0.1), "holdout_by": "en"},
    **{"tokenizer": "sentencepiece", "lowercase": False, "reverse_source": False},
    **{"joint_vocab": True, "min_freq": 3, "max_size": 100, "sp_model_type": "bpe"},
    **{"vocab_size": 100, "sp_pretokenize": True, "max_length": 50, "train_limit": 10},
    **{"num_workers": 1, "filter_empty": False, "filter_long": True},
    **{"max_length_ratio": 2.0, "filter_duplicates": True},
}


@pytest.mark.parametrize(
    ("tokenizer", "resumable"),
    [
        ("spacy", {"num_workers", "sp_model_type", "vocab_size", "sp_pretokenize"}),
        ("sentencepiece", {"num_workers", "min_freq", "max_size"}),
    ],
)
def test_a_data_key_may_change_on_resume_only_where_it_changes_no_training_data(
    corpus, tmp_path, tokenizer, resumable
):
    """Resumable: the data keys that the prepared corpus's key does not hold and the run does
    not read (the number of workers; the other tokenizer's settings, which do nothing)."""
    assert set(DATA_ALTERNATIVES) == {field.name for field in dataclasses.fields(DataConfig)}
    saved = tiny(corpus, tmp_path, f"data.tokenizer={tokenizer}")
    last = SimpleNamespace(config=saved, src_vocab=None, tgt_vocab=None, path=tmp_path / "last")
    found = set()
    for key, value in DATA_ALTERNATIVES.items():
        if getattr(saved.data, key) == value:
            continue  # the tokenizer, in the SentencePiece run
        config = dataclasses.replace(saved, data=dataclasses.replace(saved.data, **{key: value}))
        try:
            check_resumable(last, config, (None, None))
            found.add(key)
        except ConfigError as error:
            assert f"cannot resume with a changed config (data.{key}: " in str(error)
    assert found == resumable


@pytest.mark.slow  # trains
def test_a_run_resumes_with_another_number_of_workers(one_epoch, straight, corpus, tmp_path):
    run = shutil.copytree(one_epoch, tmp_path / "tiny")
    train(tiny(corpus, tmp_path, "train.epochs=2", "data.num_workers=1", "resume=true"))
    assert_same_run(run, straight)


@pytest.mark.slow  # trains
def test_resume_anyway_with_another_model_shape_is_a_clean_error(corpus, tmp_path, capsys):
    train(tiny(corpus, tmp_path, "train.epochs=1"))
    overrides = ["resume=true", "overwrite=true", "train.epochs=2", "model.hidden_size=32"]
    assert_error(capsys, cli(tiny_argv(corpus, tmp_path, *overrides)))


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

    assert_error(capsys, code, f"cannot resume: the data gives other vocabularies than {run}/last")
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
        assert_error(capsys, code, f"{data / 'train.de'} line 3 is not valid UTF-8")
    else:
        assert_error(capsys, code, f"{data / 'train.de'} has 3 lines but {data / 'train.en'} has 2")
    assert not (tmp_path / "runs").exists()
