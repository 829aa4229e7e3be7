"""Settings that do nothing: a key set in a config (its YAML or an override) that has no effect
there, such as `model.share_embeddings` without `data.joint_vocab`. A key declares when it has
an effect with `key(..., applies=when(...))`; loading warns, in one line, of every key set
where it has none."""

from __future__ import annotations

import dataclasses
from typing import Any

from seq2seq.config.keys import rule_of, spell


def ineffective(config: Any, written: dict) -> list[str]:
    """`key=value (applies with ... only)` for each key that `written` (the config as the
    user wrote it: nested mappings) sets and that has no effect in `config`."""
    found = []
    for dotted, rule in _rules(config, written):
        other = _value(config, rule.applies.other)
        if not rule.applies.holds(other):
            found.append(
                f"{dotted}={spell(_value(config, dotted))} (it applies with "
                f"{rule.applies} only; here {rule.applies.other}={spell(other)})"
            )
    corpora = len(config.data.train_corpora)
    if "train_weights" in (written.get("data") or {}) and corpora == 1:
        found.append("data.train_weights (it applies with several corpora in data.train only)")
    return found


def _rules(section: Any, written: Any, prefix: str = ""):
    """Each key `written` sets that declares when it applies, with its rule."""
    if not isinstance(written, dict):
        return
    for field in dataclasses.fields(section):
        if field.name not in written:
            continue
        value = getattr(section, field.name)
        if dataclasses.is_dataclass(value):
            yield from _rules(value, written[field.name], f"{prefix}{field.name}.")
        elif rule_of(field).applies is not None:
            yield f"{prefix}{field.name}", rule_of(field)


def _value(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config
