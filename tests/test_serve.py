"""`seq2seq serve`: concurrent clients each get exactly the translation `Translator` gives for
their text alone, whatever they were batched with; every bad request gets its 4xx and the
server still serves after it; models are served side by side and as an ensemble; a real
server process finishes a request in flight on SIGTERM or Ctrl-C and exits 0; a port in use is
one line; attention models answer with the attention maps the Python API gives; and the web
page translates, and draws those maps, in a real headless Chromium."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from conftest import MULTI30K, ROOT, FakeTranslator, assert_error, cli, serving

from seq2seq import checkpoint, loader
from seq2seq.analysis.attention_maps import attention_maps
from seq2seq.decode import DecodeSettings
from seq2seq.errors import Seq2SeqError
from seq2seq.server.registry import ServedModel, Spec, load_models, parse_specs
from seq2seq.server.settings import ServerSettings
from seq2seq.translate import Translator

GOLDEN = ROOT / "tests" / "data" / "golden"
CPU = torch.device("cpu")
SETTINGS = ServerSettings(max_body_bytes=4096, max_sentences=8, max_characters=200, max_wait_ms=100)
CHROMIUM = Path(os.environ.get("SEQ2SEQ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
HOW_TO_INSTALL = (
    "install Chromium with `apt-get install -y chromium` (Debian; or set SEQ2SEQ_CHROMIUM to a "
    "Chromium binary) and Playwright with `pip install -e '.[dev]'`; .ci/run does both"
)


def alone(paths: list[Path], lines: list[str], beam_size: int = 5, n_best: int = 1):
    """What the CLI's Translator gives for these lines, decoded by themselves."""
    ckpt = loader.load_ensemble(paths, CPU)
    return Translator(ckpt, CPU, DecodeSettings(beam_size=beam_size, n_best=n_best)).nbest(lines)


def maps_alone(path: Path, lines: list[str], beam_size: int = 5):
    """The attention maps the Python API gives for these lines, decoded by themselves."""
    translator = Translator(checkpoint.load(path, CPU), CPU, DecodeSettings(beam_size=beam_size))
    best = [hypotheses[0] for hypotheses in translator.nbest(lines)]
    return attention_maps(translator, lines, best)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """The first 40 German sentences of test2016."""
    if not (MULTI30K / "test_2016_flickr.de.gz").is_file():
        pytest.fail(f"shared Multi30k data not found at {MULTI30K}; set SEQ2SEQ_TEST_DATA")
    with gzip.open(MULTI30K / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as handle:
        return [unicodedata.normalize("NFC", next(handle).rstrip("\n")) for _ in range(40)]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """The golden checkpoint with its weights perturbed: a second model that translates
    differently, so that a request answered by the wrong model shows."""
    ckpt = checkpoint.load(GOLDEN)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in ckpt.model.parameters():
            weight.add_(0.05 * torch.randn(weight.shape, generator=generator))
    path = tmp_path_factory.mktemp("noisy") / "noisy"
    checkpoint.save(path, ckpt.model, ckpt.config, (ckpt.src_vocab, ckpt.tgt_vocab), ckpt.meta)
    return path


@pytest.fixture(scope="module")
def paths(noisy) -> dict[str, list[Path]]:
    return {"golden": [GOLDEN], "noisy": [noisy], "pair": [GOLDEN, noisy]}


@pytest.fixture(scope="module")
def server(paths):
    specs = parse_specs(
        [str(GOLDEN), f"noisy={paths['noisy'][0]}", f"pair={GOLDEN}+{paths['noisy'][0]}"]
    )
    with serving(load_models(specs, CPU), SETTINGS) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


def hypotheses(nbest) -> list[list[tuple[str, float]]]:
    return [[(text, h.log_prob) for text, h in hyps] for hyps in nbest]


def answered(response) -> list[list[tuple[str, float]]]:
    assert response.status_code == 200, response.text
    return [[(h["translation"], h["log_prob"]) for h in hyps] for hyps in response.json()["nbest"]]


def same(got, expected):
    """Equal translations, and log-probabilities equal up to float rounding across batch sizes."""
    assert [[t for t, _ in hyps] for hyps in got] == [[t for t, _ in hyps] for hyps in expected]
    for hyps, wanted in zip(got, expected, strict=True):
        assert [p for _, p in hyps] == pytest.approx([p for _, p in wanted], abs=1e-4)


# Concurrency and batching.


def test_concurrent_clients_each_get_the_translation_of_their_own_text(
    server, client, paths, sentences
):
    """16 clients at once, each with its own sentences and settings: the batches mix their
    texts (and group them by model and settings), and each gets what its text alone gives."""
    clients = 16
    bodies = [
        {
            "text": sentences[2 * i : 2 * i + 1 + i % 2],
            "beam_size": [1, 5][i % 2],
            "n_best": [1, 2][i % 2],
            "model": ["golden", "noisy", "pair"][i % 3],
        }
        for i in range(clients)
    ]
    expected = [
        hypotheses(alone(paths[b["model"]], b["text"], b["beam_size"], b["n_best"])) for b in bodies
    ]
    # The check can fail: no two clients' first sentences translate alike.
    assert len({e[0][0] for e in expected}) == clients
    barrier = threading.Barrier(clients)

    def ask(body):
        with httpx.Client(timeout=60) as own:
            barrier.wait(timeout=60)
            return own.post(f"{server}/translate", json=body)

    before = client.get("/health").json()
    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(ask, bodies, timeout=120))
    for body, response, wanted in zip(bodies, responses, expected, strict=True):
        assert response.json()["model"] == body["model"]
        same(answered(response), wanted)
        assert response.json()["translations"] == [hyps[0][0] for hyps in wanted]
    after = client.get("/health").json()
    assert after["sentences"] - before["sentences"] == sum(len(b["text"]) for b in bodies)
    # 6 groups of model and settings: batched, the 16 requests need fewer than 16 decodes.
    assert after["batches"] - before["batches"] < clients


