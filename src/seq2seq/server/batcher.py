"""Batching concurrent requests for one model: requests wait at most `max_wait` seconds for
others to join them, up to `max_sentences` sentences, and each batch is decoded in the model's
own worker thread, one group of equal decode settings at a time, so the event loop only ever
queues and answers, and a slow model never holds up another's requests.

Clients are served fairly, so that one client's flood neither refuses nor delays another's
request. Each client (its address) may have at most `max_queued` sentences waiting: past
that, its request is refused at once with the time its sentences need to drain, while other
clients' requests are still taken. And waiting requests are taken in start-time fair queueing
order (Goyal, Vin and Cheng 1996, SFQ), counted in sentences: each client's requests are
tagged in turn from where the service has got to, so a client with one sentence waiting goes
before the rest of another's flood, and clients with work waiting share the batches. A request
withdrawn while it waits (its client hung up, or its deadline passed) leaves the queue then,
so nobody's work is decoded for nobody."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# decode(key, lines) -> one result per line; key says how to decode (the settings).
Decode = Callable[[Hashable, list[str]], list[Any]]


class QueueFull(Exception):
    """The client's share of the model's queue is full; `retry_after` seconds should drain
    it."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The server stopped before this request could be decoded."""


@dataclass(eq=False)  # one job is equal only to itself: the queue removes it by identity
class Job:
    key: Hashable
    lines: list[str]
    future: asyncio.Future
    client: Hashable
    turn: float  # its start tag: jobs are taken lowest first
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        decode: Decode,
        *,
        name: str,
        max_sentences: int,
        max_wait: float,
        max_queued: int,
        stopping: threading.Event,
    ):
        self.decode = decode
        self.name = name
        self.max_sentences = max_sentences
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.batches = 0  # decode calls so far, for /health
        self.sentences = 0
        self.refused = 0  # requests answered 503 because the queue was full
        self.queued = 0  # sentences waiting, not yet decoding
        self._pace = 0.01  # seconds a sentence takes to decode, smoothed; for Retry-After
        self._waiting: list[Job] = []  # in the order they came
        self._queued_by: Counter[Hashable] = Counter()  # sentences waiting, by client
        self._served_to = 0.0  # the turn of the latest job taken into a batch
        self._last_turn: dict[Hashable, float] = {}  # where each client's next turn begins
        self._decoding: list[Job] = []
        self._arrived = asyncio.Event()
        self._closed = False
        self.stopping = stopping  # set by `abort`; the decode reads it, to stop
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{name}")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.stopping.clear()  # its model may have been served, and stopped, before
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Called once every request in flight has been answered (or `abort` answered it)."""
        self._closed = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A decode cut short by `abort` finishes in its thread; nobody waits for it here.
        self._worker.shutdown(wait=False)

    def abort(self) -> None:
        """Answer every waiting and decoding request with ShuttingDown, now, and set
        `stopping`, which the decode under way reads in its thread to stop at its next step
        (`registry.Stoppable`)."""
        self._closed = True
        self.stopping.set()
        for job in [*self._waiting, *self._decoding]:
            if not job.future.done():
                job.future.set_exception(ShuttingDown())
        self._waiting.clear()
        self._queued_by.clear()
        self.queued = 0

    async def submit(self, key: Hashable, lines: list[str], client: Hashable = None) -> list[Any]:
        """The results for these lines, for `client`. Cancelling the caller withdraws the
        request: out of the queue if it still waits there, its results dropped if it is being
        decoded."""
        if self._closed:
            raise ShuttingDown()
        if not lines:
            return []
        mine = self._queued_by[client]
        if mine and mine + len(lines) > self.max_queued:
            self.refused += 1
            raise QueueFull(min(60, math.ceil(self._drain_s(client)) + 1))
        turn = max(self._served_to, self._last_turn.get(client, 0.0))
        self._last_turn[client] = turn + len(lines)
        job = Job(key, lines, asyncio.get_running_loop().create_future(), client, turn)
        self._waiting.append(job)
        self._count(job, +1)
        self._arrived.set()
        try:
            return await job.future
        finally:
            if job in self._waiting:  # withdrawn before its batch formed
                self._waiting.remove(job)
                self._count(job, -1)

    def _count(self, job: Job, sign: int) -> None:
        self.queued += sign * len(job.lines)
        self._queued_by[job.client] += sign * len(job.lines)
        if not self._queued_by[job.client]:
            del self._queued_by[job.client]

    def _drain_s(self, client: Hashable) -> float:
        """Seconds until `client`'s waiting sentences are decoded, taking turns with the
        others: each other client's sentences count up to as many as this one has."""
        mine = self._queued_by[client]
        return sum(min(theirs, mine) for theirs in self._queued_by.values()) * self._pace

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._decoding = await self._next_batch()
            groups: dict[Hashable, list[Job]] = {}
            for job in self._decoding:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                group = [job for job in group if not job.future.done()]  # withdrawn meanwhile
                if group:
                    await self._decode(loop, key, group)
            self._decoding = []
            if not self._waiting:  # idle: hand the batch's memory back to the system
                await loop.run_in_executor(self._worker, release_memory)

    async def _decode(self, loop, key: Hashable, group: list[Job]) -> None:
        lines = [line for job in group for line in job.lines]
        started = time.monotonic()
        try:
            results = await loop.run_in_executor(self._worker, self.decode, key, lines)
        except Exception as error:  # answered by the app (a 500, or its own 4xx); we go on
            if not isinstance(error, (Refusal, ShuttingDown)):
                log.exception("decoding a batch of %d sentences failed", len(lines))
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        self._pace = 0.8 * self._pace + 0.2 * (time.monotonic() - started) / len(lines)
        self.batches += 1
        self.sentences += len(lines)
        start = 0
        for job in group:
            if not job.future.done():  # a withdrawn request has nobody to answer
                job.future.set_result(results[start : start + len(job.lines)])
            start += len(job.lines)

    async def _next_batch(self) -> list[Job]:
        """The waiting jobs whose turn has come, once `max_sentences` sentences wait or the
        oldest job has waited `max_wait`; never more than `max_sentences` unless one job alone
        holds more."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        while self.queued < self.max_sentences:
            left = self._waiting[0].arrived + self.max_wait - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
            if not self._waiting:  # every waiting request was withdrawn
                return await self._next_batch()
        jobs: list[Job] = []
        size = 0
        for job in sorted(self._waiting, key=lambda job: job.turn):  # stable: first come first
            if not jobs or size + len(job.lines) <= self.max_sentences:
                jobs.append(job)
                size += len(job.lines)
        for job in jobs:
            self._waiting.remove(job)
            self._count(job, -1)
        self._served_to = max(self._served_to, jobs[-1].turn)
        # A client whose turns lie behind the service's has no claim left: forget it.
        self._last_turn = {c: t for c, t in self._last_turn.items() if t > self._served_to}
        return jobs


class Refusal(Exception):
    """A decode that found the request beyond a limit it could only check while decoding (the
    size of its attention maps): answered with `status` and `message`, not logged as a
    failure."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def release_memory() -> None:
    """Return freed heap pages to the system (glibc keeps them for reuse otherwise, so a burst
    of large requests would leave the server at its peak size for good)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            return libc
    return None


_LIBC = _load_libc()
