"""Bucketed batches: complete, within size, nearly free of padding, shuffled per epoch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import reference_pipeline as reference
import torch

from seq2seq.config import DataConfig
from seq2seq.data.batching import (
    POOL_BATCHES,
    bucket_batches,
    collate,
    iterate,
    padding_share,
    sorted_batches,
)
from seq2seq.data.examples import Example
from seq2seq.data.splits import numericalize

SOS, EOS, PAD = 2, 3, 1


def _examples(count: int, seed: int = 0, longest: int = 40) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        src = [SOS, *(rng.randrange(4, 50) for _ in range(rng.randrange(1, longest))), EOS]
        tgt = [SOS, *(rng.randrange(4, 50) for _ in range(rng.randrange(1, longest))), EOS]
        examples.append(Example(src, tgt))
    return examples


def _flat(batches: list[np.ndarray]) -> list[int]:
    return [int(index) for batch in batches for index in batch]


def _lists(batches: list[np.ndarray]) -> list[list[int]]:
    return [batch.tolist() for batch in batches]


def _tokens(examples: list[Example], batch: list[int]) -> int:
    """What a batch costs in token units: its longest side, padded, times its sentences."""
    longest = max(max(len(examples[i].src), len(examples[i].tgt)) for i in batch)
    return longest * len(batch)


_MULTI30K: dict[str, list[Example]] = {}


@pytest.fixture
def multi30k_train(multi30k_dir) -> list[Example]:
    """Multi30k train, numericalized with the tutorial's settings (built once per session)."""
    if "train" not in _MULTI30K:
        config = DataConfig(dir=str(multi30k_dir))
        train = reference.load_split(config, "train")
        src_vocab, tgt_vocab = reference.build_vocabs(config, train)
        _MULTI30K["train"] = numericalize(train, src_vocab, tgt_vocab, config)
    return _MULTI30K["train"]


@pytest.mark.parametrize(
    "count, size, unit",
    [(1000, 16, "sentences"), (997, 128, "sentences"), (5, 64, "sentences"), (1000, 300, "tokens")],
)
def test_bucket_batches_cover_every_example_exactly_once(count, size, unit):
    examples = _examples(count)
    batches = bucket_batches(examples, size=size, unit=unit, rng=random.Random(0))
    assert sorted(_flat(batches)) == list(range(count))
    assert all(len(batch) for batch in batches)


