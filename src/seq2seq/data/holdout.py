"""Validation and test splits held out of the training corpus itself (`data.holdout`), for a
corpus that comes without them, such as the Tatoeba exports.

A pair's split is decided by its `data.holdout_by` sentence alone: the sentence, with case and
runs of white space ignored, is hashed (BLAKE2b, 64 bits) to a number u in [0, 1); u below the
validation share puts it in the validation split, below the two shares together in the test
split, anywhere else in training. Every pair with the same sentence thus lands in the same
split (a sentence with several translations is never in training and in a held-out split at
once), and the split depends on neither the file's order nor its other lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from seq2seq.config import DataConfig

Part = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class Holdout:
    """Which pairs one reading of the training corpus keeps: those of split `part`."""

    shares: tuple[float, float]  # validation, test
    by_target: bool  # the target sentence decides, else the source
    part: Part

    @classmethod
    def of(cls, data: DataConfig, part: Part) -> Holdout | None:
        """The reading of `part` (None without `data.holdout`: every pair is kept)."""
        if data.holdout is None:
            return None
        return cls(data.holdout, data.holdout_by == data.tgt_lang, part)

    def kept(self, deciding: list[str]) -> list[int]:
        """The indices of the pairs of this reading's split, given their deciding sentences."""
        return [i for i, sentence in enumerate(deciding) if self.part_of(sentence) == self.part]

    def part_of(self, sentence: str) -> Part:
        key = " ".join(sentence.split()).casefold().encode()
        u = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / 2**64
        valid, test = self.shares
        return "valid" if u < valid else "test" if u < valid + test else "train"
