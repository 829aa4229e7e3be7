"""Batches of similar lengths (bucketing), sized by sentences or by tokens.

Sutskever et al. (2014, section 3.4) report that batching sentences of similar length made
training twice as fast. Each epoch shuffles the data, sorts it by length within pools of many
batches, cuts the pools into batches and shuffles the order of the batches, so that batches are
nearly free of padding yet differ from epoch to epoch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from seq2seq.data.dataset import Example

POOL_BATCHES = 50


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
        indices,
        sum(len(e.tgt) - 1 for e in examples),
    )


def _cut(order: list[int], examples: list[Example], size: int, unit: str) -> list[list[int]]:
    """Cut an ordered list of example indices into batches of `size` sentences or tokens."""
    batches, current, longest = [], [], 0
    for index in order:
        length = max(len(examples[index].src), len(examples[index].tgt))
        if unit == "tokens":
            grown = max(longest, length) * (len(current) + 1)
            if current and grown > size:
                batches.append(current)
                current, longest = [], 0
        elif len(current) == size:
            batches.append(current)
            current = []
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


def bucket_batches(
    examples: list[Example], *, size: int, unit: str, rng: random.Random
) -> list[list[int]]:
    """Index lists of one training epoch's batches, in random order."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = POOL_BATCHES * (size if unit == "sentences" else max(1, size // 20))
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(
            order[start : start + pool], key=lambda i: (len(examples[i].tgt), len(examples[i].src))
        )
        batches.extend(_cut(chunk, examples, size, unit))
    rng.shuffle(batches)
    return batches


def sorted_batches(examples: list[Example], *, size: int, unit: str) -> list[list[int]]:
    """Index lists for evaluation: sorted by length for speed; callers restore the order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].src), len(examples[i].tgt)))
    return _cut(order, examples, size, unit)


def iterate(
    examples: list[Example],
    batches: list[list[int]],
    src_pad: int,
    tgt_pad: int,
    pin: bool = False,
) -> Iterator[Batch]:
    for indices in batches:
        yield collate([examples[i] for i in indices], indices, src_pad, tgt_pad, pin)


def padding_share(examples: list[Example], batches: list[list[int]]) -> float:
    """Fraction of the target positions in these batches that are padding."""
    total = real = 0
    for indices in batches:
        lengths = [len(examples[i].tgt) for i in indices]
        total += max(lengths) * len(lengths)
        real += sum(lengths)
    return 1.0 - real / total if total else 0.0
