"""Serving speed: sentences per second and p50/p95 latency of `seq2seq serve` with 1, 8 and 32
concurrent clients, batched against the same requests served one at a time without batching
(`--max-batch-sentences 1 --max-wait-ms 0`).

    python benchmarks/serve_speed.py tests/data/golden --sentences 256 --beam-size 5 --repeats 3

RUN may be a CTranslate2 export (`seq2seq export`), served as a run is.

Each server is a real `seq2seq serve` process; each client sends one test2016 sentence per
request and the next as soon as it is answered, over a kept-alive connection. The clients
speak HTTP over plain asyncio streams: httpx's client spent more CPU per request than the
server on a 2-core machine, so the figures would have measured the client.

With --load, the server under abuse instead, each scenario for --seconds (30) against one
server with the default options, on 127.0.0.1:

    python benchmarks/serve_speed.py tests/data/golden --load clients idle burst sigterm

- clients: 64 clients, one sentence a request: sentences/s, p50 and p99 latency, errors;
- idle: the same with 200 more connections held open and idle (reopened whenever the server
  closes them): the 64 clients' figures should not change;
- burst: 64 clients sending 16 sentences a request, 4x the queue bound (--max-queue-sentences
  256), each client waiting the Retry-After of a 503 before its next request: how many got
  503, that every request got an answer, and the server's memory (RSS)
  at start, before (3 s after a first 5 s burst), at its peak and 3 s after;
- sigterm: 64 clients, SIGTERM after half the time: every request in flight answered, the exit
  status, and the seconds from the signal to the exit.

- long-maps: 16 requests one after another, each one 1,000-character line with its attention
  map (a model with attention): their statuses, the largest answer, and the server's memory.
- flood: one client (127.0.0.1) keeps 200 requests in flight, each 16 long lines (twelve
  test2016 sentences to a line, at most 999 characters), waiting out each 503's Retry-After;
  another (127.0.0.2) sends one sentence at a time, 0.5 s apart, from 2 s in: what each got,
  the longest Retry-After the second was told, and how long it waited for its translations.
- shutdown: with --shutdown-grace-s 2, one request of 64 sentences, each decoded to exactly
  --length tokens (60), and one request that sends half its body; SIGTERM 1 s after: the
  seconds from the signal to the exit, what each client received, and the server's log line.

--attention asks for the attention maps in every request (a model with attention).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gzip
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSON = "Content-Type: application/json\r\n"
MULTI30K = Path(os.environ.get("SEQ2SEQ_TEST_DATA", ROOT.parent / "shared" / "data" / "multi30k"))


def start(run: str, options: list[str]) -> tuple[subprocess.Popen, str]:
    """The server process, with its log lines and when each came in `process.log`, and its
    URL."""
    argv = [sys.executable, "-m", "seq2seq.cli", "serve", run, "--port", "0", *options]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    process.log = []
    for line in process.stderr:
        if match := re.search(r"on (http://\S+) ", line):
            # Keep reading stderr, so that the server never blocks on a full pipe.
            lines = ((time.perf_counter(), line) for line in process.stderr)
            asyncio.get_running_loop().run_in_executor(None, process.log.extend, lines)
            return process, match[1]
    raise SystemExit(f"the server did not start: {' '.join(argv)}")


async def clients(url: str, sentences: list[str], count: int, beam_size: int):
    """(seconds in all, latency of each request in seconds)."""
    host, port = url.removeprefix("http://").split(":")
    waiting = list(reversed(sentences))
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while waiting:
            body = json.dumps({"text": [waiting.pop()], "beam_size": beam_size}).encode()
            head = (
                f"POST /translate HTTP/1.1\r\nHost: {host}\r\n{JSON}Content-Length: {len(body)}\r\n"
            )
            sent = time.perf_counter()
            writer.write(head.encode() + b"\r\n" + body)
            answer = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", answer)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - sent)
            if not answer.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"the server answered {answer.splitlines()[0]!r}")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(count)))
    return time.perf_counter() - started, latencies


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


@dataclasses.dataclass
class Tally:
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latencies: list[float] = dataclasses.field(default_factory=list)
    sentences: int = 0
    unanswered: int = 0  # requests the server had (sent before any SIGTERM) but never answered
    signalled: float = math.inf  # when SIGTERM was sent
    reconnects: int = 0  # idle connections the server closed
    retry_after: float = 0.0  # the longest a 503 asked for


async def exchange(reader, writer, host: str, body: bytes) -> tuple[bytes, bool, float, int]:
    """One request on a kept-alive connection: the status code, whether the server will close
    the connection after it, its Retry-After (0 without), and the answer's length."""
    head = f"POST /translate HTTP/1.1\r\nHost: {host}\r\n{JSON}Content-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    answer = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", answer)[1])
    await reader.readexactly(length)
    retry = re.search(rb"(?i)retry-after: (\d+)", answer)
    closing = re.search(rb"(?i)connection: close", answer) is not None
    return answer.split(b" ", 2)[1], closing, float(retry[1]) if retry else 0.0, length