def test_translations_without_n_best_and_the_default_model(client, sentences):
    body = {"text": sentences[:3] + [""], "beam_size": 5}
    response = client.post("/translate", json=body)
    assert response.status_code == 200, response.text
    expected = [hyps[0][0] for hyps in alone([GOLDEN], body["text"])]
    assert response.json() == {"model": "golden", "translations": expected}
    assert expected[-1] == ""
    empty = client.post("/translate", json={"text": []})
    assert empty.json() == {"model": "golden", "translations": []}


def test_health_and_models_say_what_is_served(client, paths):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/models").json()
    assert [model["name"] for model in info["models"]] == ["golden", "noisy", "pair"]
    assert info["models"][0] == {
        "name": "golden",
        "paths": [str(GOLDEN)],
        "src_lang": "de",
        "tgt_lang": "en",
        "src_vocab_size": 400,
        "tgt_vocab_size": 400,
        "attention": False,
    }
    assert info["models"][2]["paths"] == [str(p) for p in paths["pair"]]
    assert info["default"] == "golden"
    assert info["limits"] == {
        "max_body_bytes": 4096,
        "max_sentences": 8,
        "max_characters": 200,
        "max_beam_size": 12,
        "max_attention_cells": 20_000,
        "max_batch_sentences": 64,
        "max_wait_ms": 100,
        "max_queue_sentences": 256,
        "request_timeout_s": 30.0,
    }


def test_texts_are_never_logged_unless_asked(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.post("/translate", json={"text": ["Ein geheimnisvoller Mann."]})
    assert response.status_code == 200
    assert '"POST /translate HTTP/1.1" 200' in caplog.text  # the access log is on
    assert "geheimnisvoll" not in caplog.text


@pytest.mark.slow
def test_a_long_decode_never_blocks_the_server_and_a_failed_one_is_a_500():
    models = {
        "slow": ServedModel("slow", FakeTranslator(seconds=2), attention=False),
        "broken": ServedModel(
            "broken", FakeTranslator(error=RuntimeError("boom")), attention=False
        ),
    }
    with serving(models, ServerSettings(max_wait_ms=0)) as (url, _), ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, f"{url}/translate", json={"text": ["a"]}, timeout=60)
        time.sleep(0.3)  # the decode is under way
        started = time.monotonic()
        assert httpx.get(f"{url}/health", timeout=60).status_code == 200
        assert time.monotonic() - started < 1 and not slow.done()
        assert slow.result(timeout=60).json()["translations"] == ["<a>"]
        broken = httpx.post(f"{url}/translate", json={"text": ["a"], "model": "broken"})
        assert broken.status_code == 500
        assert broken.json() == {"error": "decoding failed; the server's log says why"}
        assert httpx.post(f"{url}/translate", json={"text": ["a"]}, timeout=60).status_code == 200


