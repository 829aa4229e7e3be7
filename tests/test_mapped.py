"""The prepared corpus as training reads it: the same batches and first loss as the in-memory
path, damaged or stale copies refused or rebuilt, one copy mapped by two processes, and
weighted corpora sampled in proportion."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pytest
import reference_pipeline as reference
from conftest import CONFIGS, MULTI30K, ROOT

from seq2seq.config import DataConfig, load_config
from seq2seq.data.batching import bucket_batches, collate
from seq2seq.data.mapped import MANIFEST, PreparedError, open_prepared
from seq2seq.data.prepare import prepare
from seq2seq.data.sampling import epoch_order
from seq2seq.data.splits import numericalize
from seq2seq.training import Trainer
from seq2seq.training.step import token_losses


def write(folder, prefix, count, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for side in ("de", "en"):
        with gzip.open(MULTI30K / f"train.{side}.gz", "rt", encoding="utf-8") as handle:
            lines = handle.readlines()[start : start + count]
        (folder / f"{prefix}.{side}").write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write(folder, "train", 300)
    write(folder, "val", 20, start=1000)
    return folder


def test_prepared_training_equals_the_in_memory_path(corpus_dir, tmp_path):
    """The same vocabularies, epoch batches, tensors and first-step loss as numericalizing
    the whole split in memory, as training did before prepared corpora."""
    overrides = [f"data.dir={corpus_dir}", "data.corpus=files", f"output_dir={tmp_path}"]
    overrides += ["train.precision=float32", "train.batch_size=16", "data.max_length=12"]
    config = load_config(CONFIGS / "tiny.yaml", overrides)
    trainer = Trainer(config)
    split = reference.load_split(config.data, "train")
    vocabs = reference.build_vocabs(config.data, split)
    examples = numericalize(split, *vocabs, config.data, limit=config.data.train_limit)
    assert (trainer.data.src_vocab, trainer.data.tgt_vocab) == vocabs

    expected = bucket_batches(examples, size=16, unit="sentences", rng=random.Random(3))
    batches = trainer._epoch_batches(random.Random(3))
    assert [b.tolist() for b in batches] == [b.tolist() for b in expected]
    assert trainer.data.train.batch_count(16, "sentences") == len(batches)
    old = collate([examples[i] for i in expected[0]], expected[0], 1, 1)
    new = trainer._batch(batches[0])
    assert old.src.equal(new.src) and old.tgt.equal(new.tgt)
    assert old.src_lengths.equal(new.src_lengths) and old.indices == new.indices
    assert trainer._target_tokens(batches[0]) == old.num_target_tokens

    model = trainer.model.eval()
    losses = [
        token_losses(
            model(b.src, b.src_lengths, b.tgt, 1.0), b.tgt[:, 1:], pad=1, label_smoothing=0
        )
        for b in (old, new)
    ]
    assert losses[0][0].item() == losses[1][0].item()


def test_a_damaged_prepared_corpus_is_refused_in_one_line_and_rebuilt(corpus_dir):
    data = DataConfig(corpus="files", dir=str(corpus_dir), num_workers=1)
    path = prepare(data).path
    with open(path / "tgt.ids", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(PreparedError, match="tgt.ids is missing or cut short") as error:
        open_prepared(path)
    assert "\n" not in str(error.value) and "seq2seq prepare" in str(error.value)
    assert len(prepare(data)) == 300  # found damaged, prepared again
    assert len(open_prepared(path)) == 300


def test_another_format_version_is_refused_in_one_line(corpus_dir):
    data = DataConfig(corpus="files", dir=str(corpus_dir), num_workers=1)
    path = prepare(data).path
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(PreparedError, match="has format version 99, and this seq2seq reads"):
        open_prepared(path)
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(PreparedError, match="manifest.json cannot be read"):
        open_prepared(path)
    assert len(prepare(data)) == 300


def test_changed_settings_prepare_another_copy_and_reading_settings_do_not(corpus_dir):
    data = DataConfig(corpus="files", dir=str(corpus_dir), num_workers=1)
    path = prepare(data).path
    assert prepare(DataConfig(**{**data.__dict__, "min_freq": 1})).path != path
    # Truncation and the source's reversal are applied when pairs are read.
    assert prepare(DataConfig(**{**data.__dict__, "max_length": 5})).path == path
    assert prepare(DataConfig(**{**data.__dict__, "reverse_source": False})).path == path


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 3.0), (5.0, 1.0)])
def test_weighted_corpora_are_sampled_in_proportion(weights):
    sizes = [3000, 1000]  # the small corpus is repeated, the large one subsampled
    order = epoch_order(sizes, weights, random.Random(0))
    assert len(order) == sum(sizes)
    from_first = int((order < sizes[0]).sum())
    assert from_first / len(order) == pytest.approx(weights[0] / sum(weights), abs=0.001)
    # A share within a corpus's size draws distinct pairs; a larger one all of them.
    drawn = Counter(order.tolist())
    for start, size, share in ((0, 3000, from_first), (3000, 1000, len(order) - from_first)):
        mine = [drawn[i] for i in range(start, start + size)]
        assert max(mine) - min(mine) <= 1 and sum(mine) == share


def test_without_weights_an_epoch_visits_every_pair_once_in_the_shuffle_of_a_list():
    order = epoch_order([5, 7], None, random.Random(4))
    listed = list(range(12))
    random.Random(4).shuffle(listed)
    assert order.tolist() == listed


def test_the_weighted_epoch_repeats_with_the_random_state():
    first = epoch_order([50, 20], (1.0, 2.0), random.Random(9))
    assert np.array_equal(first, epoch_order([50, 20], (1.0, 2.0), random.Random(9)))
    assert not np.array_equal(first, epoch_order([50, 20], (1.0, 2.0), random.Random(10)))


SHARED = textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from seq2seq.config import DataConfig
    from seq2seq.data.train_data import shared_prepared
    dist.init_process_group("gloo")
    corpus = shared_prepared(DataConfig(corpus="files", dir=sys.argv[1], num_workers=1))
    ids = os.path.realpath(corpus.path / "src.ids")
    mapped = any(line.rstrip().endswith(ids) for line in open("/proc/self/maps"))
    print(json.dumps({"ids": ids, "mapped": mapped, "pairs": len(corpus),
                      "sum": int(corpus.src.ids.sum())}))
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/self/maps")
def test_two_processes_map_one_prepared_copy(tmp_path, isolated_cache):
    """Under torchrun's variables, process 0 prepares while process 1 waits; both then map
    the same ids file (no private copy) and read the same pairs."""
    write(tmp_path / "data", "train", 200)
    port = str(20000 + os.getpid() % 20000)
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SHARED, str(tmp_path / "data")],
            env={
                **os.environ,
                "PYTHONPATH": path,
                "RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "OMP_NUM_THREADS": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    first, second = (json.loads(out.splitlines()[-1]) for out, _ in outputs)
    assert first == second and first["mapped"] and first["pairs"] == 200
    folders = [p for p in (isolated_cache / "corpora").iterdir() if p.is_dir()]
    assert sum(os.path.realpath(f) in first["ids"] for f in folders) == 1


def test_training_draws_weighted_corpora_in_proportion(corpus_dir, tmp_path):
    write(tmp_path / "data", "small", 40, start=2000)
    write(tmp_path / "data", "val", 10, start=1000)
    (tmp_path / "data" / "big.de").symlink_to(corpus_dir / "train.de")
    (tmp_path / "data" / "big.en").symlink_to(corpus_dir / "train.en")
    overrides = [f"data.dir={tmp_path / 'data'}", "data.corpus=files", f"output_dir={tmp_path}"]
    overrides += ["data.train=[big, small]", "data.train_weights=[1, 1]"]
    trainer = Trainer(load_config(CONFIGS / "tiny.yaml", overrides))
    assert trainer.data.train.prepared.part_sizes == [300, 40]
    drawn = np.concatenate(trainer._epoch_batches(random.Random(0)))
    assert len(drawn) == 340 and int((drawn >= 300).sum()) == 170  # 40 pairs, drawn 170 times
