"""Minutes from `seq2seq train` to a checkpoint whose test BLEU reaches a target.

    python benchmarks/time_to_quality.py runs/transformer runs/attention --targets 13.8 30

A run must have been trained with `train.keep_checkpoints` at least its number of epochs, so
that every epoch's checkpoint (`epoch-K/`) is there. Each is evaluated on test2016 (greedy,
BLEU on lowercased spaCy tokens, the tutorial's figure); the time of epoch K is the wall time
from the run's start (its config.yaml is written first) to the moment `epoch-K/` was saved,
validation included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import Table

from seq2seq import checkpoint
from seq2seq.evaluate import evaluate_split


def epochs(run: Path) -> list[tuple[int, float, Path]]:
    """(epoch, minutes since the run started, checkpoint) for every kept epoch checkpoint."""
    start = (run / "config.yaml").stat().st_mtime
    found = []
    for path in run.glob("epoch-*"):
        meta = json.loads((path / "meta.json").read_text())
        found.append((meta["epoch"], ((path / "meta.json").stat().st_mtime - start) / 60, path))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--targets", type=float, nargs="+", default=[13.8, 30.0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--all", action="store_true", help="evaluate every epoch anyway")
    args = parser.parse_args()
    device = torch.device("cpu")
    for run in args.runs:
        reached: dict[float, tuple[int, float]] = {}
        print(f"{run}: test BLEU on spaCy tokens (the tutorial's) and sacreBLEU's")
        table = Table(
            ("epoch", 5, "d"), ("minutes", 7, ".1f"), ("BLEU", 6, ".2f"), ("sacreBLEU", 9, ".2f")
        )
        for epoch, minutes, path in epochs(run):
            figures = evaluate_split(checkpoint.load(path), args.split, device=device)
            bleu = figures["bleu_tokenized"]
            table.row(epoch, minutes, bleu, figures["bleu"])
            for target in args.targets:
                if bleu >= target and target not in reached:
                    reached[target] = (epoch, minutes)
            if len(reached) == len(args.targets) and not args.all:
                break  # every target reached: later epochs cannot be earlier
        for target in args.targets:
            if target in reached:
                epoch, minutes = reached[target]
                print(f"  {target} BLEU: epoch {epoch}, {minutes:.1f} minutes")
            else:
                print(f"  {target} BLEU: not reached")


if __name__ == "__main__":
    main()