async def load_client(url, sentences, per_request, attention, tally: Tally, running) -> None:
    """Sends requests until `running()` is false; reconnects when the server closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = None
    while running():
        if connection is None:
            try:
                connection = await asyncio.open_connection(host, int(port))
            except OSError:  # the server stopped listening (sigterm)
                return
        text = [sentences[(tally.sentences + i) % len(sentences)] for i in range(per_request)]
        body = json.dumps({"text": text, "beam_size": 5, "attention": attention}).encode()
        sent = time.perf_counter()
        try:
            status, closing, retry_after, _ = await exchange(*connection, host, body)
        except (OSError, asyncio.IncompleteReadError):
            tally.unanswered += sent < tally.signalled
            connection = None
            continue
        tally.statuses[status.decode()] += 1
        if status == b"200":  # latencies and throughput: of translations, not of refusals
            tally.latencies.append(time.perf_counter() - sent)
            tally.sentences += per_request
        if status == b"503" and retry_after:  # as a well-behaved client does
            await asyncio.sleep(retry_after)
            closing = True  # the server may have closed it meanwhile (--keep-alive-s)
        if closing:
            connection[1].close()
            connection = None
    if connection:
        connection[1].close()


async def idle_connection(url: str, tally: Tally, running) -> None:
    """Opens a connection and sends nothing; opens another when the server closes it."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    while running():
        reader, writer = await asyncio.open_connection(host, int(port))
        with contextlib.suppress(OSError):
            while running() and not reader.at_eof():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(1), 0.5)
        tally.reconnects += running()
        writer.close()


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def clock(seconds: float):
    stop_at = time.perf_counter() + seconds
    return lambda: time.perf_counter() < stop_at


async def scenario(name, process, url, sentences, seconds, attention) -> dict:
    """Runs one scenario against a warm server; its figures."""
    per_request = 16 if name == "burst" else 1
    shape = (url, sentences, per_request, attention)
    figures: dict = {}
    if name == "burst":
        figures["rss_start_mb"] = rss_mb(process.pid)
        # The first burst builds what the server keeps for good (tokenizer caches, the
        # allocator's arenas); the baseline is after it.
        warm, warming = Tally(), clock(5)
        await asyncio.gather(*(load_client(*shape, warm, warming) for _ in range(64)))
        await asyncio.sleep(3)
        figures["rss_before_mb"] = rss_mb(process.pid)
    tally, idle, started, running = Tally(), Tally(), time.perf_counter(), clock(seconds)
    work = [load_client(*shape, tally, running) for _ in range(64)]
    if name == "idle":
        work += [idle_connection(url, idle, running) for _ in range(200)]
    if name == "burst":
        work.append(watch_memory(process.pid, figures, running))
    if name == "sigterm":
        work.append(terminate(process, seconds / 2, figures, tally))
    await asyncio.gather(*work)
    elapsed = time.perf_counter() - started
    if name == "burst":
        await asyncio.sleep(3)
        figures["rss_after_mb"] = rss_mb(process.pid)
    figures.update(
        seconds=round(elapsed, 1),
        sentences_per_s=round(tally.sentences / elapsed, 1),
        p50_ms=round(1000 * percentile(tally.latencies, 0.5), 1),
        p99_ms=round(1000 * percentile(tally.latencies, 0.99), 1),
        statuses=dict(tally.statuses),
        unanswered=tally.unanswered,
    )
    if name == "idle":
        figures["idle_connections_closed_by_server"] = idle.reconnects
    return figures


