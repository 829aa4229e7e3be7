"""Serving speed: sentences per second and p50/p95 latency of `seq2seq serve` with 1, 8 and 32
concurrent clients, batched against the same requests served one at a time without batching
(`--max-batch-sentences 1 --max-wait-ms 0`).

    python benchmarks/serve_speed.py tests/data/golden --sentences 256 --beam-size 5 --repeats 3

RUN may be a CTranslate2 export (`seq2seq export`), served as a run is.

Each server is a real `seq2seq serve` process; each client sends one test2016 sentence per
request and the next as soon as it is answered, over a kept-alive connection. The clients
speak HTTP over plain asyncio streams: httpx's client spent more CPU per request than the
server on a 2-core machine, so the figures would have measured the client.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_TEST_DATA", ROOT.parent / "shared" / "data" / "multi30k"))


def start(run: str, options: list[str]) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "seq2seq.cli", "serve", run, "--port", "0", *options]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if match := re.search(r"on (http://\S+) ", line):
            # Keep reading stderr, so that the server never blocks on a full pipe.
            asyncio.get_running_loop().run_in_executor(None, process.stderr.read)
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
            head = f"POST /translate HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
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
        "--servers",
        nargs="+",
        default=["one at a time", "batched"],
        choices=["one at a time", "batched"],
        help="which servers to measure (both)",
    )
    args = parser.parse_args()

    with gzip.open(MULTI30K / "test_2016_flickr.de.gz", "rt", encoding="utf-8") as handle:
        sentences = handle.read().splitlines()[: args.sentences]
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
