"""What changed between two configs, key by dotted key: what a resume (training/state.py) and
averaging (compat.py) each check against the keys they may ignore."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def changed_keys(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs between two configs (as `config_to_dict` gives
    them, or one section of them with its `prefix`), in order, with its old and new value."""
    changes = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.update(changed_keys(a, b, f"{prefix}{key}."))
        elif a != b:
            changes[f"{prefix}{key}"] = (a, b)
    return changes


def config_diff(
    old: dict, new: dict, prefix: str = "", *, ignore: Collection[str] = ()
) -> list[str]:
    """`key: old -> new` for every changed key but those in `ignore`."""
    return [
        f"{key}: {a!r} -> {b!r}"
        for key, (a, b) in changed_keys(old, new, prefix).items()
        if key not in ignore
    ]
