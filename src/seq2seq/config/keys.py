"""`key()`: one config key's default, help text and valid values, declared once.

The key's type is its annotation; `key()` adds what a type cannot say. Validation, override
parsing and the configuration reference read the `Rule` it stores in the field's metadata.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any


@dataclass(frozen=True)
class Applies:
    """When a key has an effect: while the key `other` (dotted from the top) holds one of
    `values`, or with `unless`, while it holds none of them."""

    other: str
    values: tuple
    unless: bool = False

    def holds(self, value: Any) -> bool:
        return (value in self.values) != self.unless

    def __str__(self) -> str:
        spelled = "/".join(map(spell, self.values))
        return f"{self.other} not {spelled}" if self.unless else f"{self.other}={spelled}"


def when(other: str, *values: Any) -> Applies:
    """A key that has an effect only while `other` holds one of `values`."""
    return Applies(other, values)


def unless(other: str, *values: Any) -> Applies:
    """A key that has no effect while `other` holds one of `values`."""
    return Applies(other, values, unless=True)


def spell(value: Any) -> str:
    """A value as YAML writes it: true, null, [0.9, 0.98]."""
    if isinstance(value, tuple):
        value = list(value)
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Rule:
    """What a key's value must be beyond its type. `must` completes "KEY=VALUE must be ...";
    `check` is None where the type says everything (a string, a boolean, a choice).
    `applies`, where the key has an effect only in some configs, says in which."""

    help: str
    must: str | None = None
    check: Callable[[Any], bool] | None = None
    applies: Applies | None = None


def key(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    must: str | None = None,
    check: Callable[[Any], bool] | None = None,
    applies: Applies | None = None,
) -> Any:
    """A dataclass field with a default and a help text. Numbers take bounds: `low`/`high`
    inclusive, `above`/`below` exclusive; other rules give `check` and the words `must`.
    A null value and each item of a list are checked on their own, so bounds suit
    `int | None` and `tuple[float, float]` keys as they are. A key that matters only in some
    configs says in which with `applies` (`when(...)`, `unless(...)`): setting it elsewhere
    is warned of at load."""
    bounds = (low, high, above, below)
    if any(bound is not None for bound in bounds):
        assert check is None, "a key takes bounds or a check, not both"
        must, check = _bounds(*bounds)
    rule = Rule(help, must, check, applies)
    return dataclasses.field(default=default, metadata={"rule": rule})


def section(cls: type, help: str) -> Any:
    """A field holding a whole section, e.g. `data: DataConfig`, at its defaults."""
    return dataclasses.field(default_factory=cls, metadata={"rule": Rule(help)})


def rule_of(field: dataclasses.Field) -> Rule:
    assert "rule" in field.metadata, f"config key {field.name} is declared without key()"
    return field.metadata["rule"]


def is_plain_name(name: str) -> bool:
    """One path component on every system: not '.' or '..', no separators or drive."""
    return (
        name not in ("", ".", "..")
        and name.isprintable()
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
    )


def _bounds(low, high, above, below) -> tuple[str, Callable[[Any], bool]]:
    assert low is None or above is None, "a key takes low or above, not both"
    assert high is None or below is None, "a key takes high or below, not both"
    start = "" if low is None and above is None else f"[{low}" if low is not None else f"({above}"
    end = "" if high is None and below is None else f"{high}]" if high is not None else f"{below})"
    if start and end:
        words = f"in {start}, {end}"
    elif start:
        words = f"at least {low}" if low is not None else f"more than {above}"
    else:
        words = f"at most {high}" if high is not None else f"less than {below}"
    words = {"more than 0": "positive", "at least 0": "0 or more"}.get(words, words)

    def check(value: float) -> bool:
        return (
            (low is None or value >= low)
            and (above is None or value > above)
            and (high is None or value <= high)
            and (below is None or value < below)
        )

    return words, check
