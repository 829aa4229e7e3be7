"""Which training pairs an epoch visits, in which order: each pair once, or, with several
weighted corpora (`data.train_weights`), each corpus's share of the epoch drawn from it.

Both draw from the trainer's `random.Random`, whose state at the start of an epoch the
checkpoint keeps, so a resumed run draws the same epoch again.
"""

from __future__ import annotations

import array
import random

import numpy as np


def shuffled_range(count: int, rng: random.Random) -> np.ndarray:
    """0 .. count-1 shuffled by `rng.shuffle`: the permutation a shuffled list of the same
    length would get (it depends on the length alone), held as one int64 array instead of a
    list of Python ints (a pointer and an object each)."""
    order = array.array("q", range(count))
    rng.shuffle(order)
    return np.frombuffer(order, dtype=np.int64)


def epoch_order(
    part_sizes: list[int], weights: tuple[float, ...] | None, rng: random.Random
) -> np.ndarray:
    """The indices of one epoch's pairs, in random order. The corpora lie one after another
    in `part_sizes` order. Without `weights` every pair comes once. With them the epoch has
    as many pairs as all the corpora together, and corpus i gives weight i / the weights' sum
    of them: a fresh random subset of a larger corpus, a smaller one repeated (each repetition
    in a new order)."""
    total = sum(part_sizes)
    if weights is None:
        return shuffled_range(total, rng)
    generator = np.random.default_rng(rng.getrandbits(64))
    shares = _shares(total, weights)
    starts = np.cumsum([0, *part_sizes[:-1]])
    drawn = [
        start + _draw(size, share, generator)
        for start, size, share in zip(starts, part_sizes, shares, strict=True)
    ]
    return generator.permutation(np.concatenate(drawn))


def _shares(total: int, weights: tuple[float, ...]) -> list[int]:
    """`total` split in proportion to the weights, rounded so that the shares add up."""
    bounds = np.round(np.cumsum([0.0, *weights]) / sum(weights) * total).astype(np.int64)
    return np.diff(bounds).tolist()


def _draw(size: int, share: int, generator: np.random.Generator) -> np.ndarray:
    repeats = -(-share // size)
    return np.concatenate([generator.permutation(size) for _ in range(repeats)])[:share]
