"""Config value types: checking a YAML value against a key's annotation, reading an override's
text as that type, and describing the type in words."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

import yaml

# YAML 1.2's spellings. YAML 1.1 (PyYAML) also reads yes/no/on/off as booleans, which turns
# `data.src_lang=no` (Norwegian) into False; an override is read by its key's type instead.
NULLS = {"", "~", "null", "Null", "NULL"}
BOOLEANS = {
    spelled: value
    for value in (True, False)
    for spelled in (str(value), str(value).lower(), str(value).upper())
}
PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a non-empty string"}


def options(kind: Any) -> tuple[Any, ...]:
    """The alternatives of a union (`int | None` -> int, None), or the type alone."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def coerce(value: Any, kind: Any) -> tuple[bool, Any]:
    """Whether a YAML value fits the type, and the value as the type holds it."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return value in typing.get_args(kind), value
    if origin is tuple:  # a YAML list: tuple[float, float] of a fixed length, tuple[str, ...] not
        items = typing.get_args(kind)
        if items[-1] is Ellipsis and isinstance(value, list | tuple) and value:
            items = (items[0],) * len(value)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            return False, value
        coerced = [coerce(item, option) for item, option in zip(value, items, strict=True)]
        ok = all(item_ok for item_ok, _ in coerced)
        return ok, tuple(item for _, item in coerced) if ok else value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            ok, result = coerce(value, option)
            if ok:
                return True, result
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        return _coerce_float(value)
    if kind is str:
        return isinstance(value, str) and value != "", value
    raise AssertionError(f"config type {kind} has no coercion")


def _coerce_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            return False, value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, value
    # nan passes every range check (each comparison is false), and inf none is meant for.
    return math.isfinite(value), float(value)


class Written(str):
    """An override's text that no type of its key reads; errors show it as it was typed."""

    def __repr__(self) -> str:
        return str(self)


def parse_text(text: str, kinds: list[Any]) -> Any:
    """An override's text read as the first of the key's types that it spells. Text no type
    reads is returned as Written, for the type check to refuse by name."""
    text = text.strip()
    alternatives = [option for kind in kinds for option in options(kind)]
    if type(None) in alternatives and text in NULLS:
        return None
    # A list or mapping first: a `str | tuple[str, ...]` key reads "[a, b]" as a list.
    for option in sorted(alternatives, key=lambda option: not _is_composite(option)):
        ok, value = _parse_one(text, option)
        if ok:
            return value
    return Written(text)


def _parse_one(text: str, kind: Any) -> tuple[bool, Any]:
    if typing.get_origin(kind) is Literal:
        spelled = {str(choice): choice for choice in typing.get_args(kind)}
        return text in spelled, spelled.get(text)
    if _is_composite(kind):
        if typing.get_origin(kind) is tuple and "," in text and not text.startswith(("[", "{")):
            # `a,b` for `[a,b]`, which a shell reads as a glob unless it is quoted
            return True, [item.strip() for item in text.split(",")]
        if not text.startswith(("[", "{")):
            return False, text
        try:
            return True, yaml.safe_load(text)
        except yaml.YAMLError:
            return False, text
    if kind is bool:
        return text in BOOLEANS, BOOLEANS.get(text)
    if kind in (int, float):
        try:
            return True, kind(text)
        except ValueError:
            return False, text
    return kind is str, text


def _is_composite(kind: Any) -> bool:
    return typing.get_origin(kind) in (tuple, list, dict) or dataclasses.is_dataclass(kind)


def describe(kind: Any) -> str:
    """The type in words, as errors and the reference say it: "an integer or null"."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in typing.get_args(kind))
    if origin is tuple:
        items = typing.get_args(kind)
        if items[-1] is Ellipsis:
            return f"a non-empty list of {PLURALS[items[0]]}"
        assert len(set(items)) == 1, f"config type {kind}: only lists of one type are described"
        return f"a list of {len(items)} {PLURALS[items[0]]}"
    return "null" if kind is type(None) else NAMES[kind]


def yaml_hint(value: Any, kind: Any) -> str:
    """Why a YAML file's unquoted word or number is not the string its key wants, if so."""
    if str in options(kind) and isinstance(value, bool | int | float):
        return (
            " (YAML reads an unquoted yes, no, on or off as a boolean and digits as a number; "
            "quote the value)"
        )
    return ""


def requirement(kind: Any, must: str | None) -> str | None:
    """A key's rule in words, said of each item of a list key: "numbers in [0, 1)"."""
    if must is None or typing.get_origin(kind) is not tuple:
        return must
    return f"{PLURALS[typing.get_args(kind)[0]]} {must}"