# Bad requests.

GOOD = {"text": ["Ein Mann sitzt auf einer Bank."], "beam_size": 2}
BAD = [
    ("over the body limit", "POST", "/translate", {"text": ["a" * 5000]}, 413, "4096 bytes"),
    ("not JSON", "POST", "/translate", '{"text": ["a"', 400, "the body is not valid JSON"),
    ("an empty body", "POST", "/translate", "", 400, "the body is not valid JSON"),
    ("not an object", "POST", "/translate", ["a"], 422, "the body: Input should be an object"),
    ("no text", "POST", "/translate", {"beam_size": 2}, 422, "text: Field required"),
    ("text not a list", "POST", "/translate", {"text": "a"}, 422, "text: Input should be a valid"),
    ("a number as text", "POST", "/translate", {"text": ["a", 3]}, 422, "text[1]: Input should"),
    (
        "beam size as a string",
        "POST",
        "/translate",
        {"text": ["a"], "beam_size": "5"},
        422,
        "beam_size: Input should be a valid integer",
    ),
    (
        "a misspelled key",
        "POST",
        "/translate",
        {"text": ["a"], "beam": 5},
        422,
        "beam: Extra inputs are not permitted",
    ),
    (
        "too many sentences",
        "POST",
        "/translate",
        {"text": ["a"] * 9},
        422,
        "text has 9 sentences; this server takes at most 8 per request",
    ),
    (
        "too long a sentence",
        "POST",
        "/translate",
        {"text": ["a", "b" * 201]},
        422,
        "text[1] has 201 characters; this server takes at most 200 per sentence",
    ),
    (
        "beam size 0",
        "POST",
        "/translate",
        {"text": ["a"], "beam_size": 0},
        422,
        "beam_size must be between 1 and 12 (got 0)",
    ),
    (
        "beam size 13",
        "POST",
        "/translate",
        {"text": ["a"], "beam_size": 13},
        422,
        "beam_size must be between 1 and 12 (got 13)",
    ),
    (
        "n_best above the beam",
        "POST",
        "/translate",
        {"text": ["a"], "beam_size": 2, "n_best": 3},
        422,
        "n_best must be between 1 and beam_size=2 (got 3)",
    ),
    (
        "n_best 0",
        "POST",
        "/translate",
        {"text": ["a"], "n_best": 0},
        422,
        "n_best must be between 1 and beam_size=5 (got 0)",
    ),
    (
        "an unknown model",
        "POST",
        "/translate",
        {"text": ["a"], "model": "nope"},
        422,
        "unknown model 'nope'; this server has 'golden', 'noisy', 'pair'",
    ),
    (
        "attention from a model without",
        "POST",
        "/translate",
        {"text": ["a"], "attention": True},
        422,
        f"model 'golden' has no attention: {GOLDEN} has no attention (model.type=lstm); use "
        "model.type=attention or transformer",
    ),
    (
        "attention from an ensemble",
        "POST",
        "/translate",
        {"text": ["a"], "attention": True, "model": "pair"},
        422,
        "model 'pair' has no attention",
    ),
    (
        "a duplicate key",
        "POST",
        "/translate",
        '{"text": ["a"], "beam_size": 2, "beam_size": 3}',
        422,
        "the key 'beam_size' appears twice in one object; give each key once",
    ),
    (
        "a negative min_length",
        "POST",
        "/translate",
        {"text": ["a"], "min_length": -1},
        422,
        "min_length must be a whole number, at least 0 (got -1)",
    ),
    (
        "max_length 0",
        "POST",
        "/translate",
        {"text": ["a"], "max_length": 0},
        422,
        "max_length must be a whole number, at least 1 (got 0)",
    ),
    (
        "a negative alpha",
        "POST",
        "/translate",
        {"text": ["a"], "alpha": -0.5},
        422,
        "alpha must be a finite number, 0 or more (got -0.5)",
    ),
    (
        "alpha not finite",
        "POST",
        "/translate",
        '{"text": ["a"], "alpha": Infinity}',
        422,
        "alpha: Input should be a finite number",
    ),
    ("an unknown path", "GET", "/nope", None, 404, "no such path /nope; this server has GET /"),
    ("GET /translate", "GET", "/translate", None, 405, "GET is not allowed on /translate"),
    ("POST /health", "POST", "/health", {}, 405, "POST is not allowed on /health"),
]


