"""Each config key is declared once, with a help text and, if it is a number, its range; the
configuration reference is written from those declarations (tests/test_docs.py checks the built
page against the parser)."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

import seq2seq.config as config
from seq2seq.config import MODEL_CONFIGS, Config, ConfigError, kinds, load_config

SECTIONS = [("", Config), ("data.", config.DataConfig), ("train.", config.TrainConfig)]
SECTIONS += [("model.", cls) for cls in MODEL_CONFIGS.values()]


def declared_keys() -> list:
    """pytest params (dotted key, field, type) of every key, sections themselves left out; a
    model key is declared once per model type that has it, so its id names the type."""
    keys = []
    for prefix, cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(field.default_factory):
                name = f"{prefix}{field.name}"
                label = f"{name}[{cls.__name__}]" if prefix == "model." else name
                keys.append(pytest.param(name, field, hints[field.name], id=label))
    return keys


def is_numeric(kind: typing.Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType, tuple):
        return any(is_numeric(option) for option in typing.get_args(kind))
    return kind in (int, float)


KEYS = declared_keys()


@pytest.mark.parametrize(("name", "field", "kind"), KEYS)
def test_every_key_has_a_help_text(name, field, kind):
    assert field.metadata["rule"].help.strip(), f"{name} is declared without a help text"


@pytest.mark.parametrize(("name", "field", "kind"), [k for k in KEYS if is_numeric(k.values[2])])
def test_every_numeric_key_has_a_range(name, field, kind):
    rule = field.metadata["rule"]
    assert rule.check is not None and rule.must, f"{name} is a number without a range"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_length_a=-1", "train.max_length_a=-1.0 must be 0 or more"),
        ("train.max_length_b=-5", "train.max_length_b=-5 must be 0 or more"),
        ("train.halve_after_epochs=-1", "train.halve_after_epochs=-1.0 must be 0 or more"),
        ("seed=-1", "seed=-1 must be in [0, 4294967295]"),
        ("seed=4294967296", "seed=4294967296 must be in [0, 4294967295]"),
        ("model.type=transformer model.heads=0", "model.heads=0 must be at least 1"),
    ],
)
def test_numbers_that_once_failed_later_are_refused_at_load(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, override.split())
    assert message in str(error.value)


def test_a_key_shared_by_model_types_has_one_type():
    # An override is read by its key's type before model.type is known.
    types_by_key: dict[str, set] = {}
    for cls in MODEL_CONFIGS.values():
        for name, kind in typing.get_type_hints(cls).items():
            if name != "type":
                types_by_key.setdefault(name, set()).add(kind)
    assert {name: kinds for name, kinds in types_by_key.items() if len(kinds) > 1} == {}


def test_every_model_type_loads_at_its_defaults():
    for name, cls in MODEL_CONFIGS.items():
        assert load_config(None, [f"model.type={name}"]).model == cls()


def test_the_reference_has_a_table_per_section_and_model_type():
    headings = [line for line in config.reference_markdown().splitlines() if line[:3] == "## "]
    assert headings == [
        "## Top level",
        "## `data`",
        "## `model` (`model.type: lstm`)",
        "## `model` (`model.type: attention`)",
        "## `model` (`model.type: transformer`)",
        "## `train`",
    ]


def test_a_list_key_of_any_length_reads_yaml_lists_and_override_text():
    # For list-valued keys such as several training corpora (`str | tuple[str, ...]`).
    corpora = str | tuple[str, ...]
    assert kinds.parse_text("train", [corpora]) == "train"
    assert kinds.coerce(kinds.parse_text("[a, b/c]", [corpora]), corpora) == (True, ("a", "b/c"))
    assert kinds.coerce([], tuple[str, ...])[0] is False
    assert kinds.coerce([0.5, "x"], tuple[float, ...])[0] is False
    assert kinds.describe(tuple[float, ...] | None) == "a non-empty list of numbers or null"


def test_an_empty_string_is_refused():
    with pytest.raises(ConfigError, match="data.src_lang='' is not a non-empty string"):
        load_config(None, ["data.src_lang="])
