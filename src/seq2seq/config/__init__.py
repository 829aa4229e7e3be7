"""Typed run configuration: frozen dataclasses, YAML loading and dotted overrides.

Every key is declared once, in `sections.py` (the model section's in `model.py`), with `key()`:
its annotation is its type, and `key()` carries its default, its help text and what values are
valid. Loading (`load.py`) checks each value against that declaration and reports every problem
at once; an override's text is read as the key's type (`data.src_lang=no` stays the string
"no"); the configuration reference (`reference.py`) is written from the same declarations.
A new key is one line:

    patience: int | None = key(None, "Stop after N epochs without progress (null: never).", low=1)

Numbers take bounds (`low`/`high` inclusive, `above`/`below` exclusive), each checked at load
time, so every numeric key has some (a test says so); a choice is a `Literal[...]` type; a list
is `tuple[float, float]` (fixed length) or `tuple[str, ...]` (any length); any other rule gives
`check=` a predicate and `must=` the words that finish "KEY=VALUE must be ...". A rule across
keys of one section goes in that section's `problems()`.
"""

from seq2seq.config.diff import changed_keys, config_diff
from seq2seq.config.keys import key, section
from seq2seq.config.load import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    one_line,
)
from seq2seq.config.model import (
    MODEL_CONFIGS,
    AttentionConfig,
    ModelConfig,
    RecurrentConfig,
    TransformerConfig,
)
from seq2seq.config.reference import reference_markdown
from seq2seq.config.sections import Config, DataConfig, TrainConfig

__all__ = [
    "MODEL_CONFIGS",
    "AttentionConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RecurrentConfig",
    "TrainConfig",
    "TransformerConfig",
    "changed_keys",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "key",
    "load_config",
    "one_line",
    "reference_markdown",
    "section",
]