@pytest.mark.parametrize(
    "method, path, body, status, message", [case[1:] for case in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_request_gets_its_status_and_the_server_still_serves(
    client, method, path, body, status, message
):
    content = body if isinstance(body, str) or body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    response = client.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error
    assert "\n" not in error
    assert client.post("/translate", json=GOOD).json()["translations"] == [
        hyps[0][0] for hyps in alone([GOLDEN], GOOD["text"], beam_size=2)
    ]


def test_length_limits_and_the_length_penalty_decode_as_translator_does(client, sentences):
    settings = {"beam_size": 3, "n_best": 2, "max_length": 4, "min_length": 2, "alpha": 0.6}
    response = client.post("/translate", json={"text": sentences[:3], **settings})
    ckpt = checkpoint.load(GOLDEN, CPU)
    expected = Translator(ckpt, CPU, DecodeSettings(**settings)).nbest(sentences[:3])
    same(answered(response), hypotheses(expected))
    assert all(len(t.split()) <= 4 for t in response.json()["translations"])
    scores = [h["score"] for hyps in response.json()["nbest"] for h in hyps]
    assert scores == pytest.approx([h.score for hyps in expected for _, h in hyps], abs=1e-4)


def test_head_health_answers_without_a_body(client):
    response = client.head("/health")
    assert response.status_code == 200 and response.content == b""


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(client):
    """No Content-Length: the chunks are counted as they come."""
    chunks = (b"x" * 1000 for _ in range(100))
    headers = {"Content-Type": "application/json"}
    response = client.post("/translate", content=chunks, headers=headers)
    assert response.status_code == 413
    assert client.post("/translate", json=GOOD).status_code == 200


# Command line: bad arguments, a port in use.


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--max-beam-size", "0"], ["--max-beam-size must be between 1 and 1000 (got 0)"]),
        (["--max-wait-ms", "-1"], ["--max-wait-ms must be between 0 and 1000 (got -1.0)"]),
        (["--max-wait-ms", "nan"], ["--max-wait-ms must be between 0 and 1000 (got nan)"]),
        (["--max-wait-ms", "inf"], ["--max-wait-ms must be between 0 and 1000 (got inf)"]),
        (["--max-wait-ms", "1e9"], ["--max-wait-ms must be between 0 and 1000 (got 1000000000.0)"]),
        (["--shutdown-grace-s", "nan"], ["--shutdown-grace-s must be between 0 and 3600"]),
        (["--allowed-hosts", "a b"], ["--allowed-hosts 'a b' is not a host name or address"]),
        (["--allowed-hosts", "{x}"], ["--allowed-hosts '{x}' is not a host name or address"]),
        (["--cors-origin", "*.org"], ["--cors-origin '*.org' is not an origin"]),
        (["--port", "70000"], ["--port must be between 0 and 65535 (got 70000)"]),
        (["--num-threads", "0"], ["--num-threads must be at least 1 (got 0)"]),
        (["--host", "not a host"], ["cannot listen on host 'not a host'", "127.0.0.1"]),
    ],
)
def test_bad_server_options_are_one_line(capsys, argv, fragments):
    assert_error(capsys, cli(["serve", GOLDEN, "--port", "0", *argv]), *fragments)


