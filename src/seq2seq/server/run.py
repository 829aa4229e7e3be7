"""Running the server: bind the port first (a port in use is one line, before any model loads),
load the models once, then serve with uvicorn until SIGINT or SIGTERM, which finish the
requests in flight within the grace time and return normally. Past the grace time, or at a
second Ctrl-C, the requests still in flight are answered 503 (those still sending theirs have
their connections closed), the decodes stop at the end of their piece, the log says what each
request got, and the exit status is 1."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import threading

import torch
import uvicorn

from seq2seq.errors import Seq2SeqError
from seq2seq.server.app import build_app
from seq2seq.server.connections import timed_protocol
from seq2seq.server.origin import url, warn_if_exposed
from seq2seq.server.registry import load_models, parse_specs
from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)


def serve(
    runs: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: torch.device,
    settings: ServerSettings = ServerSettings(),
    quantize: str = "none",
) -> int:
    """Serves until stopped; the exit status: 0, or 1 if requests were cut short."""
    specs = parse_specs(runs)
    sock = bind(host, port)
    try:
        models = load_models(specs, device, quantize=quantize)
        server = GracefulServer(uvicorn_config(build_app(models, settings, host), settings))
        names = ", ".join(models)
        warn_if_exposed(host, settings)
        address = url(host, sock.getsockname()[1])
        log.info("serving %s on %s (Ctrl-C or SIGTERM stops)", names, address)
        server.run(sockets=[sock])
    finally:
        sock.close()
    # The process exits next. Its last garbage collection would walk every object the models
    # and torch hold, for seconds on a busy machine, to free what exiting frees anyway.
    gc.freeze()
    return 1 if server.cut_short else 0


def uvicorn_config(app, settings: ServerSettings) -> uvicorn.Config:
    # log_config=None: uvicorn's lines go through the project's logging, like every other.
    return uvicorn.Config(
        app,
        log_config=None,
        lifespan="on",
        http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        # The grace time is GracefulServer's: uvicorn's own would cancel the requests in
        # flight, each a traceback and a plain-text 500.
        timeout_graceful_shutdown=None,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0 picks a free one). Connections made while the
    models load wait in its backlog."""
    if not 0 <= port <= 65535:
        raise Seq2SeqError(f"--port must be between 0 and 65535 (got {port})")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise Seq2SeqError(
            f"cannot listen on host {host!r} ({error.strerror}); give --host an address "
            f"such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise Seq2SeqError(
                f"port {port} on {host} is in use; stop what holds it or choose another with --port"
            ) from None
        raise Seq2SeqError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that:
    - after a graceful shutdown on SIGINT or SIGTERM it returns instead of raising the signal
      again (which would end the process with the signal's status rather than 0);
    - the shutdown is bounded: once `shutdown_grace_s` has passed, or at a second Ctrl-C,
      every request still in flight is answered 503 by the app's `abort` (or, still sending
      its request, has its connection closed), `cut_short` counts them, and the log says what
      each got."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.shutdown_grace_s = config.app.state.settings.shutdown_grace_s
        self.cut_short = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rest: asyncio.Future | None = None

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread; tests run servers in others
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit and self._loop is not None:  # a second Ctrl-C while stopping
            self._loop.call_soon_threadsafe(self._force)

    async def shutdown(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        if self.force_exit:  # the second Ctrl-C came before the shutdown began
            self._force()
        timer = self._loop.call_later(self.shutdown_grace_s, self._force)
        try:
            await super().shutdown(sockets)  # returns once the rest are answered, if forced
        finally:
            timer.cancel()
        if self._rest is not None:
            await self._rest
            await self.lifespan.shutdown()  # uvicorn skips it when forced

    def _force(self) -> None:
        if self._rest is None:
            log.warning("stopping now: requests still in flight get 503, or are closed if unsent")
            self.force_exit = True
            self._rest = asyncio.ensure_future(self._answer_the_rest())

    async def _answer_the_rest(self) -> None:
        in_flight = self.config.app.state.in_flight
        cut = list(in_flight.exchanges)
        self.cut_short = len(cut)
        self.config.app.state.abort()
        for _ in range(40):  # at most 2 s for the 503s to go out
            if all(not exchange.body_read for exchange in in_flight.exchanges):
                break
            await asyncio.sleep(0.05)
        # What is left waits for a body that has not come: closed, which ends its task too.
        in_flight.closing = True
        for connection in list(self.server_state.connections):
            connection.transport.close_now()
        if cut:
            log.error("stopped with %d request(s) in flight: %s", len(cut), in_flight.outcomes(cut))
