"""Running the server: bind the port first (a port in use is one line, before any model loads),
load the models once, then serve with uvicorn until SIGINT or SIGTERM, which finish the
requests in flight and return normally."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading

import torch
import uvicorn

from seq2seq.errors import Seq2SeqError
from seq2seq.server.app import build_app
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
) -> None:
    specs = parse_specs(runs)
    sock = bind(host, port)
    try:
        models = load_models(specs, device, quantize=quantize)
        # log_config=None: uvicorn's lines go through the project's logging, like every other.
        config = uvicorn.Config(build_app(models, settings), log_config=None, lifespan="on")
        port = sock.getsockname()[1]
        names = ", ".join(models)
        log.info("serving %s on http://%s:%d (Ctrl-C or SIGTERM stops)", names, host, port)
        GracefulServer(config).run(sockets=[sock])
    finally:
        sock.close()


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
    """uvicorn's server, except that after a graceful shutdown on SIGINT or SIGTERM it returns
    instead of raising the signal again (which would end the process with the signal's status
    rather than 0). A second Ctrl-C still forces the exit."""

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
