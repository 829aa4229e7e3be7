"""Shared fixtures. Tests read Multi30k from ../shared/data/multi30k (beside the project root)
and never touch the network or the user's cache."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_TEST_DATA", ROOT.parent / "shared" / "data" / "multi30k"))
CONFIGS = ROOT / "configs"

torch.set_num_threads(1)  # tiny models: threads cost more than they give


@contextlib.contextmanager
def isolated(cache: Path):
    """A private cache, no data location but the shared data, and no reachable download."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQ2SEQ_CACHE", str(cache))
        patch.delenv("SEQ2SEQ_DATA", raising=False)
        patch.setenv("SEQ2SEQ_MULTI30K_URL", "http://127.0.0.1:9/unreachable/")
        yield


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test runs isolated; module-scoped fixtures use `isolated` themselves."""
    cache = tmp_path_factory.getbasetemp() / "cache"  # shared by the session: tokenize once
    with isolated(cache):
        yield cache


def cli(argv: list) -> int:
    """seq2seq's main(), with argparse's own exits turned into their exit code."""
    from seq2seq.cli import main

    try:
        return main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    return MULTI30K


def assert_error(
    capsys, code: int, *fragments: str, exit_code: int = 2, prefix: str = "seq2seq: error: "
) -> str:
    """The exit code, no traceback, and the error as the one and last `seq2seq:` line of
    stderr (log lines may precede it), naming each fragment; returns that line."""
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = err.splitlines()
    ours = [line for line in lines if line.startswith("seq2seq:")]
    assert len(ours) == 1 and lines[-1] == ours[0], err
    assert ours[0].startswith(prefix), ours[0]
    for fragment in fragments:
        assert fragment in ours[0], ours[0]
    return ours[0]


def train_briefly(tmp_path_factory, config: str, *overrides: str, pairs: int = 500) -> Path:
    """A config trained on the first `pairs` Multi30k pairs for one epoch: a real run directory
    (log.jsonl, best/) for the commands that read one."""
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    output_dir = tmp_path_factory.mktemp("run")
    argv = ["train", CONFIGS / config, f"output_dir={output_dir}", f"data.dir={MULTI30K}"]
    argv += [f"data.train_limit={pairs}", "train.epochs=1", *overrides]
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        assert cli(argv) == 0
    return output_dir / next(p.name for p in output_dir.iterdir())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml on 500 Multi30k pairs for one epoch, trained once for the session."""
    return train_briefly(tmp_path_factory, "tiny.yaml")


# Validation BLEU decodes at most 5 tokens a sentence: the attention runs' epochs stay short.
SHORT_VALIDATION = ("train.max_length_a=0", "train.max_length_b=5")


@pytest.fixture(scope="session")
def attention_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml as an RNN attention model (reading its source reversed, as tiny.yaml
    does), on 300 pairs for one epoch."""
    overrides = ("model.type=attention", "name=attention", *SHORT_VALIDATION)
    return train_briefly(tmp_path_factory, "tiny.yaml", *overrides, pairs=300)


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory) -> Path:
    """configs/transformer.yaml shrunk to one layer each way, 2 heads and d_model 32, at a
    constant learning rate, on 300 pairs for one epoch. (tiny.yaml cannot become a
    Transformer by overrides: its model keys belong to the RNNs.)"""
    shrunk = ["model.d_model=32", "model.heads=2", "model.ff_size=64"]
    shrunk += ["model.encoder_layers=1", "model.decoder_layers=1", "train.keep_checkpoints=0"]
    shrunk += ["train.batch_size=64", "train.lr_schedule=constant", "train.lr=0.003"]
    shrunk += SHORT_VALIDATION
    return train_briefly(tmp_path_factory, "transformer.yaml", *shrunk, pairs=300)


# The tiny training recipe's corpus and runs, shared by every test file that trains it.


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from helpers import write_split

    if not (MULTI30K / "train.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    folder = tmp_path_factory.mktemp("corpus")
    write_split(folder, "train", 0, 640)
    write_split(folder, "val", 0, 100)
    return folder


@pytest.fixture(scope="session")
def straight(corpus, tmp_path_factory) -> Path:
    """Two epochs without a stop: what every stopped and resumed run must reproduce."""
    from helpers import tiny, train

    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("straight"), "train.epochs=2"))


@pytest.fixture(scope="session")
def one_epoch(corpus, tmp_path_factory) -> Path:
    """The same recipe stopped after one epoch; tests only read it."""
    from helpers import tiny, train

    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        return train(tiny(corpus, tmp_path_factory.mktemp("one_epoch"), "train.epochs=1"))


# Serving: a real server in a thread of the test process (test_serve*.py).


@contextlib.contextmanager
def serving(models: dict, settings, host: str = "127.0.0.1"):
    """A real `seq2seq serve` server (uvicorn, the timed protocol, the graceful shutdown) on a
    free port; yields (base URL, the server)."""
    import threading
    import time

    from seq2seq.server.app import build_app
    from seq2seq.server.run import GracefulServer, bind, uvicorn_config

    sock = bind(host, 0)
    server = GracefulServer(uvicorn_config(build_app(models, settings, host), settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    address = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{address}:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


class FakeTranslator:
    """Stands in for a Translator in the server: sleeps (as a long decode would, in the
    worker thread), waits for `gate` to open, or fails, and records the lines it decoded."""

    settings = None

    def __init__(self, seconds: float = 0.0, error: Exception | None = None, gate=None):
        self.seconds, self.error, self.gate = seconds, error, gate
        self.decoded: list[str] = []
        self.ckpt = _FakeCheckpoint()
        self.src_tokenizer = _FakeTokenizer()

    def with_settings(self, settings):
        return self

    def nbest(self, lines):
        import time

        time.sleep(self.seconds)
        if self.gate is not None:
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        if self.error:
            raise self.error
        self.decoded += lines
        return [[(f"<{line}>", _FakeHypothesis())] for line in lines]


class _FakeTokenizer:
    def tokenize_many(self, lines):
        return [line.split() for line in lines]


class _FakeHypothesis:
    tokens = [4, 5]


class _FakeCheckpoint:
    class config:  # noqa: N801
        class data:  # noqa: N801
            max_length = 5
