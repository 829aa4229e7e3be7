"""Seconds per training epoch of each shipped config, on this machine.

    python benchmarks/epoch_seconds.py --fraction 0.1 --threads 2

Each config trains a fraction of its first epoch (`train.epochs=F`) with `seq2seq train`, into
a temporary folder; the epoch's record gives the seconds of training (validation, start-up and
saving left out) and its target tokens per second, and the seconds of a whole epoch are the
seconds over F. A short fraction includes the first batches' set-up, so it overstates a little.
Validation translates the validation set at the end (`train.bleu_from_epoch=1`, as a config's
later start would be past the fraction), which only the command's wall time shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Table, multi30k_dir


def measure(config: Path, fraction: float, threads: int, output: Path) -> tuple[dict, float]:
    """The epoch's record, and the command's wall-clock seconds."""
    argv = [sys.executable, "-m", "seq2seq", "train", str(config), f"output_dir={output}"]
    argv += [f"train.epochs={fraction}", f"train.num_threads={threads}", "name=timed"]
    argv += ["train.bleu_from_epoch=1"]  # a config's later start would be past the one epoch
    env = {**os.environ, "SEQ2SEQ_DATA": os.environ.get("SEQ2SEQ_DATA", str(multi30k_dir()))}
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    lines = (output / "timed" / "log.jsonl").read_text().splitlines()
    return json.loads(lines[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="default: every config in configs/")
    parser.add_argument("--fraction", type=float, default=0.1, help="of the first epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    configs = args.configs or sorted((ROOT / "configs").glob("*.yaml"))
    table = Table(
        ("config", 26),
        ("precision", 9),
        ("tokens/s", 9, ",.0f"),
        ("s/epoch", 8, ",.0f"),
        ("min/epoch", 9, ".1f"),
        ("command s", 9, ".0f"),
        markdown=args.markdown,
    )
    for config in configs:
        with tempfile.TemporaryDirectory() as output:
            record, wall = measure(config, args.fraction, args.threads, Path(output))
        per_epoch = record["seconds"] / args.fraction
        table.row(
            config.name,
            record["precision"],
            record["tokens_per_second"],
            per_epoch,
            per_epoch / 60,
            wall,
        )


if __name__ == "__main__":
    main()
