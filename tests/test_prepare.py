"""Preparing corpora: parallel and serial agree, filters drop what they should (and only from
training corpora), bad input stops with one line, and an interrupted preparation leaves
nothing a rerun would trust."""

from __future__ import annotations

import dataclasses
import errno
import gzip
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIGS, MULTI30K, ROOT, cli

from seq2seq.config import ConfigError, DataConfig, load_config
from seq2seq.data import id_files, reading
from seq2seq.data import prepare as prepare_module
from seq2seq.data.mapped import open_prepared
from seq2seq.data.prepare import prepare, prepared_path
from seq2seq.data.sampling import epoch_order
from seq2seq.data.splits import load_split
from seq2seq.errors import DataError
from seq2seq.writing import WriteError


def write(folder, prefix, src, tgt):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}.de").write_text("".join(line + "\n" for line in src), encoding="utf-8")
    (folder / f"{prefix}.en").write_text("".join(line + "\n" for line in tgt), encoding="utf-8")


def multi30k(count, side):
    with gzip.open(MULTI30K / f"train.{side}.gz", "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(count)]


def config(folder, **settings) -> DataConfig:
    settings = {"num_workers": 1, "min_freq": 1, **settings}
    return DataConfig(corpus="files", dir=str(folder), **settings)


def pairs(corpus) -> list[tuple[list[str], list[str]]]:
    src, tgt = corpus.src, corpus.tgt
    return [
        (src.vocab.tokens(src.ids_of(i).tolist()), tgt.vocab.tokens(tgt.ids_of(i).tolist()))
        for i in range(len(corpus))
    ]


def test_two_workers_prepare_what_one_does(tmp_path, monkeypatch):
    """Chunks of 100 lines through 2 processes give the same files as one process."""
    write(tmp_path / "data", "train", multi30k(450, "de"), multi30k(450, "en"))
    monkeypatch.setattr(prepare_module, "read_chunks", _small_chunks)
    serial = prepare(config(tmp_path / "data"))
    files = {name: (serial.path / name).read_bytes() for name in serial.manifest["files"]}
    parallel = prepare(config(tmp_path / "data", num_workers=2), force=True)
    assert parallel.path == serial.path  # the number of workers is not part of the key
    assert {name: (parallel.path / name).read_bytes() for name in files} == files
    assert len(parallel) == 450 and parallel.src.ids.dtype == np.uint16


def _small_chunks(files):
    return reading.read_chunks(files, lines=100)


def test_the_prepared_pairs_are_the_tokenized_lines(tmp_path):
    write(
        tmp_path / "data", "train", ["Ein Hund läuft.", "Zwei Katzen"], ["A dog runs.", "Two cats"]
    )
    corpus = prepare(config(tmp_path / "data"))
    assert pairs(corpus) == [
        (["ein", "hund", "läuft", "."], ["a", "dog", "runs", "."]),
        (["zwei", "katzen"], ["two", "cats"]),
    ]
    assert corpus.manifest["parts"][0]["lines"] == 2
    assert [
        entry["path"].endswith(name)
        for entry, name in zip(corpus.manifest["inputs"], ["train.de", "train.en"], strict=True)
    ] == [True, True]


def test_each_filter_drops_what_it_should_and_counts_it(tmp_path, caplog):
    caplog.set_level("INFO")
    src = ["a b", "", "a b c d e f", "a", "a b", "x y"]
    tgt = ["c d", "leer", "c", "a b c d e f g h", "c d", "z"]
    write(tmp_path / "data", "train", src, tgt)
    settings = {"filter_long": True, "max_length": 6, "max_length_ratio": 3.0}
    corpus = prepare(config(tmp_path / "data", filter_duplicates=True, **settings))
    # dropped: line 2 (empty), line 4 (8 tokens > 6), line 3 (6 / 1 > 3), line 5 (line 1 again)
    assert pairs(corpus) == [(["a", "b"], ["c", "d"]), (["x", "y"], ["z"])]
    dropped = {"empty": 1, "too_long": 1, "length_ratio": 1, "duplicate": 1}
    assert corpus.manifest["parts"][0]["dropped"] == dropped
    assert "2 pairs kept, dropped 1 empty, 1 too_long, 1 length_ratio, 1 duplicate" in caplog.text


def test_filters_are_off_but_the_empty_one_by_default(tmp_path):
    write(tmp_path / "data", "train", ["a b", "", "a b", "a"], ["c d", "leer", "c d", "b c d e"])
    corpus = prepare(config(tmp_path / "data"))
    assert len(corpus) == 3
    everything = prepare(config(tmp_path / "data", filter_empty=False))
    assert len(everything) == 4 and pairs(everything)[1] == ([], ["leer"])


def test_evaluation_splits_keep_every_line(tmp_path):
    write(tmp_path / "data", "train", ["a b", "c"], ["d e", "f"])
    write(tmp_path / "data", "val", ["a b", "", "a b c d e f g"], ["d e", "x", "d"])
    data = config(tmp_path / "data", filter_long=True, max_length=3, max_length_ratio=1.5)
    assert len(load_split(data, "valid").src_tokens) == 3


def test_train_limit_keeps_the_first_pairs_after_the_filters(tmp_path):
    write(tmp_path / "data", "train", ["a", "", "b", "c"], ["d", "x", "e", "f"])
    corpus = prepare(config(tmp_path / "data", train_limit=2))
    assert pairs(corpus) == [(["a"], ["d"]), (["b"], ["e"])]


def test_several_corpora_are_prepared_together_under_one_vocabulary(tmp_path):
    write(tmp_path / "data", "europarl", ["a b", "a"], ["c d", "c"])
    write(tmp_path / "data", "news", ["b e"], ["d f"])
    corpus = prepare(config(tmp_path / "data", train=("europarl", "news")))
    assert corpus.part_sizes == [2, 1]
    assert pairs(corpus)[2] == (["b", "e"], ["d", "f"])
    assert [part["prefix"] for part in corpus.manifest["parts"]] == ["europarl", "news"]


def test_sentencepiece_ids_are_the_pieces_of_the_lines(tmp_path):
    src, tgt = multi30k(300, "de"), multi30k(300, "en")
    write(tmp_path / "data", "train", src, tgt)
    data = config(tmp_path / "data", tokenizer="sentencepiece", vocab_size=200)
    corpus = prepare(data)
    split = load_split(data, "train", vocabs=(corpus.src.vocab, corpus.tgt.vocab))
    assert [p for p, _ in pairs(corpus)] == split.src_tokens
    assert [t for _, t in pairs(corpus)] == split.tgt_tokens


def test_two_workers_train_the_sentencepiece_models_one_does(tmp_path, monkeypatch):
    """With 2 workers each side's model trains in a process of its own: the same models, so
    the same files, trained afresh in each case."""
    write(tmp_path / "data", "train", multi30k(300, "de"), multi30k(300, "en"))
    prepared = []
    for workers in (1, 2):
        monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / f"cache-{workers}"))
        data = config(tmp_path / "data", tokenizer="sentencepiece", vocab_size=200)
        corpus = prepare(dataclasses.replace(data, num_workers=workers))
        prepared.append(
            {name: (corpus.path / name).read_bytes() for name in corpus.manifest["files"]}
        )
    assert prepared[0] == prepared[1]
    assert len(list((tmp_path / "cache-2" / "subword").iterdir())) == 2  # trained, not found


