"""Every command that writes, against a place it may not write and a full disk: one line naming
the place and the fix, never a traceback, never a half-written file, and never the loss of the
file or checkpoint a write would have replaced (src/seq2seq/writing.py).

A full disk is a file-size limit (`ulimit -f`), set in this process: a write past it fails with
EFBIG as one past the end of a disk fails with ENOSPC. An unwritable place is a read-only
folder, or for root, whom modes do not stop, a path beneath a regular file."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import stat
import threading
from pathlib import Path

import pytest
from conftest import assert_error, cli, isolated
from helpers import SRC, TGT, TINY, make_model, save, snapshot, tiny_argv

from seq2seq import checkpoint, writing
from seq2seq.analysis.plot import LOG_KEYS
from seq2seq.config import Config, TransformerConfig
from seq2seq.data.vocab import model_sizes
from seq2seq.models import build_model
from seq2seq.training.report import Report, ScalarLog
from seq2seq.writing import WriteError


@contextlib.contextmanager
def file_size_limit(size: int):
    """No file of this process may grow past `size` bytes (Python ignores SIGXFSZ, so a write
    past it fails with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A place no write can reach, for root too."""
    if os.geteuid() == 0:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        return blocker / "inside"
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder / "inside"


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


# The write helper itself.


def test_a_file_follows_the_umask_as_open_would(tmp_path):
    with umask(0o022):
        writing.write_file(tmp_path / "a" / "file.txt", "text", parents=True)
        writing.write_cache(tmp_path / "cache.bin", b"bytes")
    for path in (tmp_path / "a" / "file.txt", tmp_path / "cache.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "file.txt"
    writing.write_file(path, "old")
    with file_size_limit(10), pytest.raises(WriteError) as error:
        writing.write_file(path, "x" * 100)
    assert str(error.value) == (
        f"cannot write {path}: File too large; the file is larger than this process may write "
        f"(ulimit -f); raise the limit, or write elsewhere"
    )
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


def test_a_cache_that_cannot_be_written_is_a_warning(unwritable, caplog):
    writing.write_cache(unwritable / "entry.bin", b"bytes")
    assert "cannot write" in caplog.text and "the cache only saves time" in caplog.text


def test_an_unwritable_place_is_named_with_the_fix(unwritable):
    with pytest.raises(WriteError) as error:
        writing.write_file(unwritable / "file.txt", "text")
    message = str(error.value)
    assert message.startswith(f"cannot write {unwritable}")
    assert "\n" not in message and (
        "give a place you may write to" in message or "folder" in message
    )


# Checkpoints.


def test_a_checkpoint_follows_the_umask(tmp_path):
    with umask(0o027):
        save(tmp_path / "ckpt", make_model())
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o750
    for file in (tmp_path / "ckpt").iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o640, file.name


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    save(tmp_path / "ckpt", make_model(0), {"epoch": 1})
    with file_size_limit(1000), pytest.raises(WriteError) as error:
        save(tmp_path / "ckpt", make_model(1), {"epoch": 2})
    assert str(error.value).startswith(f"cannot write {tmp_path / 'ckpt'}: File too large; ")
    assert checkpoint.load(tmp_path / "ckpt").meta["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt"]


def test_an_unwritable_checkpoint_place_is_one_error(unwritable):
    with pytest.raises(WriteError, match=f"cannot write {unwritable}"):
        save(unwritable / "ckpt", make_model())
    shutil.rmtree(unwritable, ignore_errors=True)


# Commands.


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A run directory with one small checkpoint, best/."""
    run = tmp_path_factory.mktemp("run") / "run"
    save(run / "best", make_model(0), {"epoch": 1, "step": 10})
    return run


def test_average_into_an_unwritable_place_is_one_line(saved_run, unwritable, capsys):
    code = cli(["average", saved_run / "best", saved_run / "best", "--output", unwritable])
    assert_error(capsys, code, f"cannot write {unwritable}")


def test_average_onto_a_full_disk_is_one_line_and_leaves_nothing(saved_run, tmp_path, capsys):
    with file_size_limit(1000):
        code = cli(["average", saved_run / "best", "--output", tmp_path / "mean"])
    assert_error(capsys, code, f"cannot write {tmp_path / 'mean'}: File too large")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory) -> Path:
    """An untrained one-layer Transformer checkpoint: enough to export."""
    config = Config(
        model=TransformerConfig(
            d_model=8, heads=2, ff_size=16, encoder_layers=1, decoder_layers=1, dropout=0.0
        )
    )
    model = build_model(config.model, **model_sizes(SRC, TGT))
    path = tmp_path_factory.mktemp("transformer") / "best"
    checkpoint.save(path, model, config, (SRC, TGT), {"epoch": 1, "step": 1})
    return path


