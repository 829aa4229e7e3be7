"""Whom the server answers: the Host headers it accepts (against DNS rebinding, where a hostile
page's name comes to point at 127.0.0.1), the browser origins it lets call the API (none unless
given), and how its address is written in a URL."""

from __future__ import annotations

import ipaddress
import logging
import re

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)

LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A Host header: a name or address (an IPv6 one in brackets), and a port.
HOST_HEADER = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


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
    app.add_middleware(TrustedHosts, allowed=allowed_hosts(host, settings))
    if settings.cors_origin:
        app.add_middleware(
            CrossOrigin,
            allow_origins=list(settings.cors_origin),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Content-Type"],
        )


class TrustedHosts:
    """ASGI middleware: a request whose Host header names none of `allowed` (a name, `*.` and
    a name for its subdomains, an address, or `*` for any) is refused with a one-line JSON 400,
    as Starlette's TrustedHostMiddleware refuses it in plain text."""

    def __init__(self, app, allowed: list[str]):
        self.app = app
        self.allowed = [pattern.lower() for pattern in allowed]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get("host")
        if given is None:
            error = "the request has no Host header; send one naming this server"
        elif not self.allows(given):
            error = (
                f"the Host header {given!r} is not one this server answers; its operator can "
                f"add the name with --allowed-hosts"
            )
        else:
            return await self.app(scope, receive, send)
        await JSONResponse({"error": error}, status_code=400)(scope, receive, send)

    def allows(self, given: str) -> bool:
        match = HOST_HEADER.fullmatch(given)
        if match is None:
            return False
        host = match["host"].lower()
        return any(
            pattern in ("*", host) or (pattern.startswith("*.") and host.endswith(pattern[1:]))
            for pattern in self.allowed
        )


class CrossOrigin(CORSMiddleware):
    """Starlette's CORS middleware, refusing a preflight it does not allow with one line of
    JSON naming what it asked for, rather than `Disallowed CORS origin` in plain text."""

    def preflight_response(self, request_headers: Headers):
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        reasons = self._refusals(request_headers) or ["this cross-origin request is not allowed"]
        error = "; ".join(reasons)
        return JSONResponse({"error": error}, status_code=400, headers=headers)

    def _refusals(self, request_headers: Headers) -> list[str]:
        origin = request_headers["origin"]
        method = request_headers["access-control-request-method"]
        asked = request_headers.get("access-control-request-headers") or ""
        reasons = []
        if not self.is_allowed_origin(origin=origin):
            reasons.append(
                f"pages from {origin!r} may not call this server; its operator can allow them "
                f"with --cors-origin"
            )
        if method not in self.allow_methods:
            reasons.append(
                f"a page may send this server only {', '.join(self.allow_methods)}, not {method}"
            )
        for header in (h.strip().lower() for h in asked.split(",") if h.strip()):
            if header not in self.allow_headers:
                reasons.append(f"a page may not send this server the header {header!r}")
        if request_headers.get("access-control-request-private-network") is not None:
            reasons.append("this server takes no requests from public pages to a private network")
        return reasons


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
