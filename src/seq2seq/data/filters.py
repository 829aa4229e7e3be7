"""Filters of training pairs at preparation: empty sides, long pairs, skewed length ratios and
exact duplicates. Evaluation splits are never filtered: BLEU counts every reference."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from seq2seq.config import DataConfig

REASONS = ("empty", "too_long", "length_ratio", "duplicate")


def empty_sides(src: list[str], tgt: list[str]) -> np.ndarray:
    """For each pair, whether a side has no text (nothing, or only white space)."""
    pairs = zip(src, tgt, strict=True)
    return np.fromiter((not (s.strip() and t.strip()) for s, t in pairs), bool, len(src))


@dataclass(frozen=True)
class Filters:
    """Which pairs preparation drops; each field is a `data.*` key's value."""

    empty: bool = True
    max_length: int | None = None  # data.max_length when data.filter_long
    max_length_ratio: float | None = None
    duplicates: bool = False

    @classmethod
    def of(cls, data: DataConfig) -> Filters:
        return cls(
            empty=data.filter_empty,
            max_length=data.max_length if data.filter_long else None,
            max_length_ratio=data.max_length_ratio,
            duplicates=data.filter_duplicates,
        )

    def dropped_words(self, dropped: dict[str, int]) -> str:
        """What the filters dropped, in words: "1 with an empty side, 2 longer than
        data.max_length=50"; reasons that dropped nothing are left out."""
        words = {
            "empty": "with an empty side",
            "too_long": f"longer than data.max_length={self.max_length}",
            "length_ratio": f"with a length ratio above data.max_length_ratio="
            f"{self.max_length_ratio}",
            "duplicate": "repeating an earlier pair",
        }
        said = [f"{dropped[reason]} {words[reason]}" for reason in REASONS if dropped[reason]]
        return ", ".join(said) or "none dropped"


@dataclass
class FilterState:
    """What filtering a corpus chunk by chunk has seen: the pairs dropped for each reason and,
    for duplicates, a 64-bit digest of every pair kept."""

    filters: Filters
    dropped: Counter = field(default_factory=Counter)
    seen: set[int] = field(default_factory=set)

    def keep(
        self,
        empty: np.ndarray,
        src_lengths: np.ndarray,
        tgt_lengths: np.ndarray,
        digests: np.ndarray | None,
    ) -> np.ndarray:
        """A boolean mask of the chunk's pairs to keep; each dropped pair is counted once,
        under the first reason that drops it."""
        filters = self.filters
        keep = np.ones(len(empty), dtype=bool)
        if filters.empty:
            self._drop(keep, empty, "empty")
        if filters.max_length is not None:
            longest = np.maximum(src_lengths, tgt_lengths)
            self._drop(keep, longest > filters.max_length, "too_long")
        if filters.max_length_ratio is not None:
            longer = np.maximum(src_lengths, tgt_lengths).astype(np.float64)
            shorter = np.maximum(np.minimum(src_lengths, tgt_lengths), 1)
            self._drop(keep, longer / shorter > filters.max_length_ratio, "length_ratio")
        if filters.duplicates:
            assert digests is not None, "duplicates are found by the pairs' digests"
            self._drop(keep, self._repeated(keep, digests), "duplicate")
        return keep

    def _drop(self, keep: np.ndarray, drop: np.ndarray, reason: str) -> None:
        drop = drop & keep
        self.dropped[reason] += int(drop.sum())
        keep &= ~drop

    def _repeated(self, keep: np.ndarray, digests: np.ndarray) -> np.ndarray:
        repeated = np.zeros(len(keep), dtype=bool)
        for index in np.flatnonzero(keep):
            digest = int(digests[index])
            repeated[index] = digest in self.seen
            self.seen.add(digest)
        return repeated

    def counts(self) -> dict[str, int]:
        return {reason: self.dropped[reason] for reason in REASONS}