def test_a_missing_checkpoint_is_one_line(capsys, tmp_path):
    code = cli(["serve", tmp_path / "nothing", "--port", "0"])
    assert_error(capsys, code, "does not exist")


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        code = cli(["serve", GOLDEN, "--port", port])
    assert_error(capsys, code, f"port {port} on 127.0.0.1 is in use", "--port")


def test_model_names_from_directories_or_given():
    specs = parse_specs(["runs/tutorial", "b=runs/x/best", "runs/a+runs/b", "ens=a/best+b/last"])
    assert specs == [
        Spec("tutorial", ("runs/tutorial",)),
        Spec("b", ("runs/x/best",)),
        Spec("a+b", ("runs/a", "runs/b")),
        Spec("ens", ("a/best", "b/last")),
    ]


@pytest.mark.parametrize(
    "runs, message",
    [
        (["runs/a", "other/a"], "two models are named 'a'; name them apart with NAME=PATH"),
        (["=runs/a"], "cannot read model '=runs/a'"),
        (["x=runs/a+"], "cannot read model 'x=runs/a+'"),
        (["my model=runs/a"], "model name 'my model' may hold only letters"),
    ],
)
def test_bad_model_arguments_are_refused(runs, message):
    with pytest.raises(Seq2SeqError, match=re.escape(message)):
        parse_specs(runs)


# A real process, stopped by a signal.


class ServerProcess:
    """`seq2seq serve` in a process of its own, its log lines read as they come."""

    def __init__(self, *options: str):
        argv = [sys.executable, "-m", "seq2seq.cli", "serve", str(GOLDEN), "--port", "0"]
        argv += ["--device", "cpu", *options]
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(
            target=lambda: [self.lines.put(line) for line in self.process.stderr], daemon=True
        ).start()

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=0.1))
                if match := re.search(pattern, self.seen[-1]):
                    return match
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.log()}")

    def log(self) -> str:
        time.sleep(0.2)  # the reader thread drains the last lines
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def translate_while(server: ServerProcess, act) -> httpx.Response:
    """Sends a request, and once the server has logged its text, calls act()."""
    port = server.wait_for(r"serving golden on http://127\.0\.0\.1:(\d+) ")[1]
    with ThreadPoolExecutor(1) as pool:
        url = f"http://127.0.0.1:{port}/translate"
        pending = pool.submit(httpx.post, url, json=SIGNALLED, timeout=60)
        server.wait_for(r"translate with golden: \[\"Ein Mann sitzt auf einer Bank\.\"\]")
        act()
        return pending.result(timeout=60)


SIGNALLED = {"text": ["Ein Mann sitzt auf einer Bank."], "beam_size": 3}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_the_request_in_flight_then_exits_0(sig):
    """The request waits 1 s for company in the batcher when the signal comes."""
    server = ServerProcess("--max-wait-ms", "1000", "--log-text")
    try:
        response = translate_while(server, lambda: server.process.send_signal(sig))
        assert server.process.wait(timeout=60) == 0, server.log()
    finally:
        server.stop()
    assert response.status_code == 200
    expected = alone([GOLDEN], SIGNALLED["text"], beam_size=3)
    assert response.json()["translations"] == [expected[0][0][0]]
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_a_second_ctrl_c_answers_503_and_exits_1_without_tracebacks():
    server = ServerProcess("--max-wait-ms", "1000", "--log-text")

    def twice():
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        server.process.send_signal(signal.SIGINT)

    try:
        response = translate_while(server, twice)
        assert server.process.wait(timeout=60) == 1, server.log()
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.json() == {"error": "the server is shutting down; try again when it is back"}
    log = server.log()
    assert "stopped with 1 request(s) in flight: 1 got 503" in log
    assert "Traceback" not in log and "CancelledError" not in log


@pytest.mark.slow
def test_an_ipv6_address_is_printed_in_brackets():
    server = ServerProcess("--host", "::1")
    try:
        port = server.wait_for(r"serving golden on http://\[::1\]:(\d+) ")[1]
        assert httpx.get(f"http://[::1]:{port}/health", timeout=30).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    finally:
        server.stop()


