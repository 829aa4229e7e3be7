"""Config loading: shipped recipes load, overrides are typed, and bad input is refused clearly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from seq2seq.config import (
    Config,
    ConfigError,
    DataConfig,
    RecurrentConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted([*CONFIGS.rglob("*.yaml"), *CONFIGS.rglob("*.yml")])
TUTORIAL = CONFIGS / "tutorial.yaml"


def test_the_known_configs_are_shipped():
    assert {"tutorial", "tiny", "sutskever2014"} <= {path.stem for path in SHIPPED}


def dotted(raw: dict, prefix: str = ""):
    """(dotted key, value) of every key a YAML mapping sets."""
    for key, value in raw.items():
        if isinstance(value, dict):
            yield from dotted(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(CONFIGS)))
def test_every_shipped_config_loads_holding_every_value_it_sets(path):
    config = load_config(path)
    held = config_to_dict(config)
    for key, value in dotted(yaml.safe_load(path.read_text(encoding="utf-8")) or {}):
        node = held
        for part in key.split("."):
            node = node[part]
        assert (list(node) if isinstance(node, tuple) else node) == value, key
    assert config_from_dict(held) == config


def test_shipped_configs_hold_their_recipes():
    tutorial = load_config(CONFIGS / "tutorial.yaml")
    assert (tutorial.model.hidden_size, tutorial.model.num_layers) == (512, 2)
    assert tutorial.train.best_metric == "val_free_loss"
    assert tutorial.data.reverse_source and tutorial.data.min_freq == 2

    paper = load_config(CONFIGS / "sutskever2014.yaml")
    assert (paper.model.hidden_size, paper.model.num_layers) == (1000, 4)
    assert (paper.train.optimizer, paper.train.lr, paper.train.lr_schedule) == (
        "sgd",
        0.7,
        "halving",
    )
    assert paper.train.epochs == 7.5

    tiny = load_config(CONFIGS / "tiny.yaml")
    assert tiny.data.train_limit == 2000
    assert tiny.model.hidden_size == 64


def test_no_file_and_no_overrides_give_the_defaults():
    assert load_config(None) == Config()


def test_an_empty_yaml_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_dotted_overrides_apply_on_top_of_the_file():
    config = load_config(
        TUTORIAL, ["train.epochs=2", "model.hidden_size=256", "data.max_size=null", "name=mine"]
    )
    assert config.train.epochs == 2.0 and isinstance(config.train.epochs, float)
    assert config.model.hidden_size == 256
    assert config.data.max_size is None
    assert config.name == "mine"
    # Keys not overridden keep the file's values, not the defaults.
    assert config.train.best_metric == "val_free_loss"
    assert config.model.embedding_size == 256


def test_overrides_parse_yaml_values():
    config = load_config(
        None,
        [
            "data.max_size=5000",
            "resume=true",
            "data.dir=/data/m30k",
            "train.lr=0.5",
            "data.max_size=",
        ],
    )
    assert config.resume is True
    assert config.data.dir == "/data/m30k"
    assert config.train.lr == 0.5
    # The later override wins; an empty value is null.
    assert config.data.max_size is None
    assert load_config(None, ["data.max_size=5000"]).data.max_size == 5000


def test_overrides_keep_spaces_around_the_key_out():
    assert load_config(None, [" model.num_layers =3"]).model.num_layers == 3


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "override, named",
    [
        ("model.hidden_size=256.5", "model.hidden_size=256.5 is not an integer"),
        ("model.hidden_size=big", "model.hidden_size=big is not an integer"),
        ("model.num_layers=true", "model.num_layers=true is not an integer"),
        ("train.epochs=yes", "train.epochs=yes is not a number"),
        ("train.epochs=nan", "train.epochs=nan is not a number"),
        ("train.lr=inf", "train.lr=inf is not a number"),
        ("data.lowercase=1", "data.lowercase=1 is not true or false"),
        ("data.lowercase=yes", "data.lowercase=yes is not true or false"),
        ("data.max_size=many", "data.max_size=many is not an integer or null"),
    ],
)
def test_values_of_the_wrong_type_are_refused(override, named):
    with pytest.raises(ConfigError, match="invalid config") as error:
        load_config(None, [override])
    assert named in str(error.value)


def test_a_literal_outside_its_choices_names_the_choices():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.cell=rnn"])
    assert "model.cell=rnn is not one of lstm, gru" in str(error.value)

    with pytest.raises(ConfigError) as error:
        load_config(None, ["device=tpu"])
    assert "device=tpu is not one of auto, cpu, cuda, mps" in str(error.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dropout=1.5", "model.dropout=1.5 must be in [0, 1)"),
        ("model.dropout=-0.1", "model.dropout=-0.1 must be in [0, 1)"),
        ("train.batch_size=0", "train.batch_size=0 must be at least 1"),
        ("data.min_freq=0", "data.min_freq=0 must be at least 1"),
        ("data.max_size=0", "data.max_size=0 must be more than 4 or null"),
        ("train.lr=0", "train.lr=0.0 must be positive"),
        ("train.teacher_forcing_ratio=1.01", "train.teacher_forcing_ratio=1.01 must be in [0, 1]"),
        ("name=a/b", "name='a/b' must be one plain path component"),
        ("data.src_lang=en", "data.src_lang and data.tgt_lang are both 'en'"),
    ],
)
def test_values_out_of_range_are_refused(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_range_edges_are_accepted():
    config = load_config(
        None, ["model.dropout=0", "train.teacher_forcing_ratio=1", "data.min_freq=1"]
    )
    assert (config.model.dropout, config.train.teacher_forcing_ratio) == (0.0, 1.0)


def test_an_unknown_top_level_key_is_refused_with_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["epochs=3"])
    message = str(error.value)
    assert "unknown key epochs" in message
    valid = message.split("valid keys: ")[1]
    for field in dataclasses.fields(Config):
        assert field.name in valid


def test_an_unknown_nested_key_is_refused_with_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.hiden_size=256"])
    message = str(error.value)
    assert "unknown key model.hiden_size" in message
    valid = message.split("valid keys: ")[1]
    for field in dataclasses.fields(RecurrentConfig):
        assert field.name in valid


def test_an_unknown_key_in_a_file_is_refused(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("data:\n  reverse_sorce: false\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "unknown key data.reverse_sorce" in str(error.value)
    for field in dataclasses.fields(DataConfig):
        assert field.name in str(error.value)


def test_a_section_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "flat.yaml"
    path.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="model must be a mapping, got 3"):
        load_config(path)


def test_an_override_below_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="override name.first: name is not a section"):
        load_config(TUTORIAL, ["name.first=x"])


def test_several_problems_are_reported_in_one_message():
    with pytest.raises(ConfigError) as error:
        load_config(
            None, ["epochs=3", "model.hiden_size=256", "model.cell=rnn", "train.batch_size=x"]
        )
    message = str(error.value)
    for problem in (
        "unknown key epochs",
        "unknown key model.hiden_size",
        "model.cell=rnn",
        "train.batch_size=x",
    ):
        assert problem in message
    assert message.count("invalid config") == 1


def test_several_range_problems_are_reported_in_one_message():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.dropout=1.5", "train.batch_size=0"])
    assert "model.dropout=1.5" in str(error.value)
    assert "train.batch_size=0" in str(error.value)


def test_type_and_range_problems_are_reported_together():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.cell=rnn", "model.dropout=1.5"])
    assert "model.cell=rnn" in str(error.value)
    assert "model.dropout=1.5" in str(error.value)


def test_a_learning_rate_in_exponent_notation_is_accepted():
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 0.001


@pytest.mark.parametrize("override", ["train.epochs", "train.epochs 2", "=2"])
def test_an_override_without_key_and_equals_is_refused(override):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert repr(override) in str(error.value)
    assert "key=value" in str(error.value)


@pytest.mark.parametrize("override", ["train.adam_betas=[0.9", "train.adam_betas=[0.9, x]"])
def test_a_list_override_that_is_not_a_list_of_numbers_is_refused(override):
    with pytest.raises(ConfigError, match="train.adam_betas=.* is not a list of 2 numbers"):
        load_config(None, [override])


def test_a_missing_config_file_is_refused(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "does not exist" in str(error.value)


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)


def test_invalid_yaml_is_refused(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  hidden_size: [1, 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"config file {path} is not valid YAML" in str(error.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Gr\u00fc\u00dfe\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


def test_a_yaml_list_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train.epochs: 2\n- model.cell: gru\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"config file {path} must hold a mapping" in str(error.value)


def test_each_model_type_has_its_own_keys_and_refuses_the_others():
    config = load_config(None, ["model.type=transformer", "model.d_model=64", "model.heads=4"])
    assert (config.model.type, config.model.d_model, config.model.heads) == ("transformer", 64, 4)
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.type=attention", "model.heads=4", "model.hiden=3"])
    message = str(error.value)
    assert (
        "unknown key model.heads for model.type=attention; it belongs to model.type=transformer"
        in message
    )
    assert "unknown key model.hiden for model.type=attention (valid keys: type, cell," in message
    with pytest.raises(
        ConfigError, match=r"model.type=gpt is not one of lstm, attention, transformer"
    ):
        load_config(None, ["model.type=gpt"])


def test_model_shapes_that_cannot_be_built_are_refused():
    with pytest.raises(ConfigError) as error:
        load_config(
            None,
            ["model.type=transformer", "model.d_model=30", "model.heads=4", "train.lr=0"],
        )
    assert "model.d_model=30 must be a multiple of model.heads=4" in str(error.value)
    assert "train.lr=0.0 must be positive" in str(error.value)
    with pytest.raises(ConfigError, match="model.hidden_size=15 must be even"):
        load_config(None, ["model.type=attention", "model.hidden_size=15"])


def test_a_rule_across_keys_waits_until_each_key_of_its_section_is_valid():
    # heads=0 once reached `d_model % heads` and raised ZeroDivisionError.
    with pytest.raises(ConfigError) as error:
        load_config(None, ["model.type=transformer", "model.d_model=30", "model.heads=0"])
    assert str(error.value) == "invalid config: model.heads=0 must be at least 1"
