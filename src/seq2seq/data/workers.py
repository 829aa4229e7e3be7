"""What each preparation process does to a chunk of lines, and the pool that runs them.

Every worker holds its own tokenizer (spaCy's rules, or the SentencePiece models), built once
by the pool's initializer. Chunks go out in order and come back in order, at most a few per
worker at a time, so that memory holds a handful of chunks whatever the corpus's size.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from seq2seq.data.filters import empty_sides
from seq2seq.data.reading import Chunk
from seq2seq.data.tokenizer import SentencePieceTokenizer, Tokenizer, sentencepiece_input

IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How a worker cuts text: spaCy words, SentencePiece pieces with these models, or not at
    all ("none": the text SentencePiece trains on, without spaCy's words)."""

    tokenizer: Literal["spacy", "sentencepiece", "none"]
    langs: tuple[str, str]
    lowercase: bool
    sp_pretokenize: bool = False
    sp_models: tuple[bytes, bytes] | None = None
    digests: bool = False  # a digest of every pair, for the duplicate filter


@dataclass(frozen=True)
class SideIds:
    """One side of a chunk: the flat ids of every line's tokens and each line's length. For
    spaCy the ids index `words`, the chunk's own list of distinct tokens (the vocabulary is
    known only once every chunk is counted); for SentencePiece they are the pieces' ids."""

    ids: np.ndarray  # (tokens,) uint32
    lengths: np.ndarray  # (lines,) uint32
    words: list[str] | None


@dataclass(frozen=True)
class ChunkIds:
    first_line: int
    empty: np.ndarray  # (lines,) bool: a side without text
    digests: np.ndarray | None  # (lines,) uint64
    src: SideIds
    tgt: SideIds


_state: dict = {}


def _start(settings: WorkerSettings, ignore_interrupts: bool) -> None:
    if ignore_interrupts:
        _ignore_interrupts()
    _state["settings"] = settings
    if settings.tokenizer == "none":
        _state["tokenizers"] = [None, None]
    elif settings.tokenizer == "spacy":
        _state["tokenizers"] = [
            Tokenizer(lang, lowercase=settings.lowercase) for lang in settings.langs
        ]
    else:
        _state["tokenizers"] = [
            SentencePieceTokenizer(
                lang, model, lowercase=settings.lowercase, pretokenize=settings.sp_pretokenize
            )
            for lang, model in zip(settings.langs, settings.sp_models, strict=True)
        ]


def tokenize_chunk(chunk: Chunk) -> ChunkIds:
    """The ids of a chunk's lines, both sides."""
    settings = _state["settings"]
    src, tgt, _ = chunk.pairs()
    empty = empty_sides(src, tgt)
    digests = None
    if settings.digests:
        digests = np.array([_digest(s, t) for s, t in zip(src, tgt, strict=True)], dtype=np.uint64)
    sides = [
        _side_ids(tokenizer, lines)
        for tokenizer, lines in zip(_state["tokenizers"], (src, tgt), strict=True)
    ]
    return ChunkIds(chunk.first_line, empty, digests, *sides)


def subword_text_chunk(chunk: Chunk) -> tuple[list[str], list[str], np.ndarray]:
    """What SentencePiece trains on, for a chunk: each side's prepared text and the pairs with
    an empty side."""
    settings = _state["settings"]
    src, tgt, _ = chunk.pairs()
    empty = empty_sides(src, tgt)
    prepared = []
    for tokenizer, lines in zip(_state["tokenizers"], (src, tgt), strict=True):
        words = tokenizer.tokenize_many(lines) if settings.sp_pretokenize else None
        prepared.append(sentencepiece_input(lines, lowercase=settings.lowercase, words=words))
    return prepared[0], prepared[1], empty


def _side_ids(tokenizer: Tokenizer | SentencePieceTokenizer, lines: list[str]) -> SideIds:
    if isinstance(tokenizer, SentencePieceTokenizer):
        pieces = tokenizer.ids_many(lines)
        lengths = np.fromiter(map(len, pieces), dtype=np.uint32, count=len(pieces))
        flat = itertools.chain.from_iterable(pieces)  # in C: far faster than a generator
        ids = np.fromiter(flat, dtype=np.uint32, count=int(lengths.sum()))
        return SideIds(ids, lengths, None)
    tokens = tokenizer.tokenize_many(lines)
    lengths = np.fromiter(map(len, tokens), dtype=np.uint32, count=len(tokens))
    flat = list(itertools.chain.from_iterable(tokens))
    index = {token: number for number, token in enumerate(dict.fromkeys(flat))}  # first seen
    ids = np.fromiter(map(index.__getitem__, flat), dtype=np.uint32, count=len(flat))
    return SideIds(ids, lengths, list(index))


def _digest(src: str, tgt: str) -> int:
    # Lines never hold "\n", so it cannot make two different pairs look the same.
    data = f"{src}\n{tgt}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT blocked (delivered when the block ends) where the platform allows it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ordered_map(
    function: Callable, chunks: Iterable[Chunk], settings: WorkerSettings, workers: int
) -> Iterator:
    """`function` of each chunk, in the chunks' order, computed by `workers` processes (in
    this one when 1). Stopping the iteration (an error, Ctrl-C) stops the workers."""
    context = _context()
    if workers == 1 or context.get_start_method() == "fork":
        # The tokenizers built here once, used by this process or inherited by every forked
        # worker (whose own _start then finds them built); a Ctrl-C is held until they are
        # whole (one that lands inside spaCy's import leaves it half done).
        with _interrupts_held():
            _start(settings, ignore_interrupts=False)
    if workers == 1:
        yield from map(function, chunks)
        return
    pool = ProcessPoolExecutor(workers, context, initializer=_start, initargs=(settings, True))
    pending: collections.deque = collections.deque()
    chunks = iter(chunks)
    try:
        # The first submit forks every worker. A Ctrl-C that lands during a fork is raised in
        # the fork handlers, which swallow it; held back until the workers exist, it arrives.
        with _interrupts_held():
            first = next(chunks, None)
            if first is not None:
                pending.append(pool.submit(function, first))
        for chunk in chunks:
            pending.append(pool.submit(function, chunk))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def in_processes(function: Callable, calls: list[tuple], workers: int) -> list:
    """`function(*args)` for each `args` in `calls`, in order, each in a process of its own, up
    to `workers` at a time (in this process when 1). An error or Ctrl-C ends them at once."""
    if workers == 1 or len(calls) < 2:
        return [function(*args) for args in calls]
    with _interrupts_held():  # as in ordered_map
        pool = _context().Pool(min(workers, len(calls)), initializer=_ignore_interrupts)
    try:
        pending = [pool.apply_async(function, args) for args in calls]
        return [result.get() for result in pending]
    finally:
        pool.terminate()
        pool.join()


def _context():
    # fork: a worker starts in milliseconds, with the tokenizer libraries already imported.
    return multiprocessing.get_context("fork" if os.name == "posix" else "spawn")


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the pool