def test_export_to_an_unwritable_place_is_one_line(transformer_run, unwritable, capsys):
    pytest.importorskip("ctranslate2")
    code = cli(["export", transformer_run, "--output", unwritable])
    assert_error(capsys, code, f"cannot write {unwritable}")


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(transformer_run, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    with file_size_limit(1000):
        code = cli(["export", transformer_run, "--output", tmp_path / "ct2"])
    assert_error(capsys, code, f"cannot write {tmp_path / 'ct2'}: File too large")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_translations_to_an_unwritable_place_are_one_line(
    command, saved_run, unwritable, tmp_path, capsys
):
    code = cli([*decode(command, saved_run, tmp_path), "--output", unwritable / "out.en"])
    assert_error(capsys, code, f"cannot write {unwritable / 'out.en'}")


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_translations_onto_a_full_disk_keep_the_old_file(command, saved_run, tmp_path, capsys):
    out = tmp_path / "out.en"
    out.write_text("old\n")
    argv = [*decode(command, saved_run, tmp_path), "--output", out]
    with file_size_limit(1):
        code = cli(argv)
    assert_error(capsys, code, f"cannot write {out}: File too large")
    assert out.read_text() == "old\n" and hidden_leftovers(tmp_path) == []


def decode(command: str, run: Path, folder: Path) -> list:
    """A command line of `translate` or `evaluate` (on a split of three pairs) of `run`."""
    if command == "translate":
        return ["translate", run, "ein mann über straße", "ein mann"]
    for lang, text in (("de", "ein mann\nüber straße\nein\n"), ("en", "a man\nover\na\n")):
        (folder / "split").mkdir(exist_ok=True)
        (folder / "split" / f"pairs.{lang}").write_text(text)
    return ["evaluate", run, "--split", "pairs", "--data-dir", folder / "split"]


@pytest.fixture
def logged_run(tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    record = {key: 1.0 for key in LOG_KEYS} | {"epoch": 1}
    (run / "log.jsonl").write_text(json.dumps(record) + "\n")
    return run


def test_a_plot_to_an_unwritable_place_is_one_line(logged_run, unwritable, capsys):
    pytest.importorskip("matplotlib")
    code = cli(["plot", logged_run, "--output", unwritable / "curves.svg"])
    assert_error(capsys, code, f"cannot write {unwritable / 'curves.svg'}")


def test_a_plot_onto_a_full_disk_keeps_the_old_figure(logged_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "curves.svg"
    figure.write_text("old")
    with file_size_limit(1000):
        code = cli(["plot", logged_run, "--output", figure])
    assert_error(capsys, code, f"cannot write {figure}: File too large")
    assert figure.read_text() == "old" and hidden_leftovers(tmp_path) == []


# The cache, shared through SEQ2SEQ_CACHE, is readable as the user's umask allows.


def test_every_cache_file_follows_the_umask(corpus, tmp_path, capsys):  # noqa: F811 (a fixture)
    cache = tmp_path / "cache"
    argv = ["prepare", TINY, f"data.dir={corpus}", "data.train_limit=200"]
    argv += ["data.tokenizer=sentencepiece", "data.vocab_size=200"]
    with isolated(cache), umask(0o022):
        assert cli(argv) == 0
    files = [path for path in cache.rglob("*") if path.is_file()]
    kinds = {path.parent.name for path in files}
    assert {"subword", "corpora"} <= kinds, kinds  # SentencePiece models, digests.json
    for path in [cache, *cache.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path.relative_to(cache), oct(mode))


# Training: the run folder, its checkpoints and its log.


@pytest.mark.slow  # prepares the corpus
def test_training_into_an_unwritable_place_is_one_line(corpus, unwritable, capsys):  # noqa: F811
    code = cli(tiny_argv(corpus, unwritable, "train.epochs=1"))
    assert_error(capsys, code, f"cannot write {unwritable}")


@pytest.mark.slow  # trains
def test_a_full_disk_at_the_first_save_is_one_line_and_leaves_no_checkpoint(
    corpus,  # noqa: F811 (a fixture)
    tmp_path,
    capsys,
):
    argv = tiny_argv(corpus, tmp_path, "train.epochs=1")
    assert cli(["prepare", *argv[1:]]) == 0  # the prepared corpus is in the cache, whole
    capsys.readouterr()
    with file_size_limit(20 * 1024):  # ulimit -f 20
        code = cli(argv)
    assert_error(capsys, code, f"cannot write {tmp_path / 'tiny'}/", "File too large")
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["config.yaml"]


@pytest.mark.slow  # trains
def test_a_full_disk_while_resuming_keeps_the_last_checkpoint(
    one_epoch,
    corpus,  # noqa: F811 (a fixture)
    tmp_path,
    capsys,
):
    run = shutil.copytree(one_epoch, tmp_path / "tiny")
    before = snapshot(run / "last")
    with file_size_limit(20 * 1024):
        code = cli(tiny_argv(corpus, tmp_path, "train.epochs=2", "resume=true"))
    assert_error(capsys, code, f"cannot write {run}/", "File too large")
    assert snapshot(run / "last") == before and hidden_leftovers(run) == []


def test_a_full_disk_while_logging_an_epoch_keeps_the_log_whole(tmp_path):
    report = Report(tmp_path, tensorboard=False)
    record = {"epoch": 1, "train_loss": 1.0, "train_ppl": 2.7, "val_loss": 1.0, "val_ppl": 2.7}
    record |= {"val_free_ppl": 3.0, "val_bleu": 1.0, "val_bleu_tokenized": 1.0, "seconds": 1.0}
    report.write(record | {"tokens_per_second": 10.0})
    logged = (tmp_path / "log.jsonl").read_text()
    with file_size_limit(len(logged) + 10), pytest.raises(WriteError, match="File too large"):
        report.write(record | {"epoch": 2, "tokens_per_second": 10.0})
    assert (tmp_path / "log.jsonl").read_text() == logged and hidden_leftovers(tmp_path) == []


def test_a_full_disk_while_writing_tensorboard_is_one_line(tmp_path, capfd):
    pytest.importorskip("tensorboard")
    scalars = ScalarLog(tmp_path, enabled=True)
    records = [{"epoch": epoch, "train_loss": 1.0 / epoch} for epoch in range(1, 400)]
    with file_size_limit(2000), pytest.raises(WriteError) as error:
        for record in records:  # the events file outgrows the limit within a few records
            scalars.write(record)
        scalars.close()
    assert str(error.value).startswith(f"cannot write {tmp_path / 'tensorboard'}: File too large")
    assert "Traceback" not in capfd.readouterr().err  # not even from TensorBoard's thread


def test_prepare_into_an_unwritable_cache_is_one_line(corpus, unwritable, capsys):  # noqa: F811
    with isolated(unwritable):
        code = cli(["prepare", TINY, f"data.dir={corpus}", "data.train_limit=100"])
    assert_error(capsys, code, "cannot write")


def test_prepare_onto_a_full_disk_is_one_line_and_leaves_nothing(corpus, tmp_path, capsys):  # noqa: F811
    with isolated(tmp_path / "cache"), file_size_limit(2000):
        code = cli(["prepare", TINY, f"data.dir={corpus}", "data.train_limit=100"])
    assert_error(capsys, code, "File too large")
    assert hidden_leftovers(tmp_path / "cache") == []
    assert not [path for path in (tmp_path / "cache").glob("corpora/*") if path.is_dir()]


# What is not a plain file is written through, never replaced.


def test_a_pipe_is_written_through_not_replaced(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    read = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_bytes()), daemon=True)
    reader.start()
    writing.write_file(pipe, "through\n")
    reader.join(timeout=30)
    assert read == [b"through\n"] and stat.S_ISFIFO(pipe.stat().st_mode)


def test_a_link_keeps_linking_to_its_file_which_is_replaced(tmp_path):
    (tmp_path / "real.txt").write_text("old")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    writing.write_file(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "real.txt").read_text() == "new"
