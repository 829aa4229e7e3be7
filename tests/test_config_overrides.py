"""Dotted overrides are read as their key's type, reach sections left empty, and a run name is
one plain path component."""

from __future__ import annotations

import pytest

from seq2seq.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("data.src_lang=no", ("data", "src_lang"), "no"),  # Norwegian, not YAML 1.1's False
        ("data.tgt_lang=on", ("data", "tgt_lang"), "on"),
        ("name=2024", ("name",), "2024"),
        ("data.dir=@home", ("data", "dir"), "@home"),
        ("data.dir=null", ("data", "dir"), None),
        ("data.dir=", ("data", "dir"), None),
        ("train.epochs=3", ("train", "epochs"), 3.0),
        ("train.lr=1e-3", ("train", "lr"), 0.001),
        ("train.adam_betas=[0.9, 0.98]", ("train", "adam_betas"), (0.9, 0.98)),
        ("resume=True", ("resume",), True),
        ("overwrite=false", ("overwrite",), False),
        ("train.patience=~", ("train", "patience"), None),
    ],
)
def test_an_override_is_read_as_its_keys_type(override, key, value):
    config = load_config(None, [override])
    for part in key:
        config = getattr(config, part)
    assert config == value and type(config) is type(value)


def test_a_yaml_word_that_is_not_a_string_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: 2024\ndata:\n  src_lang: no\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "name=2024 is not a non-empty string (YAML reads" in message
    assert "data.src_lang=False is not a non-empty string" in message
    assert message.count("quote the value") == 2


@pytest.mark.parametrize("section", ["model", "data", "train"])
def test_an_override_reaches_a_section_whose_keys_are_all_commented_out(tmp_path, section):
    path = tmp_path / "run.yaml"
    path.write_text(f"{section}:\n  # hidden_size: 64\n")
    key = {"model": "hidden_size", "data": "min_freq", "train": "batch_size"}[section]
    config = load_config(path, [f"{section}.{key}=128"])
    assert getattr(getattr(config, section), key) == 128


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "a\\b", "C:x", "/abs", "a\nb"])
def test_a_run_name_that_is_not_one_plain_path_component_is_refused(name):
    with pytest.raises(ConfigError, match="must be one plain path component"):
        config_from_dict({"name": name})


def test_a_run_name_of_dot_dot_on_the_command_line_is_refused():
    # It made output_dir's parent the run directory, which overwrite=true then cleared.
    with pytest.raises(ConfigError) as error:
        load_config(None, ["name=..", "overwrite=true"])
    assert "name='..' must be one plain path component" in str(error.value)


@pytest.mark.parametrize("name", ["tiny", "run-2.b", "..x", "Grüße", "with space"])
def test_plain_run_names_are_accepted(name):
    assert load_config(None, [f"name={name}"]).run_dir.name == name


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("data.train=europarl,news", "train", ("europarl", "news")),
        ("data.train=europarl, news", "train", ("europarl", "news")),
        ("data.train=europarl", "train", "europarl"),
        ("data.train_weights=1,3", "train_weights", (1.0, 3.0)),
    ],
)
def test_a_list_may_be_written_without_brackets_that_a_shell_would_glob(override, key, value):
    """`data.train=[europarl,news]` unquoted is a glob in bash, and zsh refuses it."""
    config = load_config(None, ["data.train=[a, b]", override])
    assert getattr(config.data, key) == value


def test_a_list_without_brackets_has_no_empty_item():
    with pytest.raises(ConfigError, match="data.train=\\['europarl', ''\\] is not"):
        load_config(None, ["data.train=europarl,"])
