"""`seq2seq serve` under abuse: a full queue is a 503 with Retry-After; a request past its
deadline is a 503 and is never decoded; a client that hangs up has its work dropped; a slow
model never holds up another; attention maps are capped; silent, half-sent and oversized
requests cannot hold a connection, nor a shutdown; every option is range-checked.

The models are FakeTranslators (conftest): they sleep as a long decode would, so each test
sets up its queue exactly and runs in about a second. The tests that wait out a real timeout or
deadline are marked slow: they run in CI, not in the fast subset."""

from __future__ import annotations

import dataclasses
import http.client
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import httpx
import pytest
import torch
from conftest import ROOT, FakeTranslator, serving

from seq2seq import checkpoint
from seq2seq.errors import ParameterError
from seq2seq.server.registry import ServedModel, served_model
from seq2seq.server.settings import ServerSettings

QUICK = {"max_wait_ms": 0, "max_batch_sentences": 1}
GOLDEN = ROOT / "tests" / "data" / "golden"
CPU = torch.device("cpu")


def served(**translators) -> dict[str, ServedModel]:
    return {name: ServedModel(name, fake, attention=True) for name, fake in translators.items()}


def ask(url: str, text: list[str], timeout: float = 30, **fields) -> httpx.Response:
    return httpx.post(f"{url}/translate", json={"text": text, **fields}, timeout=timeout)


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_full_queue_answers_503_with_retry_after_and_every_request_an_answer():
    gate = threading.Event()
    fake = FakeTranslator(gate=gate)
    settings = ServerSettings(max_queue_sentences=3, **QUICK)
    with serving(served(slow=fake), settings) as (url, _), ThreadPoolExecutor(8) as pool:
        first = pool.submit(ask, url, ["first"])
        time.sleep(0.2)  # "first" is being decoded, held at the gate; the queue is empty
        queued = [pool.submit(ask, url, [f"q{i}"]) for i in range(3)]
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 3)
        refused = ask(url, ["one too many"])
        gate.set()
        assert refused.status_code == 503
        assert "this client has too many sentences waiting" in refused.json()["error"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        answers = [first.result(timeout=30), *(f.result(timeout=30) for f in queued)]
    assert [a.status_code for a in answers] == [200] * 4
    assert "one too many" not in fake.decoded


def ask_from(address: str, url: str, text: list[str]) -> httpx.Response:
    """A request from another client: a connection from another loopback address."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=30) as other:
        return other.post(f"{url}/translate", json={"text": text})


def test_one_clients_flood_neither_refuses_nor_delays_another_clients_request():
    """Client A (127.0.0.1) has one request decoding, held at the gate, and fills its share of
    the queue (3 sentences); its next is refused. Client B (127.0.0.2) is neither refused for
    A's sentences nor made to wait behind them: its request is decoded next."""
    gate = threading.Event()
    fake = FakeTranslator(gate=gate)
    settings = ServerSettings(max_queue_sentences=3, **QUICK)
    with serving(served(slow=fake), settings) as (url, _), ThreadPoolExecutor(8) as pool:
        first = pool.submit(ask, url, ["a0"])
        time.sleep(0.2)  # "a0" is being decoded, held at the gate
        flood = [pool.submit(ask, url, [f"a{i}"]) for i in range(1, 4)]
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 3)
        refused = ask(url, ["a4"])
        other = pool.submit(ask_from, "127.0.0.2", url, ["b"])
        wait_until(lambda: other.done() or httpx.get(f"{url}/health").json()["queued"] == 4)
        gate.set()
        answers = [first.result(timeout=30), *(f.result(timeout=30) for f in flood)]
        assert other.result(timeout=30).status_code == 200, other.result().text
    assert refused.status_code == 503 and "too many sentences waiting" in refused.json()["error"]
    assert [a.status_code for a in answers] == [200] * 4
    assert fake.decoded[:2] == ["a0", "b"]


def test_waiting_requests_take_turns_among_clients():
    """A's six requests wait, then B's two: the batches alternate between the clients
    rather than serving A's six first (the order of A's own six is theirs to race for)."""
    gate = threading.Event()
    fake = FakeTranslator(gate=gate)
    with (
        serving(served(slow=fake), ServerSettings(**QUICK)) as (url, _),
        ThreadPoolExecutor(10) as pool,
    ):
        first = pool.submit(ask, url, ["a0"])
        time.sleep(0.2)  # "a0" is being decoded, held at the gate
        flood = [pool.submit(ask, url, [f"a{i}"]) for i in range(1, 7)]
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 6)
        others = [pool.submit(ask_from, "127.0.0.2", url, [f"b{i}"]) for i in range(2)]
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 8)
        gate.set()
        for pending in [first, *flood, *others]:
            assert pending.result(timeout=30).status_code == 200
    clients = "".join(line[0] for line in fake.decoded)
    assert clients == "ababaaaaa"