# Attention models.


@pytest.fixture(scope="module")
def attentive_server(attention_run, transformer_run):
    """An RNN attention model (the default), a Transformer and the golden LSTM."""
    specs = parse_specs(
        [f"attention={attention_run}", f"transformer={transformer_run}", str(GOLDEN)]
    )
    with serving(load_models(specs, CPU), SETTINGS) as (url, _):
        yield url


@pytest.mark.slow
def test_attention_models_answer_with_the_maps_of_their_translations(
    attentive_server, attention_run, transformer_run, sentences
):
    with httpx.Client(base_url=attentive_server, timeout=60) as client:
        info = client.get("/models").json()
        served = {model["name"]: model["attention"] for model in info["models"]}
        assert served == {"attention": True, "transformer": True, "golden": False}
        text = [sentences[0], "", sentences[1]]
        for name, path in (("attention", attention_run), ("transformer", transformer_run)):
            body = {"text": text, "model": name, "attention": True, "n_best": 2}
            response = client.post("/translate", json=body)
            assert response.status_code == 200, response.text
            answer, expected = response.json(), maps_alone(path, text)
            assert answer["translations"] == [found.translation for found in expected]
            assert [len(hyps) for hyps in answer["nbest"]] == [2, 2, 2]
            for got, wanted in zip(answer["attention"], expected, strict=True):
                assert set(got) == {"source_tokens", "target_tokens", "weights"}
                assert got["source_tokens"] == wanted.source_tokens
                assert got["target_tokens"] == wanted.target_tokens
                weights = torch.tensor(got["weights"])
                assert torch.allclose(weights, torch.tensor(wanted.weights), atol=1e-5)
                assert torch.allclose(weights.sum(-1), torch.ones(len(weights)), atol=1e-5)
            assert answer["attention"][1] == {
                "source_tokens": [],
                "target_tokens": [],
                "weights": [],
            }
            plain = client.post("/translate", json={"text": text, "model": name}).json()
            assert plain == {"model": name, "translations": answer["translations"]}
        refused = client.post(
            "/translate", json={"text": ["a"], "model": "golden", "attention": True}
        )
        assert refused.status_code == 422 and "has no attention" in refused.json()["error"]


# The web page, in a real browser.


