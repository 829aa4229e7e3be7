"""The learning-rate schedule and the config diff that guards resumes."""

from __future__ import annotations

import pytest
from conftest import CONFIGS

from seq2seq.config import config_to_dict, load_config
from seq2seq.train import config_diff, lr_factor


@pytest.mark.parametrize(
    ("epoch", "factor"),
    [(0.0, 1.0), (4.99, 1.0), (5.0, 0.5), (5.49, 0.5), (5.5, 0.25), (6.0, 0.125), (7.49, 1 / 32)],
)
def test_the_papers_schedule_halves_every_half_epoch_after_five(epoch, factor):
    config = load_config(CONFIGS / "sutskever2014.yaml")
    steps_per_epoch = 200
    assert lr_factor(config, round(epoch * steps_per_epoch), steps_per_epoch) == factor


def test_a_constant_schedule_never_changes():
    config = load_config(CONFIGS / "tutorial.yaml")
    assert {lr_factor(config, step, 10) for step in range(0, 200, 7)} == {1.0}


def test_config_diff_names_changes_but_not_where_the_run_lives():
    old = config_to_dict(load_config(CONFIGS / "tutorial.yaml"))
    new = config_to_dict(
        load_config(
            CONFIGS / "tutorial.yaml",
            ["train.lr=0.01", "train.epochs=20", "name=moved", "output_dir=elsewhere"],
        )
    )
    assert config_diff(old, new) == ["train.lr: 0.001 -> 0.01"]