@pytest.mark.slow
def test_a_request_past_its_deadline_gets_503_and_is_never_decoded():
    fake = FakeTranslator(seconds=1.0)
    settings = ServerSettings(request_timeout_s=0.4, **QUICK)
    with serving(served(slow=fake), settings) as (url, _), ThreadPoolExecutor(2) as pool:
        busy = pool.submit(ask, url, ["busy"])
        time.sleep(0.1)
        started = time.monotonic()
        late = ask(url, ["late"])
        took = time.monotonic() - started
        assert busy.result(timeout=30).status_code == 503  # its decode took 1 s
        time.sleep(1.2)  # long enough for the worker to have reached "late"
    assert late.status_code == 503 and late.headers["Retry-After"] == "1"
    assert "not answered within this server's 0.4 s" in late.json()["error"]
    assert took < 0.9
    assert fake.decoded == ["busy"]


@pytest.mark.slow
def test_the_work_of_clients_that_hung_up_is_dropped():
    """Ten clients give up after 0.2 s while a decode is held: once it ends, a new request is
    decoded at once, and of the ten only the one already being decoded ever was."""
    gate = threading.Event()
    fake = FakeTranslator(gate=gate)
    with serving(served(slow=fake), ServerSettings(**QUICK)) as (url, _):
        with ThreadPoolExecutor(10) as pool:
            quitters = [pool.submit(ask, url, [f"gone{i}"], timeout=0.2) for i in range(10)]
            for quitter in quitters:
                with pytest.raises(httpx.TimeoutException):
                    quitter.result(timeout=30)
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 0)
        gate.set()
        assert ask(url, ["fresh"]).json()["translations"] == ["<fresh>"]
    assert len(fake.decoded) == 2 and fake.decoded[0].startswith("gone")
    assert fake.decoded[1] == "fresh"


def test_a_client_that_hangs_up_leaves_a_499_in_the_access_log(caplog):
    """One hangs up while its request waits for a decode, one while it sends its body: each
    leaves the access log's line, with 499 (client closed request) as nginx logs it."""
    caplog.set_level(logging.INFO)
    gate = threading.Event()
    with serving(served(slow=FakeTranslator(gate=gate)), ServerSettings(**QUICK)) as (url, _):
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(ask, url, ["held"])
            time.sleep(0.2)  # "held" is being decoded, at the gate
            with pytest.raises(httpx.TimeoutException):
                ask(url, ["gone"], timeout=0.3)
            gate.set()
            assert held.result(timeout=30).status_code == 200
        with connect(url) as sock:
            sock.sendall(POST + b"Content-Length: 100\r\n\r\n" + b'{"text": [')
            time.sleep(0.2)
        wait_until(lambda: caplog.text.count('"POST /translate HTTP/1.1" 499') == 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert sum(line.endswith('"POST /translate HTTP/1.1" 499') for line in lines) == 2
    assert sum(line.endswith('"POST /translate HTTP/1.1" 200') for line in lines) == 1


@pytest.mark.slow
def test_a_slow_model_never_holds_up_another():
    slow, fast = FakeTranslator(seconds=2), FakeTranslator()
    models = served(slow=slow, fast=fast)
    with serving(models, ServerSettings(**QUICK)) as (url, _), ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask, url, ["big"], model="slow")
        time.sleep(0.2)
        started = time.monotonic()
        assert ask(url, ["small"], model="fast").json()["translations"] == ["<small>"]
        assert time.monotonic() - started < 1 and not pending.done()
        assert pending.result(timeout=30).status_code == 200


def test_attention_maps_over_the_cap_are_refused_before_any_is_drawn():
    """ "a b c" has 3 source tokens and the fake's 2 output tokens: (3+1) x (2+1) = 12 weights
    with the <eos> row and column."""
    fake = FakeTranslator()
    with serving(served(fake=fake), ServerSettings(max_attention_cells=20)) as (url, _):
        refused = ask(url, ["a b c", "d e f"], attention=True)
        plain = ask(url, ["a b c", "d e f"])
    assert refused.status_code == 413
    assert refused.json() == {
        "error": "the attention maps would hold 24 weights; this server sends at most 20 in one "
        "response: ask for fewer or shorter sentences, or without attention"
    }
    assert plain.status_code == 200


