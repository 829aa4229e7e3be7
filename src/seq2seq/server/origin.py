"""Whom the server answers: the Host headers it accepts (against DNS rebinding, where a hostile
page's name comes to point at 127.0.0.1), the browser origins it lets call the API (none unless
given), and how its address is written in a URL."""

from __future__ import annotations

import ipaddress
import logging

from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts(host: str, settings: ServerSettings) -> list[str]:
    """The given --allowed-hosts, else the bound address and this machine's loopback names. A
    wildcard address (0.0.0.0, ::) is nobody's Host header: its clients need --allowed-hosts."""
    if settings.allowed_hosts:
        return list(settings.allowed_hosts)
    hosts = list(LOCAL_NAMES)
    if not _is_wildcard(host):
        hosts.append(_bracketed(host))
    return hosts


def add_origin_rules(app, host: str, settings: ServerSettings) -> None:
    # Middleware added last runs first: CORS answers a browser's preflight before the host
    # check sees the request (the host check still guards the request that follows).
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, settings), www_redirect=False
    )
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origin),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Content-Type"],
        )


def url(host: str, port: int) -> str:
    return f"http://{_bracketed(host)}:{port}"


def warn_if_exposed(host: str, settings: ServerSettings) -> None:
    if _is_loopback(host):
        return
    hosts = ", ".join(allowed_hosts(host, settings))
    log.warning(
        "listening on %s, which other machines can reach: anyone who can connect may translate "
        "(answering Host headers %s; --allowed-hosts changes them)",
        host,
        hosts,
    )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
