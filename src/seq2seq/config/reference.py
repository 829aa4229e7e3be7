"""The configuration reference, in Markdown, written from the key declarations."""

from __future__ import annotations

import dataclasses
import typing

from seq2seq.config.keys import rule_of, spell
from seq2seq.config.kinds import describe, requirement
from seq2seq.config.model import MODEL_CONFIGS
from seq2seq.config.sections import Config

INTRODUCTION = """\
Generated from the key declarations in `seq2seq/config/`. A YAML file sets keys
section by section; `seq2seq train CONFIG KEY=VALUE ...` overrides any key by its dotted name,
e.g. `train.epochs=2 model.hidden_size=256`, each value read as its key's type. A config with an
unknown key or a value outside its range is refused before anything runs, naming every problem.
"""


def reference_markdown() -> str:
    """The whole page: the top-level keys, then one table per section and per model type."""
    lines = ["# Configuration reference", "", INTRODUCTION]
    lines += _table("Top level", Config.__doc__, "", Config)
    for field in dataclasses.fields(Config):
        if field.name == "model":
            for name, cls in MODEL_CONFIGS.items():
                lines += _table(f"`model` (`model.type: {name}`)", cls.__doc__, "model.", cls)
        elif dataclasses.is_dataclass(field.default_factory):
            cls = field.default_factory
            lines += _table(f"`{field.name}`", cls.__doc__, f"{field.name}.", cls)
    return "\n".join(lines)


def _table(title: str, doc: str | None, prefix: str, cls: type) -> list[str]:
    lines = [f"## {title}", "", " ".join((doc or "").split()), ""]
    lines += ["| key | default | valid values | description |", "| --- | --- | --- | --- |"]
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default_factory):
            continue  # a section: its own table
        rule = rule_of(field)
        valid = describe(hints[field.name])
        if rule.must:
            valid += f", {requirement(hints[field.name], rule.must)}"
        cells = [f"`{prefix}{field.name}`", f"`{spell(field.default)}`", valid, rule.help]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return [*lines, ""]
