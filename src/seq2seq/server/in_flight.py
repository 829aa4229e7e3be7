"""What each request got: an ASGI middleware that follows every request to its end.

uvicorn writes a request's access-log line when its answer starts, and writes none for an
answer nobody reads: a client that hung up before its answer left no trace. Here such a
request gets its line, with 499 (client closed request), as nginx writes it. And a shutdown
past its grace time can say what each request still in flight got: its 503, or its connection
closed with the request half sent."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

ACCESS = logging.getLogger("uvicorn.access")
CLIENT_CLOSED = 499


@dataclass(eq=False)  # one exchange is equal only to itself: the set removes it by identity
class Exchange:
    """One request and its answer, as far as they went."""

    scope: dict
    body_read: bool = field(init=False)  # the whole request body has come
    status: int | None = None  # the answer's, once it started
    answered: bool = False  # the whole answer went out
    hung_up: bool = False  # the connection closed before the answer started

    def __post_init__(self):
        headers = dict(self.scope["headers"])
        self.body_read = (
            headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers
        )

    def outcome(self) -> str:
        """What its client got, in words."""
        if self.answered:
            return f"got {self.status}"
        if not self.body_read:
            return "had its connection closed while still sending its request"
        if self.status is not None:
            return f"had its connection closed in the middle of its {self.status}"
        return "had its connection closed unanswered"


class InFlight:
    """The requests in flight, each followed by `Follow`."""

    def __init__(self):
        self.exchanges: set[Exchange] = set()
        self.closing = False  # the server closes the connections: nobody hung up

    @staticmethod
    def outcomes(exchanges: list[Exchange]) -> str:
        """What these requests got, counted: `2 got 503, 1 had its connection closed ...`."""
        counts = Counter(exchange.outcome() for exchange in exchanges)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{count} {outcome}" for outcome, count in ordered)


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
            if message["type"] == "http.request":
                exchange.body_read = not message.get("more_body", False)
            elif exchange.status is None:
                exchange.hung_up = not self.in_flight.closing
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
