"""Reading corpus files: finding them, and every way a user's files can be wrong."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from seq2seq.config import DataConfig
from seq2seq.data import splits
from seq2seq.data.files import SplitFiles, data_dirs, locate_split
from seq2seq.data.reading import read_split
from seq2seq.errors import DataError


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read_parallel(src: Path, tgt: Path, *, skip_empty: bool):
    return read_split(SplitFiles(src, tgt), skip_empty=skip_empty)


def _pair(directory: Path, src: bytes, tgt: bytes, prefix: str = "train") -> tuple[Path, Path]:
    return _write(directory / f"{prefix}.de", src), _write(directory / f"{prefix}.en", tgt)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(cache))
    return cache


# Finding the files.


def test_missing_files_name_the_files_and_every_folder_searched(tmp_path, monkeypatch):
    configured, from_env, cache = tmp_path / "configured", tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv("SEQ2SEQ_DATA", str(from_env))
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(cache))
    config = DataConfig(corpus="files", dir=str(configured))
    with pytest.raises(DataError) as error:
        splits.load_split(config, "train")
    message = str(error.value)
    assert "train.de[.gz] and train.en[.gz]" in message
    for directory in (configured, from_env, cache / "multi30k"):
        assert str(directory) in message
    assert "data.dir" in message


def test_a_multi30k_prefix_in_a_subfolder_is_not_downloaded(tmp_path, private_cache):
    with pytest.raises(DataError, match=r"cannot find mine/train\.de\[\.gz\]"):
        locate_split("mine/train", ("de", "en"), data_dirs(str(tmp_path)), "multi30k")


def test_an_unknown_multi30k_file_without_checksum_is_refused(tmp_path, private_cache):
    with pytest.raises(DataError) as error:
        locate_split("holdout", ("de", "en"), data_dirs(str(tmp_path)), "multi30k")
    message = str(error.value)
    assert "no checksum is recorded for Multi30k file holdout.de.gz" in message
    assert str(private_cache / "multi30k") in message
    assert not (private_cache / "multi30k" / "holdout.de.gz").exists()


def test_data_dirs_are_data_dir_then_env_then_cache(tmp_path, monkeypatch, private_cache):
    monkeypatch.setenv("SEQ2SEQ_DATA", str(tmp_path / "env"))
    assert data_dirs(str(tmp_path / "configured")) == [
        tmp_path / "configured",
        tmp_path / "env",
        private_cache / "multi30k",
    ]
    monkeypatch.setenv("SEQ2SEQ_DATA", "")
    assert data_dirs(None) == [private_cache / "multi30k"]
    assert data_dirs("~/corpora")[0] == Path.home() / "corpora"


def test_lookup_order_is_data_dir_then_env_then_cache(tmp_path, monkeypatch, private_cache):
    configured, from_env = tmp_path / "configured", tmp_path / "env"
    for directory in (configured, from_env, private_cache / "multi30k"):
        _pair(directory, b"Hallo.\n", f"from {directory.name}\n".encode())
    monkeypatch.setenv("SEQ2SEQ_DATA", str(from_env))

    def found(config: DataConfig) -> str:
        return splits.load_split(config, "train").tgt_text[0]

    assert found(DataConfig(corpus="files", dir=str(configured))) == "from configured"
    assert found(DataConfig(corpus="files")) == "from env"
    monkeypatch.delenv("SEQ2SEQ_DATA")
    assert found(DataConfig(corpus="files")) == "from multi30k"
    assert found(DataConfig(corpus="multi30k")) == "from multi30k"


def test_both_languages_come_from_the_same_folder(tmp_path, monkeypatch, private_cache):
    half, whole = tmp_path / "half", tmp_path / "whole"
    _write(half / "train.de", b"nur deutsch\n")
    _pair(whole, b"beide\n", b"both\n")
    monkeypatch.setenv("SEQ2SEQ_DATA", str(whole))
    paths = locate_split("train", ("de", "en"), data_dirs(str(half)), "files")
    assert paths == [whole / "train.de", whole / "train.en"]


@pytest.mark.slow
def test_files_corpus_with_a_custom_prefix(tmp_path, private_cache):
    _write(tmp_path / "europarl" / "dev.fr.gz", "Le chat a mangé.\nUn chien court.\n".encode())
    _write(tmp_path / "europarl" / "dev.en", b"The cat ate.\nA dog runs.\n")
    config = DataConfig(
        corpus="files", dir=str(tmp_path), src_lang="fr", tgt_lang="en", valid="europarl/dev"
    )
    split = splits.load_split(config, "valid")
    assert split.name == "europarl/dev"
    assert split.src_path == tmp_path / "europarl" / "dev.fr.gz"
    assert split.src_tokens == [["le", "chat", "a", "mangé", "."], ["un", "chien", "court", "."]]
    assert split.tgt_tokens == [["the", "cat", "ate", "."], ["a", "dog", "runs", "."]]
    # Any name that is not train/valid/val/test is a prefix of its own.
    assert splits.load_split(config, "europarl/dev") == split


# Reading a split: line counts, empty files and empty lines.


def test_line_count_mismatch_names_both_files_and_counts(tmp_path):
    src, tgt = _pair(tmp_path, b"a\nb\nc\n", b"x\ny\n")
    with pytest.raises(DataError) as error:
        read_parallel(src, tgt, skip_empty=True)
    assert f"{src} has 3 lines but {tgt} has 2" in str(error.value)
    assert "line-aligned" in str(error.value)


def test_latin1_file_is_refused_at_the_first_bad_line(tmp_path):
    _write(tmp_path / "latin1.de", "Ein Hund.\nZwei Katzen.\nGrüße\n".encode("latin-1"))
    _write(tmp_path / "latin1.en", b"A dog.\nTwo cats.\nGreetings\n")
    with pytest.raises(DataError, match=r"latin1\.de line 3 is not valid UTF-8"):
        splits.load_split(DataConfig(corpus="files", dir=str(tmp_path)), "latin1")


def test_invalid_utf8_in_the_target_file_is_refused(tmp_path):
    src, tgt = _pair(tmp_path, b"a\nb\n", b"x\n\xc3(\n")
    with pytest.raises(DataError, match=f"{tgt} line 2"):
        read_parallel(src, tgt, skip_empty=True)


@pytest.mark.parametrize(
    ("src_bytes", "tgt_bytes", "message"),
    [
        (b"", b"x\n", "{src} is empty"),
        (b"a\n", b"", "{tgt} has 0"),
        (b"a\n\n \n", b"\nb\n\n", "{src} / {tgt} hold no pair with text on both sides"),
    ],
    ids=["empty source", "empty target", "no pair with text on both sides"],
)
def test_files_without_a_usable_pair_are_refused_by_name(tmp_path, src_bytes, tgt_bytes, message):
    src, tgt = _pair(tmp_path, src_bytes, tgt_bytes)
    with pytest.raises(DataError) as error:
        read_parallel(src, tgt, skip_empty=True)
    assert message.format(src=src, tgt=tgt) in str(error.value)


def test_pairs_with_an_empty_side_are_skipped_for_training_and_kept_otherwise(tmp_path, caplog):
    src_lines = ["Ein Hund.", "", "Zwei Katzen.", "Drei.", "  \t", "Vier."]
    tgt_lines = ["A dog.", "Lost.", "Two cats.", " ", "Also lost.", "Four."]
    src, tgt = _pair(tmp_path, "\n".join(src_lines).encode(), "\n".join(tgt_lines).encode())
    with caplog.at_level(logging.INFO, logger="seq2seq.data.reading"):
        skipped = read_parallel(src, tgt, skip_empty=True)
        kept = read_parallel(src, tgt, skip_empty=False)
    assert skipped.src == ["Ein Hund.", "Zwei Katzen.", "Vier."]
    assert skipped.tgt == ["A dog.", "Two cats.", "Four."]
    assert (kept.src, kept.tgt) == (src_lines, tgt_lines)
    warning, info = caplog.records
    assert (warning.levelno, info.levelno) == (logging.WARNING, logging.INFO)
    assert "skipped 3 sentence pairs" in warning.getMessage()
    assert "3 sentence pairs" in info.getMessage() and "all are kept" in info.getMessage()
    for record in (warning, info):
        assert str(src) in record.getMessage() and str(tgt) in record.getMessage()
        assert "first at line 2" in record.getMessage()


def test_no_warning_when_every_pair_has_text(tmp_path, caplog):
    src, tgt = _pair(tmp_path, b"a\nb\n", b"x\ny\n")
    with caplog.at_level(logging.WARNING, logger="seq2seq.data.reading"):
        assert read_parallel(src, tgt, skip_empty=True).tgt == ["x", "y"]
    assert caplog.records == []


def test_only_the_training_split_skips_pairs_with_an_empty_side(tmp_path, private_cache):
    for prefix in ("train", "test_2016_flickr", "val"):
        _pair(tmp_path, b"Ein Hund.\n\nZwei.\n", b"A dog.\nLost.\n\n", prefix=prefix)
    config = DataConfig(corpus="files", dir=str(tmp_path))
    train = splits.load_split(config, "train")
    assert train.src_text == ["Ein Hund."]
    for name in ("test", "val"):
        split = splits.load_split(config, name)
        assert split.src_text == ["Ein Hund.", "", "Zwei."]
        assert split.tgt_text == ["A dog.", "Lost.", ""]
        assert split.src_tokens == [["ein", "hund", "."], [], ["zwei", "."]]
        assert split.tgt_tokens == [["a", "dog", "."], ["lost", "."], []]