async def watch_memory(pid: int, figures: dict, running) -> None:
    figures["rss_peak_mb"] = 0.0
    while running():
        figures["rss_peak_mb"] = max(figures["rss_peak_mb"], rss_mb(pid))
        await asyncio.sleep(0.1)


async def terminate(process, after: float, figures: dict, tally: Tally) -> None:
    await asyncio.sleep(after)
    tally.signalled = signalled = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    figures["exit_status"] = await asyncio.get_running_loop().run_in_executor(
        None, process.wait, 60
    )
    figures["seconds_to_exit"] = round(time.perf_counter() - signalled, 2)


async def long_maps(process, url: str, sentences: list[str]) -> dict:
    """16 requests one after another, each one 1,000-character line with its attention map:
    their statuses, the largest answer, and the server's memory."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    line = " ".join(sentences)[:1000]
    body = json.dumps({"text": [line], "attention": True}).encode()
    figures = {"rss_before_mb": rss_mb(process.pid)}
    statuses, largest = collections.Counter(), 0
    watcher = asyncio.ensure_future(watch_memory(process.pid, figures, lambda: True))
    for _ in range(16):
        reader, writer = await asyncio.open_connection(host, int(port))
        status, _, _, length = await exchange(reader, writer, host, body)
        statuses[status.decode()] += 1
        largest = max(largest, length)
        writer.close()
    await asyncio.sleep(3)
    watcher.cancel()
    figures.update(
        rss_after_mb=rss_mb(process.pid), statuses=dict(statuses), largest_answer_bytes=largest
    )
    return figures


async def flood(url: str, sentences: list[str], seconds: float) -> dict:
    """One client floods, another sends one sentence at a time: what each got."""
    long_lines = [" ".join(sentences[i : i + 12]) for i in range(0, len(sentences) - 11, 12)]
    long_lines = [line[: 1000 - 1] for line in long_lines]  # within --max-characters
    flooding, probing, running = Tally(), Tally(), clock(seconds)
    await asyncio.gather(
        *(load_client(url, long_lines, 16, False, flooding, running) for _ in range(200)),
        probe(url, sentences, probing, running),
    )
    return {
        "other_client_statuses": dict(probing.statuses),
        "other_client_p50_ms": round(1000 * percentile(probing.latencies, 0.5), 1),
        "other_client_max_ms": round(1000 * max(probing.latencies), 1),
        "other_client_longest_retry_after_s": probing.retry_after,
        "flood_statuses": dict(flooding.statuses),
        "flood_sentences_per_s": round(flooding.sentences / seconds, 1),
        "line_characters_mean": round(statistics.mean(map(len, long_lines))),
    }


async def probe(url: str, sentences: list[str], tally: Tally, running) -> None:
    """From 127.0.0.2, another client than the flood's: one sentence a request, 0.5 s apart,
    from 2 s in; the latencies of its translations."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    await asyncio.sleep(2)
    connection, sent_lines = None, 0
    while running():
        if connection is None:
            connection = await asyncio.open_connection(host, int(port), local_addr=("127.0.0.2", 0))
        body = json.dumps({"text": [sentences[sent_lines % len(sentences)]], "beam_size": 5})
        sent, sent_lines = time.perf_counter(), sent_lines + 1
        status, closing, retry_after, _ = await exchange(*connection, host, body.encode())
        tally.statuses[status.decode()] += 1
        tally.retry_after = max(tally.retry_after, retry_after)
        if status == b"200":
            tally.latencies.append(time.perf_counter() - sent)
        if closing:
            connection[1].close()
            connection = None
        await asyncio.sleep(0.5)
    if connection:
        connection[1].close()