@contextlib.contextmanager
def browser_page():
    """A page in headless Chromium; without Playwright or Chromium, a failure saying how to
    install them, never a skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the web page test needs Playwright: {HOW_TO_INSTALL}")
    if not CHROMIUM.is_file():
        pytest.fail(f"the web page test needs Chromium, not found at {CHROMIUM}: {HOW_TO_INSTALL}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.mark.slow
def test_the_web_page_translates_in_a_real_browser(server, sentences):
    text = sentences[:2]
    expected = "\n".join(hyps[0][0] for hyps in alone([GOLDEN], text, beam_size=3))
    assert expected.strip(), "pick sentences with a non-empty translation"
    with browser_page() as page:
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').options.length === 3")
        page.fill("#source", "\n".join(text))
        page.fill("#beam", "3")
        page.click("#translate")
        page.wait_for_function("document.getElementById('translation').textContent !== ''")
        assert page.text_content("#translation") == expected
        assert page.query_selector_all("#attention svg") == []  # an LSTM has no map
        page.fill("#beam", "13")  # past the server's limit: the page says so
        page.click("#translate")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert page.text_content("#error") == "The beam size must be a whole number from 1 to 12."


@pytest.mark.slow
def test_the_web_page_draws_the_attention_map_of_an_attention_model(
    attentive_server, attention_run, sentences
):
    text = sentences[:2]
    expected = maps_alone(attention_run, text)
    lstm = "\n".join(hyps[0][0] for hyps in alone([GOLDEN], text))
    with browser_page() as page:
        page.goto(attentive_server + "/")
        page.wait_for_function("document.getElementById('model').options.length === 3")
        page.fill("#source", "\n".join(text))
        page.click("#translate")  # the default model, the attention one: no maps unless asked
        page.wait_for_function("document.getElementById('translation').textContent !== ''")
        assert page.query_selector_all("#attention svg") == []
        page.check("#show-attention")
        page.click("#translate")
        page.wait_for_function("document.querySelectorAll('#attention svg').length === 2")
        assert page.text_content("#translation") == "\n".join(m.translation for m in expected)
        for svg, wanted in zip(page.query_selector_all("#attention svg"), expected, strict=True):
            labels = [t.text_content() for t in svg.query_selector_all("text.source")]
            assert labels == wanted.source_tokens
            labels = [t.text_content() for t in svg.query_selector_all("text.target")]
            assert labels == wanted.target_tokens
            cells = [float(c.get_attribute("data-weight")) for c in svg.query_selector_all(".cell")]
            assert cells == pytest.approx([w for row in wanted.weights for w in row], abs=1e-5)
            assert svg.bounding_box()["height"] > 24 * len(wanted.target_tokens)  # drawn, shown
        page.select_option("#model", "golden")  # an LSTM: the translation, and no map
        assert not page.is_visible("#show-attention")
        page.click("#translate")
        page.wait_for_function(
            f"document.getElementById('translation').textContent === {json.dumps(lstm)}"
        )
        assert page.query_selector_all("#attention svg") == []


@pytest.mark.slow
def test_the_web_page_clears_a_stale_translation_shows_an_empty_one_and_is_busy(server, sentences):
    with browser_page() as page:
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').options.length === 3")
        # Records whether the busy indicator ever showed, however short the request.
        page.evaluate(
            """new MutationObserver(() => { if (!document.getElementById('busy').hidden)
            window.sawBusy = true; }).observe(document.getElementById('busy'),
            { attributes: true })"""
        )
        page.fill("#source", f"{sentences[0]}\n\n{sentences[1]}")
        page.click("#translate")
        page.wait_for_function("document.getElementById('translation').textContent !== ''")
        assert page.evaluate("window.sawBusy") is True
        assert page.is_hidden("#busy")
        assert page.text_content("#translation .empty") == "(empty translation)"
        page.fill("#beam", "13")  # refused: the old translation must not stay under the error
        page.click("#translate")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert page.text_content("#translation") == ""
        assert page.text_content("#error").startswith("The beam size must be")


@pytest.mark.slow
def test_the_web_page_says_when_the_server_is_unreachable_and_declines_huge_maps(server):
    huge = {
        "source_tokens": [f"s{j}" for j in range(60)],
        "target_tokens": [f"t{i}" for i in range(60)],
        "weights": [[1 / 60] * 60 for _ in range(60)],
    }
    answer = {"model": "golden", "translations": ["t0 t1"], "attention": [huge]}
    with browser_page() as page:
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').options.length === 3")
        page.fill("#source", "Ein Mann.")
        page.route("**/translate", lambda route: route.abort())
        page.click("#translate")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert page.text_content("#error").startswith("Cannot reach the server")
        page.unroute("**/translate")
        page.route("**/translate", lambda route: route.fulfill(json=answer))
        page.click("#translate")
        page.wait_for_selector(".map-declined")
        assert "3600 cells, too many to draw" in page.text_content(".map-declined")
        assert page.query_selector_all("#attention svg") == []
        assert page.text_content("#error") == ""


def loaded_page(page, server: str) -> list[str]:
    """Opens the page; the errors its console shows, as they come."""
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').options.length === 3")
    return errors


def error_after(page, text: str, beam: str = "5") -> str:
    page.fill("#source", text)
    page.fill("#beam", beam)
    page.click("#translate")
    page.wait_for_function("document.getElementById('error').textContent !== ''")
    return page.text_content("#error")


@pytest.mark.slow
def test_the_web_page_says_what_it_cannot_send_in_words_for_a_person(server):
    """Nothing to translate, a beam out of range, too many or too long lines (this server takes
    8 lines of 200 characters): the page says so, counting lines from one, and sends nothing."""
    with browser_page() as page:
        loaded_page(page, server)
        sent = []
        page.on("request", lambda request: "/translate" in request.url and sent.append(request))
        placeholder = page.get_attribute("#source", "placeholder")
        assert "one sentence a line" in placeholder  # an instruction, not a sentence to translate
        nothing = (
            "There is nothing to translate: type or paste some text above, one sentence a line."
        )
        assert error_after(page, "") == nothing
        assert error_after(page, " \n\t\n") == nothing
        beam = "The beam size must be a whole number from 1 to 12."
        assert error_after(page, "Ein Mann.", beam="13") == beam
        assert error_after(page, "Ein Mann.", beam="2.5") == beam
        assert error_after(page, "a\n" * 9) == (
            "There are 9 lines; this server translates at most 8 at a time. Translate them in "
            "parts."
        )
        assert error_after(page, "a\n" + "b" * 201) == (
            "Line 2 has 201 characters; this server translates at most 200 in a line. Split it "
            "into shorter sentences."
        )
        assert error_after(page, "b" * 201 + "\na\n" + "c" * 300).startswith(
            "Lines 1 and 3 have more than 200 characters"
        )
        assert sent == []


def refusing(status: int, error: str):
    """A route handler answering as the server refuses, with a Retry-After of 7 s."""
    headers = {"Retry-After": "7"}
    return lambda route: route.fulfill(status=status, json={"error": error}, headers=headers)


@pytest.mark.slow
def test_the_web_page_says_a_busy_or_stopping_server_is_nobodys_fault(server):
    """The server's refusals as the page tells them: a full queue, a timeout and a shutdown
    are not the user's doing, and the API's `text[0]` is the text area's line 1."""
    answers = [
        (
            503,
            "this client has too many sentences waiting for model 'golden'; try again soon",
            "The server is busy with other requests, so nothing was translated. Try again in 7 "
            "seconds.",
        ),
        (
            503,
            "not answered within this server's 30.0 s; try again",
            "The server did not finish in time, so nothing was translated. Try again, or with "
            "fewer or shorter lines.",
        ),
        (
            503,
            "the server is shutting down; try again when it is back",
            "The server is shutting down, so nothing was translated. Try again when it is back.",
        ),
        (
            422,
            "text[0] has 1491 characters; this server takes at most 1000 per sentence",
            "Not translated: Line 1 has 1491 characters; this server takes at most 1000 per "
            "sentence.",
        ),
        (
            500,
            "decoding failed; the server's log says why",
            "The translation failed on the server; its log says why.",
        ),
    ]
    with browser_page() as page:
        loaded_page(page, server)
        for status, error, shown in answers:
            page.route("**/translate", refusing(status, error))
            assert error_after(page, "Ein Mann.") == shown
            page.unroute("**/translate")