def test_a_line_over_the_models_length_limit_is_reported_as_truncated():
    """The fake model's data.max_length is 5 tokens."""
    with serving(served(fake=FakeTranslator()), ServerSettings()) as (url, _):
        answer = ask(url, ["a b c", "1 2 3 4 5 6", "x"]).json()
        plain = ask(url, ["a b c"]).json()
    assert answer["truncated"] == [1]
    assert "truncated" not in plain


# Connections.


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sent before closing, and after how many seconds it closed."""
    started, received = time.monotonic(), b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


LIMITS = ServerSettings(header_timeout_s=0.5, body_timeout_s=0.8, keep_alive_s=1)


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
POST = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "chunks",
    [[b""], [HEALTH], [HEALTH + b"\r\n", HEALTH]],
    ids=["silent", "half the headers", "half the next request's headers"],
)
def test_a_connection_without_whole_headers_is_closed_after_the_header_timeout(chunks):
    """Every whole request is answered; the half one is not waited for past 0.5 s. The
    chunks are sent 0.2 s apart."""
    with serving(served(fake=FakeTranslator()), LIMITS) as (url, _), connect(url) as sock:
        for chunk in chunks:
            time.sleep(0.2)
            sock.sendall(chunk)
        received, seconds = closed_after(sock)
    assert received.count(b"HTTP/1.1 200") == len(chunks) - 1
    assert 0.2 < seconds < 1


@pytest.mark.slow
def test_a_half_sent_body_gets_408_after_the_body_timeout():
    head = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with serving(served(fake=FakeTranslator()), LIMITS) as (url, _), connect(url) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"text": [')
        received, seconds = closed_after(sock)
    assert received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b'"the request body did not arrive within 0.8 s"' in received
    assert 0.7 < seconds < 2


@pytest.mark.slow
def test_idle_connections_are_closed():
    """20 connections: kept alive after an answer, or never used."""
    with serving(served(fake=FakeTranslator()), LIMITS) as (url, _):
        used = [connect(url) for _ in range(10)]
        for sock in used:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        unused = [connect(url) for _ in range(10)]
        results = [closed_after(sock) for sock in used + unused]
        for sock in used + unused:
            sock.close()
    assert all(received.startswith(b"HTTP/1.1 200") for received, _ in results[:10])
    assert all(received == b"" for received, _ in results[10:])
    assert max(seconds for _, seconds in results) < 3


@pytest.mark.slow
def test_an_oversized_body_gets_its_413_not_a_connection_reset():
    """urllib sends all 8 MB before it reads the answer: the server reads and drops them."""
    body = b'{"text": ["' + b"a" * 8_000_000 + b'"]}'
    settings = ServerSettings(max_body_bytes=4096)
    with serving(served(fake=FakeTranslator()), settings) as (url, _):
        request = urllib.request.Request(
            f"{url}/translate", data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert b"over this server's 4096 bytes" in refused.value.read()


@pytest.mark.slow
def test_a_half_sent_body_cannot_hold_a_shutdown_past_its_grace_time():
    settings = ServerSettings(body_timeout_s=600, shutdown_grace_s=0.5)
    head = b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with serving(served(fake=FakeTranslator()), settings) as (url, server):
        sock = connect(url)
        sock.sendall(head + b"Content-Length: 100\r\n\r\n0123456789")
        time.sleep(0.2)
        started = time.monotonic()
        server.should_exit = True
        wait_until(lambda: not server.started or server.force_exit, seconds=5)
        closed_after(sock)
        assert time.monotonic() - started < 3
        sock.close()


def test_a_request_sent_on_a_kept_alive_connection_as_the_server_stops_is_answered():
    """uvicorn closes idle connections at once when it stops, under a request their client
    may have just sent: here such a request is answered, and then the connection closes."""
    with serving(served(fake=FakeTranslator()), ServerSettings()) as (url, server):
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        connection.request("GET", "/health")
        assert connection.getresponse().read()
        server.should_exit = True
        time.sleep(0.25)  # the server has begun to stop, and this connection is idle
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        assert connection.sock.recv(1) == b""  # then the server closed it
        connection.close()


@pytest.mark.slow
def test_past_the_grace_time_requests_in_flight_get_a_clean_503(caplog):
    fake = FakeTranslator(seconds=2)
    settings = ServerSettings(shutdown_grace_s=0.3, **QUICK)
    with serving(served(slow=fake), settings) as (url, server), ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(ask, url, [f"s{i}"]) for i in range(2)]
        wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 1)  # one decodes
        server.should_exit = True
        answers = [p.result(timeout=30) for p in pending]
    assert [a.status_code for a in answers] == [503, 503]
    assert answers[0].json() == {"error": "the server is shutting down; try again when it is back"}
    assert server.cut_short == 2
    assert "Traceback" not in caplog.text and "CancelledError" not in caplog.text


class SlowSteps:
    """A model each of whose decoding steps takes `seconds` longer: a long decode whatever the
    batch. It counts its steps and records when the last one began."""

    def __init__(self, model, seconds: float):
        self.model, self.seconds = model, seconds
        self.steps, self.last_step = 0, 0.0

    def decode_step(self, *args, **kwargs):
        self.steps, self.last_step = self.steps + 1, time.monotonic()
        time.sleep(self.seconds)
        return self.model.decode_step(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


@pytest.mark.slow
def test_past_the_grace_time_a_long_decode_stops_at_its_next_step():
    """The golden model decoding 100 steps of 0.02 s, 2 s in all; the shutdown comes 0.3 s in,
    with a grace time of 0.3 s: the decode stops at its next step after the deadline, where
    the search, which cannot be interrupted, went on for another 1.4 s (and the process
    waited for it to exit)."""
    ckpt = checkpoint.load(GOLDEN)
    slow = SlowSteps(ckpt.model, 0.02)
    models = {"slow": served_model("slow", dataclasses.replace(ckpt, model=slow), CPU)}
    settings = ServerSettings(shutdown_grace_s=0.3, max_wait_ms=0)
    with serving(models, settings) as (url, server), ThreadPoolExecutor(1) as pool:
        line = " ".join(["Ein Mann"] * 30)  # 60 tokens: the golden model's limit is 100
        pending = pool.submit(ask, url, [line], min_length=100, max_length=100)
        wait_until(lambda: slow.steps > 0)
        time.sleep(0.3)
        stopped = time.monotonic()
        server.should_exit = True
        answer = pending.result(timeout=30)
        time.sleep(max(0.0, stopped + 2 - time.monotonic()))  # past the decode's 2 s
    assert answer.status_code == 503
    assert slow.steps < 100
    assert slow.last_step - stopped < 0.3 + 0.2
    slow.seconds = 0.0
    with serving(models, settings) as (url, _):  # served again, the model decodes again
        assert ask(url, ["Ein Mann."]).status_code == 200


@pytest.mark.slow
def test_past_the_grace_time_the_log_says_what_each_request_got(caplog):
    """One request is being decoded and gets its 503; one has sent half its body, and only
    sees its connection close: the log says so, not that both got 503."""
    settings = ServerSettings(shutdown_grace_s=0.3, body_timeout_s=600, **QUICK)
    with (
        serving(served(slow=FakeTranslator(seconds=2)), settings) as (url, server),
        ThreadPoolExecutor(1) as pool,
        connect(url) as sock,
    ):
        pending = pool.submit(ask, url, ["decoding"])
        sock.sendall(POST + b"Content-Length: 100\r\n\r\n" + b'{"text": [')
        time.sleep(0.3)
        server.should_exit = True
        answer = pending.result(timeout=30)
        received, _ = closed_after(sock)
    assert answer.status_code == 503 and received == b""
    assert server.cut_short == 2
    assert (
        "stopped with 2 request(s) in flight: 1 got 503, 1 had its connection closed while "
        "still sending its request" in caplog.text
    )
    assert '" 499' not in caplog.text  # the server closed it: nobody hung up


# Options.

NUMBERS = [item for item in fields(ServerSettings) if item.type in ("int", "float")]


@pytest.mark.parametrize("item", NUMBERS, ids=[item.name for item in NUMBERS])
def test_every_numeric_option_is_range_checked(item):
    least, most = item.metadata["least"], item.metadata["most"]
    ServerSettings(**{item.name: least})
    ServerSettings(**{item.name: most})
    wrong = [least - 1, most + 1] + ([math.nan, math.inf] if item.type == "float" else [])
    for value in wrong:  # named as the API spells it; the CLI spells it as its option
        with pytest.raises(
            ParameterError, match=f"^{item.name} must be between {least} and {most}"
        ):
            ServerSettings(**{item.name: value})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("allowed_hosts", ("example.org:80",), "allowed_hosts 'example.org:80' is not a host"),
        ("allowed_hosts", ("a b",), "allowed_hosts 'a b' is not a host"),
        ("cors_origin", ("example.org",), "cors_origin 'example.org' is not an origin"),
        ("cors_origin", ("https://a.org/x",), "cors_origin 'https://a.org/x' is not an origin"),
    ],
)
def test_hosts_and_origins_are_checked(field, value, message):
    with pytest.raises(ParameterError, match=message):
        ServerSettings(**{field: value})