async def shutdown(process, url: str, sentences: list[str], length: int) -> dict:
    """SIGTERM while one request of 64 sentences is decoded, each to exactly `length` tokens,
    and another has sent half its body: how long the server takes to exit, and what each
    client received."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"text": sentences[:64], "min_length": length, "max_length": length})
    decoding = await asyncio.open_connection(host, int(port))
    answer = asyncio.ensure_future(exchange(*decoding, host, body.encode()))
    half_reader, half_writer = await asyncio.open_connection(host, int(port))
    half_writer.write(
        f"POST /translate HTTP/1.1\r\nHost: {host}\r\n{JSON}Content-Length: 100\r\n\r\n"
        '{"text": ['.encode()
    )
    await asyncio.sleep(1)
    signalled = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    status = await asyncio.get_running_loop().run_in_executor(None, process.wait, 60)
    seconds = time.perf_counter() - signalled
    try:
        got = (await answer)[0].decode()
    except (OSError, asyncio.IncompleteReadError):
        got = "connection closed"
    half = await half_reader.read()
    await asyncio.sleep(0.2)  # the reader thread takes the server's last lines
    finished = next(at for at, line in process.log if "Finished server process" in line)
    return {
        # The server is done when it logs so; then the interpreter tears down (gc, torch).
        "seconds_to_finish": round(finished - signalled, 2),
        "seconds_to_exit": round(seconds, 2),
        "exit_status": status,
        "decoding_request_got": got,
        "half_sent_request_got": half.split(b"\r\n")[0].decode() or "connection closed",
        "log": [line.strip() for _, line in process.log if "in flight" in line],
    }


async def load(args, sentences: list[str]) -> None:
    common = ["--device", args.device, "--num-threads", args.num_threads]
    maps = ", attention maps" if args.attention else ""
    print(f"each scenario {args.seconds} s, test2016 sentences, beam 5{maps}, default options")
    shape = (args.seconds, args.attention)
    for name in args.load:
        grace = ["--shutdown-grace-s", "2"] if name == "shutdown" else []
        process, url = start(args.run, common + grace)
        try:
            await clients(url, sentences[:16], 4, 5)  # warm up
            if name == "long-maps":
                figures = await long_maps(process, url, sentences)
            elif name == "shutdown":
                figures = await shutdown(process, url, sentences, args.length)
            elif name == "flood":
                figures = await flood(url, sentences, args.seconds)
            else:
                figures = await scenario(name, process, url, sentences, *shape)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        print(json.dumps({"scenario": name, **figures}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "tests" / "data" / "golden"))
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="sent/s: the median run's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-threads", default="1", help="PyTorch threads of each server")
    parser.add_argument("--batched", default="--max-batch-sentences 64 --max-wait-ms 5")
    parser.add_argument(
        "--load",
        nargs="+",
        choices=["clients", "idle", "burst", "sigterm", "long-maps", "shutdown", "flood"],
    )
    parser.add_argument("--length", type=int, default=60, help="shutdown: tokens a sentence")
    parser.add_argument("--seconds", type=float, default=30, help="of each --load scenario")
    parser.add_argument("--attention", action="store_true", help="--load: ask for the maps")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["one at a time", "batched"],
        choices=["one at a time", "batched"],
        help="which servers to measure (both)",
    )
    args = parser.parse_args()

    with gzip.open(MULTI30K / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as handle:
        sentences = handle.read().splitlines()[: args.sentences]
    if args.load:
        return await load(args, sentences)
    servers = {
        "one at a time": ["--max-batch-sentences", "1", "--max-wait-ms", "0"],
        "batched": args.batched.split(),
    }
    servers = {name: servers[name] for name in args.servers}
    print(
        f"{len(sentences)} test2016 sentences, one per request, beam {args.beam_size}; "
        f"sent/s: median of {args.repeats} runs, latency: over all of them"
    )
    print(
        f"{'server':<14} {'options':<44} {'clients':>7} {'sent/s':>7} {'p50 ms':>7} {'p95 ms':>7}"
    )
    for name, options in servers.items():
        common = ["--device", args.device, "--num-threads", args.num_threads]
        process, url = start(args.run, [*common, *options])
        try:
            await clients(url, sentences[:16], 4, args.beam_size)  # warm up
            for count in args.clients:
                rates, latencies = [], []
                for _ in range(args.repeats):
                    seconds, times = await clients(url, sentences, count, args.beam_size)
                    rates.append(len(sentences) / seconds)
                    latencies += times
                print(
                    f"{name:<14} {' '.join(options):<44} {count:>7} "
                    f"{statistics.median(rates):>7.1f} {1000 * percentile(latencies, 0.5):>7.1f} "
                    f"{1000 * percentile(latencies, 0.95):>7.1f}"
                )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