@pytest.mark.slow
def test_the_web_page_shows_truncation_prominently_and_its_console_stays_clean(server):
    answer = {"model": "golden", "translations": ["a", "b", "c"], "truncated": [0, 2]}
    with browser_page() as page:
        errors = loaded_page(page, server)
        page.fill("#source", "Ein Mann.")
        page.click("#translate")
        page.wait_for_function("document.getElementById('translation').textContent !== ''")
        assert page.is_hidden("#warning")  # nothing was cut
        page.route("**/translate", lambda route: route.fulfill(json=answer))
        page.fill("#source", "x\ny\nz")
        page.click("#translate")
        page.wait_for_selector("#warning", state="visible")
        warning = page.text_content("#warning")
        assert "Lines 1 and 3 were longer than the model reads" in warning
        style = page.evaluate(
            """(() => { const s = getComputedStyle(document.getElementById('warning'));
            return [s.backgroundColor, s.fontWeight, s.fontSize,
                    getComputedStyle(document.body).fontSize]; })()"""
        )
        background, weight, size, body_size = style
        assert background not in ("rgba(0, 0, 0, 0)", "transparent")  # a box, not grey text
        assert int(weight) >= 600 and float(size[:-2]) >= float(body_size[:-2])
        page.wait_for_timeout(500)  # a late favicon request would show by now
    assert errors == []
