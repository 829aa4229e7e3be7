"""Whom `seq2seq serve` answers: only the Host headers it was told of (by default its own
address and localhost), never redirecting to a host a client named; the API only for JSON,
which a browser sends cross-site only after a CORS preflight, answered only for
--cors-origin; a warning when listening beyond this machine, and IPv6 URLs in brackets."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest
from conftest import FakeTranslator, serving

from seq2seq.server.origin import allowed_hosts, url, warn_if_exposed
from seq2seq.server.registry import ServedModel
from seq2seq.server.settings import ServerSettings

MODELS = {"fake": ServedModel("fake", FakeTranslator(), attention=False)}
PAGE = "http://app.example"


def get(base: str, path: str, host: str | None = None) -> httpx.Response:
    headers = {"Host": host} if host else {}
    return httpx.get(base + path, headers=headers, timeout=30)


def test_only_the_bound_address_and_localhost_are_answered():
    with serving(MODELS, ServerSettings()) as (base, _):
        port = base.rsplit(":", 1)[1]
        answered = {
            host: get(base, "/health", host).status_code
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}")
        }
        rebound = get(base, "/health", f"attacker.example:{port}")
        slash = get(base, "/translate/", f"localhost:{port}")
    assert set(answered.values()) == {200}
    assert rebound.status_code == 400
    assert slash.status_code == 404 and "location" not in slash.headers


def test_allowed_hosts_replace_the_defaults():
    settings = ServerSettings(allowed_hosts=("translate.example", "*.lab.example"))
    with serving(MODELS, settings) as (base, _):
        codes = [
            get(base, "/health", host).status_code
            for host in ("translate.example", "a.lab.example", "localhost", "other.example")
        ]
    assert codes == [200, 200, 400, 400]


def test_a_wildcard_address_answers_only_local_names_unless_told():
    assert allowed_hosts("0.0.0.0", ServerSettings()) == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts("::1", ServerSettings())[-1] == "[::1]"
    assert allowed_hosts("10.0.0.5", ServerSettings())[-1] == "10.0.0.5"


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_the_api_takes_only_json(kind):
    """A page on any site may send these cross-site without asking first."""
    headers = {"Content-Type": kind} if kind else {}
    with serving(MODELS, ServerSettings()) as (base, _):
        refused = httpx.post(f"{base}/translate", content=b'{"text": ["a"]}', headers=headers)
        charset = {"Content-Type": "application/json; charset=utf-8"}
        taken = httpx.post(f"{base}/translate", content=b'{"text": ["a"]}', headers=charset)
    assert refused.status_code == 415
    assert refused.json()["error"].startswith("the body must be sent as Content-Type: applic")
    assert taken.json()["translations"] == ["<a>"]


def preflight(base: str) -> httpx.Response:
    headers = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    return httpx.options(f"{base}/translate", headers=headers)


def test_no_cross_origin_calls_unless_an_origin_is_given():
    with serving(MODELS, ServerSettings()) as (base, _):
        closed = preflight(base)
    with serving(MODELS, ServerSettings(cors_origin=(PAGE,))) as (base, _):
        opened = preflight(base)
        answer = httpx.post(f"{base}/translate", json={"text": ["a"]}, headers={"Origin": PAGE})
    assert "access-control-allow-origin" not in closed.headers
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == PAGE
    assert answer.headers["access-control-allow-origin"] == PAGE


def test_listening_beyond_this_machine_is_one_warning(caplog):
    caplog.set_level(logging.WARNING)
    for host in ("127.0.0.1", "::1", "localhost"):
        warn_if_exposed(host, ServerSettings())
    assert caplog.records == []
    warn_if_exposed("0.0.0.0", ServerSettings())
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "\n" not in record.getMessage()
    assert "other machines can reach" in record.getMessage()
    assert "--allowed-hosts" in record.getMessage()


def test_ipv6_urls_are_bracketed():
    assert url("::", 8000) == "http://[::]:8000"
    assert url("::1", 80) == "http://[::1]:80"
    assert url("127.0.0.1", 8000) == "http://127.0.0.1:8000"


def test_a_server_on_ipv6_loopback_answers():
    if not socket.has_ipv6:
        pytest.fail("this test needs IPv6 on the loopback interface")
    with serving(MODELS, ServerSettings(), host="::1") as (base, _):
        assert base.startswith("http://[::1]:")
        assert httpx.get(f"{base}/health").status_code == 200


def assert_json_refusal(response: httpx.Response, status: int, *fragments: str) -> None:
    """The server's documented refusal: its status, JSON, one line naming the problem."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert "\n" not in error
    for fragment in fragments:
        assert fragment in error


def test_a_bad_host_is_refused_with_one_line_of_json():
    with serving(MODELS, ServerSettings()) as (base, _):
        port = base.rsplit(":", 1)[1]
        rebound = get(base, "/health", f"attacker.example:{port}")
        unreadable = get(base, "/health", "a b")
    assert_json_refusal(
        rebound, 400, f"'attacker.example:{port}'", "not one this server answers", "--allowed-hosts"
    )
    assert_json_refusal(unreadable, 400, "'a b'", "--allowed-hosts")


def test_a_request_without_a_host_or_not_http_is_refused_with_one_line_of_json():
    """HTTP/1.0 may leave out Host (the host check refuses it); HTTP/1.1 may not (the HTTP
    parser refuses it, as it does a line that is not HTTP)."""
    answers = []
    with serving(MODELS, ServerSettings()) as (base, _):
        host, port = base.removeprefix("http://").rsplit(":", 1)
        for request in (b"GET /health HTTP/1.0", b"GET /health HTTP/1.1", b"HELLO"):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(request + b"\r\n\r\n")
                answers.append(read_until_closed(sock))
    expected = ["no Host header", "not valid HTTP", "not valid HTTP"]
    for answer, fragment in zip(answers, expected, strict=True):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), answer
        assert b"content-type: application/json" in head.lower()
        error = json.loads(body)["error"]
        assert fragment in error and "\n" not in error


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_disallowed_cors_preflight_is_refused_with_one_line_of_json():
    headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-a"}
    with serving(MODELS, ServerSettings(cors_origin=(PAGE,))) as (base, _):
        stranger = httpx.options(
            f"{base}/translate", headers={**headers, "Origin": "http://evil.example"}
        )
        method = httpx.options(
            f"{base}/translate",
            headers={"Origin": PAGE, "Access-Control-Request-Method": "DELETE"},
        )
    assert_json_refusal(stranger, 400, "'http://evil.example'", "--cors-origin", "header 'x-a'")
    assert "access-control-allow-origin" not in stranger.headers
    assert_json_refusal(method, 400, "DELETE", "GET, HEAD, POST")