def test_sentence_batches_hold_at_most_size_and_are_mostly_full():
    examples = _examples(1000)
    batches = bucket_batches(examples, size=16, unit="sentences", rng=random.Random(0))
    assert max(map(len, batches)) == 16
    pools = -(-1000 // (POOL_BATCHES * 16))
    assert sum(len(batch) < 16 for batch in batches) <= pools  # one partial batch per pool


def test_token_batches_stay_within_the_token_budget():
    examples = _examples(2000)
    batches = bucket_batches(examples, size=300, unit="tokens", rng=random.Random(0))
    assert all(_tokens(examples, batch) <= 300 for batch in batches)
    # Short sentences share a batch: far fewer batches than sentences.
    assert len(batches) < 2000 / 5


def test_a_sentence_longer_than_the_token_budget_gets_a_batch_of_its_own():
    examples = [*_examples(50, longest=5), Example([SOS, *[7] * 40, EOS], [SOS, 8, EOS])]
    batches = _lists(bucket_batches(examples, size=30, unit="tokens", rng=random.Random(0)))
    assert [50] in batches
    assert sorted(_flat(batches)) == list(range(51))
    assert all(_tokens(examples, batch) <= 30 for batch in batches if batch != [50])


@pytest.mark.slow
def test_multi30k_buckets_have_little_padding(multi30k_train):
    examples = multi30k_train
    assert len(examples) == 29000
    rng = random.Random(1234)
    batches = bucket_batches(examples, size=128, unit="sentences", rng=rng)
    assert sorted(_flat(batches)) == list(range(29000))
    assert padding_share(examples, batches) < 0.10
    # The same batches drawn at random are half padding: the bucketing is what removes it.
    order = list(range(len(examples)))
    rng.shuffle(order)
    unsorted = [order[i : i + 128] for i in range(0, len(order), 128)]
    assert padding_share(examples, unsorted) > 0.3

    token_batches = bucket_batches(examples, size=4000, unit="tokens", rng=rng)
    assert padding_share(examples, token_batches) < 0.10


def test_epochs_differ_but_repeat_with_the_same_seed():
    examples = _examples(1000)
    rng = random.Random(7)
    first = _lists(bucket_batches(examples, size=16, unit="sentences", rng=rng))
    second = _lists(bucket_batches(examples, size=16, unit="sentences", rng=rng))
    assert first != second
    assert sorted(map(sorted, first)) != sorted(map(sorted, second))  # not only reordered

    again = random.Random(7)
    assert _lists(bucket_batches(examples, size=16, unit="sentences", rng=again)) == first
    assert _lists(bucket_batches(examples, size=16, unit="sentences", rng=again)) == second
    other = _lists(bucket_batches(examples, size=16, unit="sentences", rng=random.Random(8)))
    assert other != first


def test_sorted_batches_are_in_length_order_and_complete():
    examples = _examples(300)
    batches = sorted_batches(examples, size=32, unit="sentences")
    order = _flat(batches)
    assert sorted(order) == list(range(300))
    keys = [(len(examples[i].src), len(examples[i].tgt)) for i in order]
    assert keys == sorted(keys)
    assert [len(batch) for batch in batches] == [32] * 9 + [12]
    again = sorted_batches(examples, size=32, unit="sentences")
    assert _lists(again) == _lists(batches)  # no randomness


def test_collate_pads_each_side_with_its_pad_id():
    examples = [
        Example(src=[2, 5, 6, 3], tgt=[2, 7, 3]),
        Example(src=[2, 5, 3], tgt=[2, 7, 8, 9, 3]),
    ]
    batch = collate(examples, [4, 9], src_pad=11, tgt_pad=12)
    assert batch.src.tolist() == [[2, 5, 6, 3], [2, 5, 3, 11]]
    assert batch.tgt.tolist() == [[2, 7, 3, 12, 12], [2, 7, 8, 9, 3]]
    assert batch.src_lengths.tolist() == [4, 3]
    assert batch.src.dtype == batch.tgt.dtype == batch.src_lengths.dtype == torch.long
    assert batch.indices == [4, 9]
    # The decoder predicts every target token after <sos>: 2 + 4.
    assert batch.num_target_tokens == 6


def test_iterate_yields_batches_that_match_their_examples():
    examples = _examples(200)
    batches = sorted_batches(examples, size=500, unit="tokens")
    seen = 0
    for batch in iterate(examples, batches, src_pad=PAD, tgt_pad=PAD):
        for row, index in enumerate(batch.indices):
            src, tgt = examples[index].src, examples[index].tgt
            assert batch.src_lengths[row].item() == len(src)
            assert batch.src[row, : len(src)].tolist() == src
            assert (batch.src[row, len(src) :] == PAD).all()
            assert batch.tgt[row, : len(tgt)].tolist() == tgt
            assert (batch.tgt[row, len(tgt) :] == PAD).all()
        assert batch.num_target_tokens == sum(len(examples[i].tgt) - 1 for i in batch.indices)
        assert batch.src.shape[1] == batch.src_lengths.max().item()  # no all-padding column
        seen += len(batch.indices)
    assert seen == 200


def test_padding_share_known_values():
    examples = [Example([2, 3], [2, 3]), Example([2, 3], [2, 5, 6, 3]), Example([2, 3], [2, 5, 3])]
    assert padding_share(examples, [[0, 1]]) == pytest.approx(1 - 6 / 8)
    assert padding_share(examples, [[0], [1], [2]]) == 0.0
    assert padding_share(examples, [[0, 1, 2]]) == pytest.approx(1 - 9 / 12)
    assert padding_share(examples, []) == 0.0
