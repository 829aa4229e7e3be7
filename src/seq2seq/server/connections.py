"""Connections that cannot hold the server: uvicorn's h11 protocol with the read timeouts it
lacks, and a lingering close.

uvicorn closes an idle kept-alive connection after `timeout_keep_alive`, but a connection that
never finishes its request headers, or its body, is kept for good (and a graceful shutdown
waits for it). Here a request's headers must all come within `header_timeout_s` of the
connection opening or the last answer, and its body within `body_timeout_s` of the headers
(else a 408).

When the server closes a connection whose client is still sending (a body over the limit,
answered 413 at once), closing outright would make the kernel reset the connection, and the
client would see "connection reset" instead of the 413. As nginx does, the server instead
sends its answer, shuts down its sending side, and reads and drops what still comes for a
little while before closing.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# At shutdown, how long an idle kept-alive connection stays open for a request its client may
# have sent just before (it is answered, then the connection closes).
STOPPING_IDLE_S = 0.5
LINGER_IDLE_S = 2.0  # a lingering close ends when the client is this quiet...
LINGER_MAX_S = 30.0  # ...or after this long in all


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
    """The protocol class for uvicorn's `http=` option, with these timeouts."""
    return type(
        "TimedH11Protocol",
        (TimedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )


class TimedH11Protocol(H11Protocol):
    header_timeout_s: float
    body_timeout_s: float

    def connection_made(self, transport) -> None:
        self._timer = None
        self._seen_cycle = None
        self._linger_started = None
        self._stopping = False
        super().connection_made(LingeringTransport(transport, self))
        self._arm(self.header_timeout_s, self._close)

    def data_received(self, data: bytes) -> None:
        if self._linger_started is not None:  # what a closed request still sends: dropped
            self._arm(LINGER_IDLE_S, self.transport.close_now)
            return
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:  # the headers are all here
            self._seen_cycle = cycle
            cycle.keep_alive = cycle.keep_alive and not self._stopping
            self._arm(self.body_timeout_s, self._body_timed_out)
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            self._disarm()  # the body is all here: now the app has the request

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # kept alive: the next request's headers are due
            self._arm(self.header_timeout_s, self._close)

    def shutdown(self) -> None:
        """uvicorn closes an idle connection at once, under a request its client may have sent
        a moment before: instead, a request that comes within STOPPING_IDLE_S is answered,
        and the connection closes after it."""
        self._stopping = True
        if self.cycle is None or self.cycle.response_complete:
            self._arm(STOPPING_IDLE_S, self._close)
        else:
            self.cycle.keep_alive = False

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close_now()

    def _body_timed_out(self) -> None:
        """A 408 if nothing was answered yet; the connection closes either way."""
        cycle = self.cycle
        if not cycle.response_started:
            self.logger.info("a request body did not arrive within %s s", self.body_timeout_s)
            cycle.response_started = True
            self._write_error(
                b"408 Request Timeout",
                f"the request body did not arrive within {self.body_timeout_s} s",
            )
        self.transport.close_now()

    def _write_error(self, status: bytes, message: str) -> None:
        """The server's one-line JSON error, written past h11 on a connection about to close."""
        body = json.dumps({"error": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
        )

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (no Host in HTTP/1.1, a malformed line): the server's
        one-line JSON 400, where uvicorn sends plain text; then the connection closes."""
        self._write_error(
            b"400 Bad Request", "the request is not valid HTTP/1.1 (is its Host header missing?)"
        )
        self.transport.close()

    def start_lingering(self) -> None:
        self._linger_started = self.loop.time()
        self._arm(LINGER_IDLE_S, self.transport.close_now)
        self.loop.call_later(LINGER_MAX_S, self.transport.close_now)

    def eof_received(self) -> None:
        if self._linger_started is not None:
            self.transport.close_now()


class LingeringTransport:
    """The connection's transport, except that `close()` while the client is still sending
    its request shuts down only the sending side (the answer still goes out whole) and lets
    the protocol drop the rest of the request before the connection closes."""

    def __init__(self, transport, protocol: TimedH11Protocol):
        self._transport = transport
        self._protocol = protocol
        self._lingering = False

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        if self._lingering or self._transport.is_closing():
            return
        still_sending = self._protocol.conn.their_state is h11.SEND_BODY
        if still_sending and self._protocol.cycle is not None and self._transport.can_write_eof():
            self._lingering = True
            self._transport.write_eof()
            self._transport.resume_reading()
            self._protocol.start_lingering()
            return
        self._transport.close()

    def close_now(self) -> None:
        self._transport.close()

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()
