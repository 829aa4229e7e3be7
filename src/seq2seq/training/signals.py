"""Stopping on request: SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the current
step, so the saved state is always a whole step; a second Ctrl-C stops at once. Every process
of a torchrun group stops after the same step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from seq2seq import distributed


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict]:
    """Yields a dict whose "signal" holds the name of the first stop signal received."""
    stop = {"signal": None}

    def request(number, frame):
        if stop["signal"] and number == signal.SIGINT:
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(number).name

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_requested(stop: dict) -> str | None:
    """The signal that asked this process or another to stop, if one did."""
    number = signal.Signals[stop["signal"]].value if stop["signal"] else 0
    number = distributed.max_over_processes(number)
    return signal.Signals(number).name if number else None
