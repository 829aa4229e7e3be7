"""What each request got: an ASGI middleware that follows every request to its end.

uvicorn writes a request's access-log line when its answer starts, and writes none for an
answer nobody reads: a client that hung up before its answer left no trace. Here such a
request gets its line, with 499 (client closed request), as nginx writes it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

ACCESS = logging.getLogger("uvicorn.access")
CLIENT_CLOSED = 499


@dataclass(eq=False)  # one exchange is equal only to itself: the set removes it by identity
class Exchange:
    """One request and its answer, as far as they went."""

    scope: dict
    status: int | None = None  # the answer's, once it started
    answered: bool = False  # the whole answer went out
    hung_up: bool = False  # the connection closed before the answer started


class InFlight:
    """The requests in flight, each followed by `Follow`."""

    def __init__(self):
        self.exchanges: set[Exchange] = set()


class Follow:
    """ASGI middleware: records each request's progress in `in_flight`, and logs 499 for one
    whose client hung up before its answer started."""

    def __init__(self, app, in_flight: InFlight):
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        exchange = Exchange(scope)

        async def receiving():
            message = await receive()
            if message["type"] == "http.disconnect" and exchange.status is None:
                exchange.hung_up = True
            return message

        async def sending(message):
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif not message.get("more_body", False):
                exchange.answered = True
            await send(message)

        self.in_flight.exchanges.add(exchange)
        try:
            await self.app(scope, receiving, sending)
        finally:
            self.in_flight.exchanges.discard(exchange)
            if exchange.hung_up:
                log_access(scope, CLIENT_CLOSED)


def log_access(scope: dict, status: int) -> None:
    """The access-log line uvicorn would have written for this answer."""
    ACCESS.info(
        '%s - "%s %s HTTP/%s" %d',
        get_client_addr(scope),
        scope["method"],
        get_path_with_query_string(scope),
        scope["http_version"],
        status,
    )
