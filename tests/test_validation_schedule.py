"""What validation measures each epoch: `train.bleu_from_epoch` leaves translation out of the
first epochs and `train.free_running_validation` the free-running loss. Neither changes what
is trained, and patience counts from the first epoch that measures BLEU."""

from __future__ import annotations

import pytest
from conftest import isolated
from helpers import assert_same_tensors, records, tiny, train

from seq2seq.config import load_config
from seq2seq.config.load import ConfigError
from seq2seq.training.report import console_line


@pytest.mark.slow
def test_skipping_validation_figures_trains_the_same_weights(corpus, straight, tmp_path):
    overrides = ("train.epochs=2", "train.bleu_from_epoch=2", "train.free_running_validation=false")
    with isolated(tmp_path / "cache"):
        run = train(tiny(corpus, tmp_path, *overrides))
    assert_same_tensors(run / "last" / "model.safetensors", straight / "last" / "model.safetensors")
    first, second = records(run)
    expected = records(straight)
    assert first["val_bleu"] is None and first["val_bleu_tokenized"] is None
    assert first["val_chrf"] is None and first["val_free_loss"] is None
    assert first["val_loss"] == expected[0]["val_loss"]
    assert second["val_bleu"] == expected[1]["val_bleu"] and second["val_free_ppl"] is None
    assert "| free ppl       - | BLEU     - (tok     -) |" in console_line(first)


@pytest.mark.slow
def test_patience_counts_from_the_first_epoch_with_bleu(corpus, tmp_path):
    overrides = ("train.epochs=2", "train.bleu_from_epoch=2", "train.best_metric=val_bleu")
    with isolated(tmp_path / "cache"):
        run = train(tiny(corpus, tmp_path, *overrides, "train.patience=1"))
    log = records(run)
    assert [record["epoch"] for record in log] == [1, 2]  # epoch 1 measured no BLEU to wait on
    assert log[0]["best"] is False and log[1]["best"] is True
    assert (run / "best").is_dir()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.best_metric=val_free_loss", "train.free_running_validation=false"],
            "train.best_metric=val_free_loss needs train.free_running_validation=true",
        ),
        (
            ["train.best_metric=val_bleu", "train.epochs=3", "train.bleu_from_epoch=4"],
            "train.bleu_from_epoch=4 is after the last epoch (3)",
        ),
    ],
)
def test_a_metric_that_would_never_be_measured_is_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [f"output_dir={tmp_path}", *overrides])


@pytest.mark.slow
def test_a_run_may_resume_with_another_validation_schedule(corpus, one_epoch, tmp_path):
    import shutil

    shutil.copytree(one_epoch, tmp_path / one_epoch.name)
    overrides = ("train.epochs=2", "resume=true", "train.free_running_validation=false")
    with isolated(tmp_path / "cache"):
        run = train(tiny(corpus, tmp_path, *overrides, "train.bleu_from_epoch=2"))
    assert [record["epoch"] for record in records(run)] == [1, 2]
    assert records(run)[-1]["val_free_loss"] is None
