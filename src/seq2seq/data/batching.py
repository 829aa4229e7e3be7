"""Batches of similar lengths (bucketing), sized by sentences or by tokens.

Sutskever et al. (2014, section 3.4) report that batching sentences of similar length made
training twice as fast. Each epoch shuffles the data, sorts it by length within pools of many
batches, cuts the pools into batches and shuffles the order of the batches, so that batches are
nearly free of padding yet differ from epoch to epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seq2seq.data.examples import Example
from seq2seq.data.sampling import shuffled_range

POOL_BATCHES = 50


@dataclass(frozen=True)
class Lengths:
    """Each example's source and target length, <sos> and <eos> included, as (N,) arrays:
    all that batching reads, so a corpus's pairs can stay on disk."""

    src: np.ndarray
    tgt: np.ndarray

    def __len__(self) -> int:
        return len(self.src)


def lengths_of(data: Lengths | Sequence[Example]) -> Lengths:
    if isinstance(data, Lengths):
        return data
    return Lengths(
        np.array([len(e.src) for e in data], dtype=np.int64),
        np.array([len(e.tgt) for e in data], dtype=np.int64),
    )


@dataclass
class Batch:
    """Padded tensors for one batch.

    src: (B, S) source ids, src_lengths: (B,) on the CPU (packing needs them there),
    tgt: (B, T) target ids starting with <sos> and ending with <eos>, indices: (B,) positions of
    the examples in the list they came from, num_target_tokens: the tokens the decoder predicts
    (every target position after <sos> that is not padding).
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt: torch.Tensor
    indices: list[int]
    num_target_tokens: int

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"
        return Batch(
            self.src.to(device, non_blocking=non_blocking),
            self.src_lengths,
            self.tgt.to(device, non_blocking=non_blocking),
            self.indices,
            self.num_target_tokens,
        )


def pad(sequences: list[list[int]], pad_id: int, pin: bool = False) -> torch.Tensor:
    out = torch.full((len(sequences), max(map(len, sequences))), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return out.pin_memory() if pin else out


def collate(
    examples: list[Example], indices: list[int], src_pad: int, tgt_pad: int, pin: bool = False
) -> Batch:
    return Batch(
        pad([e.src for e in examples], src_pad, pin),
        torch.tensor([len(e.src) for e in examples], dtype=torch.long),
        pad([e.tgt for e in examples], tgt_pad, pin),
        [int(i) for i in indices],
        sum(len(e.tgt) - 1 for e in examples),
    )


def _cut(order: np.ndarray, lengths: Lengths, size: int, unit: str) -> list[np.ndarray]:
    """Cut an ordered array of example indices into batches of `size` sentences or tokens."""
    if len(order) == 0:
        return []
    if unit == "sentences":
        return np.split(order, range(size, len(order), size))
    longest = np.maximum(lengths.src[order], lengths.tgt[order]).tolist()
    cuts, first, top = [], 0, 0
    for position, length in enumerate(longest):
        if position > first and max(top, length) * (position - first + 1) > size:
            cuts.append(position)
            first, top = position, 0
        top = max(top, length)
    return np.split(order, cuts)


def bucket_batches(
    data: Lengths | Sequence[Example],
    *,
    size: int,
    unit: str,
    rng: random.Random,
    order: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Index arrays of one training epoch's batches, in random order: of the examples in
    `order` (drawn by the caller, as weighted corpora are), or of each example once."""
    lengths = lengths_of(data)
    if order is None:
        order = shuffled_range(len(lengths.src), rng)
    pool = POOL_BATCHES * (size if unit == "sentences" else max(1, size // 20))
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(_key(lengths.tgt[chunk], lengths.src[chunk]), kind="stable")]
        batches.extend(_cut(chunk, lengths, size, unit))
    rng.shuffle(batches)
    return batches


def sorted_batches(data: Lengths | Sequence[Example], *, size: int, unit: str) -> list[np.ndarray]:
    """Index arrays for evaluation: sorted by length for speed; callers restore the order."""
    lengths = lengths_of(data)
    order = np.argsort(_key(lengths.src, lengths.tgt), kind="stable")
    return _cut(order, lengths, size, unit)


def _key(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One integer per example that sorts as the pair (first, second) does."""
    return first.astype(np.int64) * (int(second.max(initial=0)) + 1) + second


def iterate(
    examples: list[Example],
    batches: list[np.ndarray],
    src_pad: int,
    tgt_pad: int,
    pin: bool = False,
) -> Iterator[Batch]:
    for indices in batches:
        yield collate([examples[i] for i in indices], indices, src_pad, tgt_pad, pin)


def padding_share(data: Lengths | Sequence[Example], batches: list[np.ndarray]) -> float:
    """Fraction of the target positions in these batches that are padding."""
    if not batches:
        return 0.0
    lengths = lengths_of(data).tgt[np.concatenate(batches)].astype(np.int64)
    sizes = np.array([len(batch) for batch in batches])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = int((np.maximum.reduceat(lengths, starts) * sizes).sum())
    return 1.0 - int(lengths.sum()) / total
