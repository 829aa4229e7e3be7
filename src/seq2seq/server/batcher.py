"""Batching concurrent requests: requests wait at most `max_wait` seconds for others to join
them, up to `max_sentences` sentences, and each batch is decoded in one worker thread, one group
of equal decode settings at a time, so the event loop only ever queues and answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# decode(key, lines) -> one result per line; key says how to decode (model and settings).
Decode = Callable[[Hashable, list[str]], list[Any]]


@dataclass
class Job:
    key: Hashable
    lines: list[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, decode: Decode, *, max_sentences: int, max_wait: float):
        self.decode = decode
        self.max_sentences = max_sentences
        self.max_wait = max_wait
        self.batches = 0  # decode calls so far, for /health
        self.sentences = 0
        self._waiting: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-decode")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        """Called after the server has answered every request in flight."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._worker.shutdown(wait=True)

    async def submit(self, key: Hashable, lines: list[str]) -> list[Any]:
        if not lines:
            return []
        job = Job(key, lines, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._arrived.set()
        return await job.future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            groups: dict[Hashable, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                lines = [line for job in group for line in job.lines]
                try:
                    results = await loop.run_in_executor(self._worker, self.decode, key, lines)
                except Exception as error:  # answered as a 500; the server goes on
                    log.exception("decoding a batch of %d sentences failed", len(lines))
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                self.batches += 1
                self.sentences += len(lines)
                start = 0
                for job in group:
                    if not job.future.done():  # a cancelled request has nobody to answer
                        job.future.set_result(results[start : start + len(job.lines)])
                    start += len(job.lines)

    async def _next_batch(self) -> list[Job]:
        """The oldest waiting jobs, once `max_sentences` sentences wait or the oldest job has
        waited `max_wait`; never more than `max_sentences` unless one job alone holds more."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0].arrived + self.max_wait
        while sum(len(job.lines) for job in self._waiting) < self.max_sentences:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        jobs = [self._waiting.popleft()]
        size = len(jobs[0].lines)
        while self._waiting and size + len(self._waiting[0].lines) <= self.max_sentences:
            jobs.append(self._waiting.popleft())
            size += len(jobs[-1].lines)
        return jobs
