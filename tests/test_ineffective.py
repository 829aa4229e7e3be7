"""Settings that do nothing: a key set where it has no effect is warned of, in one line, when
the config loads; a key that has its effect, or a config read back from a run, is not."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from conftest import CONFIGS

from seq2seq.config import MODEL_CONFIGS, Config, config_from_dict, config_to_dict, load_config
from seq2seq.config.keys import rule_of
from seq2seq.config.kinds import coerce
from seq2seq.config.load import declared_types


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "overrides, said",
    [
        (
            ["model.type=transformer", "model.share_embeddings=true"],
            "model.share_embeddings=true (it applies with data.joint_vocab=true only; here "
            "data.joint_vocab=false)",
        ),
        (
            ["data.vocab_size=100"],
            "data.vocab_size=100 (it applies with data.tokenizer=sentencepiece",
        ),
        (["data.tokenizer=sentencepiece", "data.min_freq=3"], "data.min_freq=3 (it applies with"),
        (["train.warmup_steps=10"], "train.warmup_steps=10 (it applies with train.lr_schedule="),
        (["train.halve_every_epochs=1"], "train.halve_every_epochs=1.0 (it applies with"),
        (["train.optimizer=sgd", "train.adam_betas=0.9,0.98"], "train.adam_betas=[0.9, 0.98]"),
        (["model.type=attention", "model.input_feeding=false"], "model.input_feeding=false"),
        (["device=cuda", "model.cpu_fast_path=false"], "here device=cuda"),
        (["resume=true", "overwrite=true"], "overwrite=true (it applies with resume=false only"),
        (["data.train_weights=[2]"], "data.train_weights (it applies with several corpora"),
        (["data.holdout_by=en"], "data.holdout_by=en (it applies with data.holdout not null only"),
        (["data.holdout=0.1,0.1", "data.valid=dev"], "data.valid=dev (it applies with"),
    ],
)
def test_a_key_set_where_it_has_no_effect_is_warned_of_in_one_line(caplog, overrides, said):
    load_config(None, overrides)
    [line] = warnings(caplog)
    assert line.startswith("settings with no effect in this config: ") and said in line, line
    assert "\n" not in line


def test_every_such_key_is_named_in_the_one_line(caplog, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model:\n  type: transformer\n  share_embeddings: true\ntrain:\n  warmup_steps: 9\n"
    )
    load_config(path)
    [line] = warnings(caplog)
    assert "model.share_embeddings=true" in line and "train.warmup_steps=9" in line


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.type=transformer", "model.share_embeddings=true", "data.joint_vocab=true"],
        ["data.tokenizer=sentencepiece", "data.vocab_size=100"],
        ["train.lr_schedule=inverse_sqrt", "train.warmup_steps=10"],
        ["model.type=attention", "model.style=luong", "model.input_feeding=false"],
        ["data.train=[a, b]", "data.train_weights=[1, 2]"],
        ["overwrite=true"],
        [],
    ],
)
def test_a_key_that_has_its_effect_is_not_warned_of(caplog, overrides):
    load_config(None, overrides)
    assert warnings(caplog) == []


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_sets_only_keys_that_do_something(caplog, path):
    load_config(path)
    assert warnings(caplog) == []


def test_a_config_read_back_from_a_run_is_not_warned_of(caplog):
    """A run's config.yaml holds every key; only what a user writes is checked."""
    config = load_config(CONFIGS / "transformer.yaml", ["data.tokenizer=sentencepiece"])
    caplog.clear()
    config_from_dict(config_to_dict(config))
    assert warnings(caplog) == []


def test_every_condition_names_a_declared_key_and_a_value_it_may_hold():
    """A misspelled condition would never hold, and warn of a key that works."""
    fields = dataclasses.fields(Config)
    sections = [f.default_factory for f in fields if dataclasses.is_dataclass(f.default_factory)]
    for cls in [Config, *sections, *MODEL_CONFIGS.values()]:
        for field in dataclasses.fields(cls):
            applies = rule_of(field).applies
            if applies is None:
                continue
            kinds = declared_types(applies.other)
            assert kinds, f"{field.name}: {applies.other} is not a key"
            for value in applies.values:
                assert any(coerce(value, kind)[0] for kind in kinds), (applies.other, value)
