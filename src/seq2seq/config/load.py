"""Loading a config: YAML plus dotted overrides, each value checked against its key's
declaration, every problem reported in one error."""

from __future__ import annotations

import dataclasses
import logging
import typing
from pathlib import Path
from typing import Any

import yaml

from seq2seq.config.effects import ineffective
from seq2seq.config.keys import Rule, rule_of
from seq2seq.config.kinds import (
    coerce,
    describe,
    options,
    parse_text,
    requirement,
    yaml_hint,
)
from seq2seq.config.model import MODEL_CONFIGS, ModelConfig, RecurrentConfig
from seq2seq.config.sections import Config
from seq2seq.errors import Seq2SeqError

log = logging.getLogger(__name__)


class ConfigError(Seq2SeqError, ValueError):
    """A configuration the user wrote is wrong; the message says what and how to fix it."""


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply `key=value` overrides and check everything."""
    raw = {} if path is None else _read_yaml(Path(path))
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"override {override!r} must look like key=value, e.g. train.epochs=2"
            )
        _set_dotted(raw, key, parse_text(value, declared_types(key)))
    config = config_from_dict(raw)
    if found := ineffective(config, raw):
        log.warning("settings with no effect in this config: %s", "; ".join(found))
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid YAML: {one_line(error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return raw


def one_line(error: Exception) -> str:
    """A parser's multi-line message as one line, for the CLI's one-line errors."""
    return " ".join(str(error).split())


def config_from_dict(raw: dict[str, Any]) -> Config:
    errors: list[str] = []
    config = _build(Config, raw, "", errors)  # a field with a bad value keeps its default
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def declared_types(key: str) -> list[Any]:
    """The types a dotted key is declared with: one, or one per model type that has it;
    none for a key no section declares."""
    *parents, leaf = key.split(".")
    classes = [Config]
    for part in parents:
        classes = [section for cls in classes for section in _sections(cls, part)]
    return [typing.get_type_hints(cls)[leaf] for cls in classes if leaf in _field_names(cls)]


def _sections(cls: type, name: str) -> list[type]:
    """The classes a section key may hold: each model type's for `model`."""
    if cls is Config and name == "model":
        return list(MODEL_CONFIGS.values())
    kind = typing.get_type_hints(cls).get(name)
    return [kind] if dataclasses.is_dataclass(kind) else []


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        if node.get(part) is None:  # absent, or a section with every key commented out
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str, errors: list[str]) -> Any:
    if raw is None:  # a section with every key commented out
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
        return cls()
    names = _field_names(cls)
    for key in raw:
        if key not in names:
            errors.append(f"unknown key {prefix}{key} (valid keys: {', '.join(names)})")
    known = len(errors)
    hints = typing.get_type_hints(cls)
    values = {}
    for field in (field for field in dataclasses.fields(cls) if field.name in raw):
        name, kind = field.name, hints[field.name]
        if cls is Config and name == "model":
            values[name] = _build_model(raw[name], errors)
        elif dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], f"{prefix}{name}.", errors)
        else:
            problem, value = _check(f"{prefix}{name}", raw[name], kind, rule_of(field))
            if problem:
                errors.append(problem)
            else:
                values[name] = value
    section = cls(**values)
    if len(errors) == known and hasattr(section, "problems"):  # its keys are each valid
        errors += section.problems()
    return section


def _check(key: str, value: Any, kind: Any, rule: Rule) -> tuple[str | None, Any]:
    """Why a value does not fit its key's declaration (None if it does), and the value as
    its type holds it."""
    ok, coerced = coerce(value, kind)
    if not ok:
        return f"{key}={value!r} is not {describe(kind)}{yaml_hint(value, kind)}", value
    items = coerced if isinstance(coerced, tuple) else (coerced,)
    if rule.check is None or coerced is None or all(rule.check(item) for item in items):
        return None, coerced
    shown = list(coerced) if isinstance(coerced, tuple) else coerced  # as YAML writes it
    null = " or null" if type(None) in options(kind) else ""
    return f"{key}={shown!r} must be {requirement(kind, rule.must)}{null}", coerced


def _build_model(raw: Any, errors: list[str]) -> ModelConfig:
    """The model section, as the class its `type` names; keys of other types are refused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"model must be a mapping, got {raw!r}")
        return RecurrentConfig()
    kind = raw.get("type", "lstm")
    if kind not in MODEL_CONFIGS:
        errors.append(f"model.type={kind!r} is not one of {', '.join(MODEL_CONFIGS)}")
        return RecurrentConfig()
    cls = MODEL_CONFIGS[kind]
    names = _field_names(cls)
    for key in raw:
        if key not in names:
            owners = [other for other, c in MODEL_CONFIGS.items() if key in _field_names(c)]
            belongs = f"; it belongs to model.type={' or '.join(owners)}" if owners else ""
            errors.append(
                f"unknown key model.{key} for model.type={kind}{belongs} "
                f"(valid keys: {', '.join(names)})"
            )
    return _build(cls, {k: v for k, v in raw.items() if k in names}, "model.", errors)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