def test_a_side_whose_model_cannot_train_is_one_line_from_the_workers(tmp_path):
    write(tmp_path / "data", "train", multi30k(50, "de"), multi30k(50, "en"))
    data = config(tmp_path / "data", tokenizer="sentencepiece", vocab_size=5000, num_workers=2)
    with pytest.raises(ConfigError, match="data.vocab_size=5000 is more than the de training"):
        prepare(data)
    path = prepared_path(data)  # nothing half-written is left
    assert not path.exists() and not list(path.parent.glob(f".{path.name}.*"))


@pytest.mark.parametrize(
    "files, fragments",
    [
        ({"train.de": "a\nb\n"}, ["cannot find train.de[.gz] and train.en[.gz]"]),
        ({"train.de": "a\nb\nc\n", "train.en": "x\ny\n"}, ["train.de has 3 lines", "has 2"]),
        ({"train.de": "", "train.en": ""}, ["train.de is empty"]),
        ({"train.de": "", "train.en": "x\n"}, ["train.de is empty"]),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, files, fragments):
    (tmp_path / "data").mkdir()
    for name, text in files.items():
        (tmp_path / "data" / name).write_text(text)
    with pytest.raises(DataError) as error:
        prepare(config(tmp_path / "data"))
    assert "\n" not in str(error.value)
    assert all(fragment in str(error.value) for fragment in fragments), error.value


def test_invalid_utf8_names_the_file_and_its_line_in_a_later_chunk(tmp_path, monkeypatch):
    write(tmp_path / "data", "train", [f"satz {i}" for i in range(250)], ["x"] * 250)
    text = (tmp_path / "data" / "train.de").read_bytes().replace(b"satz 230", b"satz \xff")
    (tmp_path / "data" / "train.de").write_bytes(text)
    monkeypatch.setattr(prepare_module, "read_chunks", _small_chunks)
    with pytest.raises(DataError, match=r"train\.de line 231 is not valid UTF-8"):
        prepare(config(tmp_path / "data", num_workers=2))
    assert _folders(tmp_path) == []


def _folders(tmp_path):
    """The folders, finished or not, of this test's prepared corpus in the tests' cache."""
    path = prepared_path(config(tmp_path / "data"))
    return sorted(p.name for p in path.parent.iterdir() if path.name in p.name)


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), OSError(errno.ENOSPC, "full")])
def test_an_interrupted_preparation_leaves_nothing_and_a_rerun_prepares(
    tmp_path, monkeypatch, interruption
):
    write(tmp_path / "data", "train", multi30k(300, "de"), multi30k(300, "en"))
    monkeypatch.setattr(prepare_module, "read_chunks", _small_chunks)
    real, calls = id_files.SideWriter.add, []

    def add(self, *args):
        calls.append(1)
        if len(calls) == 3:  # the second chunk's source side
            raise interruption
        real(self, *args)

    monkeypatch.setattr(id_files.SideWriter, "add", add)
    expected = WriteError if isinstance(interruption, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as error:
        prepare(config(tmp_path / "data"))
    if expected is WriteError:
        assert "free some space" in str(error.value) and "SEQ2SEQ_CACHE" in str(error.value)
    assert _folders(tmp_path) == []
    monkeypatch.setattr(id_files.SideWriter, "add", real)
    assert len(prepare(config(tmp_path / "data"))) == 300


def test_a_changed_input_is_prepared_again(tmp_path):
    write(tmp_path / "data", "train", ["a", "b"], ["c", "d"])
    first = prepare(config(tmp_path / "data"))
    write(tmp_path / "data", "train", ["a", "b", "e"], ["c", "d", "f"])
    second = prepare(config(tmp_path / "data"))
    assert second.path != first.path and len(second) == 3
    assert len(open_prepared(first.path)) == 2  # the old one is whole, just no longer used


def test_the_prepare_command_prepares_once(tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    write(tmp_path / "data", "train", ["a b", "c"], ["d e", "f"])
    argv = ["prepare", CONFIGS / "tiny.yaml", "data.corpus=files", f"data.dir={tmp_path / 'data'}"]
    argv += ["data.num_workers=1", "data.train_limit=null"]
    assert cli(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("prepared: ") and first.endswith("(2 training pairs)\n")
    caplog.clear()
    assert cli(argv) == 0
    assert capsys.readouterr().out == first
    assert "prepared " not in caplog.text  # found, not prepared again


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_leaves_nothing(tmp_path):
    """SIGINT to `seq2seq prepare` with 2 workers, in the middle: exit 130, no folder. The
    corpus is Multi30k's lines five times over, so that on a quiet machine too the signal
    comes long before the preparation could end."""
    lines = {lang: multi30k(20000, lang) * 5 for lang in ("de", "en")}
    write(tmp_path / "data", "train", lines["de"], lines["en"])
    data = config(tmp_path / "data")
    path = prepared_path(data)
    argv = [sys.executable, "-m", "seq2seq", "prepare", CONFIGS / "tiny.yaml", "data.corpus=files"]
    argv += [f"data.dir={tmp_path / 'data'}", "data.num_workers=2", "data.train_limit=null"]
    argv += ["data.min_freq=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    # In the whole suite the child arrived with SIGINT ignored (an ignored signal is
    # inherited, and Python then keeps it so): give it the default back, as a terminal would.
    process = subprocess.Popen(
        list(map(str, argv)),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(path.parent.glob(f".{path.name}.*.tmp/src.ids")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "seq2seq: interrupted"
    assert _folders(tmp_path) == []


def test_the_data_keys_of_preparation_are_checked_in_one_line():
    config = load_config(None, ["data.train=[europarl, news]", "data.train_weights=[1, 3]"])
    assert config.data.train == ("europarl", "news") and config.data.train_weights == (1.0, 3.0)
    assert load_config(None, ["data.train=news"]).data.train == "news"
    for overrides, fragment in [
        (["data.train=[a, b]", "data.train_weights=[1]"], "has 1 weights for 2 training corpora"),
        (["data.train_weights=[0]"], "data.train_weights=[0.0] must be positive"),
        (["data.num_workers=0"], "data.num_workers=0 must be at least 1"),
        (["data.max_length_ratio=0.5"], "data.max_length_ratio=0.5 must be at least 1"),
        (
            ["data.train=[]"],
            "data.train=[] is not a non-empty string or a non-empty list of strings",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(fragment)) as error:
            load_config(None, overrides)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "settings, words",
    [
        (
            {"train": ("a", "long"), "filter_long": True, "max_length": 3},
            "long keeps no pair of its 2 lines (2 longer than data.max_length=3)",
        ),
        (
            {"train": ("a", "a"), "filter_duplicates": True},
            "a (corpus 2 of data.train) keeps no pair of its 2 lines (2 repeating an earlier pair)",
        ),
    ],
)
def test_a_weighted_corpus_that_keeps_no_pair_is_refused_naming_it(tmp_path, settings, words):
    """Its share of an epoch could not be drawn (it was a ZeroDivisionError in sampling)."""
    write(tmp_path / "data", "a", ["a b", "c"], ["d e", "f"])
    write(tmp_path / "data", "long", ["a b c d", "e f g h i"], ["x y z w", "v"])
    data = config(tmp_path / "data", train_weights=(3.0, 1.0), **settings)
    with pytest.raises(DataError) as error:
        prepare(data)
    message = str(error.value)
    assert "\n" not in message and words in message, message
    assert "data.train_weights" in message
    unweighted = prepare(dataclasses.replace(data, train_weights=None))  # nothing to draw
    assert unweighted.part_sizes == [2, 0]


def test_train_limit_counts_each_corpus_and_every_corpus_is_in_the_manifest(tmp_path):
    write(tmp_path / "data", "europarl", ["a b", "a", "b"], ["c d", "c", "d"])
    write(tmp_path / "data", "news", ["b e", "e"], ["d f", "f"])
    data = config(tmp_path / "data", train=("europarl", "news"), train_limit=2)
    corpus = prepare(data)
    assert [part["prefix"] for part in corpus.manifest["parts"]] == ["europarl", "news"]
    assert corpus.part_sizes == [2, 2]
    assert [p for p, _ in pairs(corpus)] == [["a", "b"], ["a"], ["b", "e"], ["e"]]
    weighted = prepare(dataclasses.replace(data, train_weights=(1.0, 3.0)))
    order = epoch_order(weighted.part_sizes, (1.0, 3.0), random.Random(0))
    assert len(order) == 4 and int((order >= 2).sum()) == 3


def test_train_limit_counts_each_corpus_for_the_sentencepiece_models_too(tmp_path):
    """The models train on the pairs that are prepared: the first N of each corpus."""
    write(tmp_path / "data", "one", multi30k(200, "de")[:100], multi30k(200, "en")[:100])
    write(tmp_path / "data", "two", multi30k(200, "de")[100:], multi30k(200, "en")[100:])
    settings = {"tokenizer": "sentencepiece", "vocab_size": 100, "train_limit": 50}
    limited = prepare(config(tmp_path / "data", train=("one", "two"), **settings))
    write(tmp_path / "data", "first", multi30k(200, "de")[:50], multi30k(200, "en")[:50])
    write(tmp_path / "data", "second", multi30k(200, "de")[100:150], multi30k(200, "en")[100:150])
    whole = prepare(
        config(tmp_path / "data", train=("first", "second"), **{**settings, "train_limit": None})
    )
    assert limited.src.vocab.subword_model == whole.src.vocab.subword_model


def test_no_pair_left_names_every_corpus_and_its_counts_in_words(tmp_path):
    write(tmp_path / "data", "a", ["a b c d", ""], ["d e", "f"])
    write(tmp_path / "data", "b", ["a b c d e"], ["x"])
    data = config(tmp_path / "data", train=("a", "b"), filter_long=True, max_length=3)
    with pytest.raises(DataError) as error:
        prepare(data)
    assert str(error.value) == (
        "no training pair is left after the filters: a keeps no pair of its 2 lines (1 with an "
        "empty side, 1 longer than data.max_length=3), b keeps no pair of its 1 line (1 longer "
        "than data.max_length=3); check the data.filter_* keys and data.max_length_ratio"
    )
