"""How often `seq2seq compare` calls two equally good systems significantly different.

    python benchmarks/bootstrap_calibration.py --trials 200

Each trial draws `--sentences` test2016 references and a base system (each reference with a
share of its words dropped), then two noisy copies of that system made by one random process
(each word of the base replaced by a random word of the references with probability
`--noise`): A and B are exchangeable, so neither is better, and a test at level 0.05 should
reject in 5% of trials. Both p-values are read from the same resamples: the centred
differences |d - mean d| that `compare` uses, and sacreBLEU's `--paired-bs` statistic
|d| - mean |d|. Prints the rejection rate of each, per metric, and its binomial standard error.
"""

from __future__ import annotations

import argparse
import gzip
import math

import numpy as np
from common import Table, multi30k_dir, timed

from seq2seq.analysis.compare import SEED, metrics, p_value, resampled_scores

LEVEL = 0.05


def sacrebleu_p_value(differences: np.ndarray, observed: float) -> float:
    """sacreBLEU 2.x `--paired-bs`'s statistic (ties counted, as `compare` counts them)."""
    null = np.abs(differences) - np.abs(differences).mean()
    return float((np.sum(null >= abs(observed)) + 1) / (len(differences) + 1))


def noisy(lines: list[str], words: list[str], share: float, rng) -> list[str]:
    """Each word replaced by a random one of `words` with probability `share`."""
    out = []
    for line in lines:
        tokens = [words[rng.integers(len(words))] if rng.random() < share else t for t in line]
        out.append(" ".join(tokens))
    return out


def trial(references: list[str], args, rng) -> dict[str, tuple[float, float]]:
    picked = [references[i] for i in rng.choice(len(references), args.sentences, replace=False)]
    base = [[w for w in line.split() if rng.random() >= args.drop] for line in picked]
    words = [w for line in picked for w in line.split()]
    a, b = (noisy(base, words, args.noise, rng) for _ in range(2))
    draws = rng.choice(args.sentences, size=(args.samples, args.sentences), replace=True)
    out = {}
    for name, metric in metrics().items():
        score_a, resampled_a = resampled_scores(metric, a, picked, draws)
        score_b, resampled_b = resampled_scores(metric, b, picked, draws)
        differences, observed = resampled_b - resampled_a, score_b - score_a
        out[name] = (p_value(differences, observed), sacrebleu_p_value(differences, observed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=300, help="test sentences per trial")
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--drop", type=float, default=0.3, help="words the base system drops")
    parser.add_argument("--noise", type=float, default=0.1, help="words each copy replaces")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    path = multi30k_dir() / "test_2016_flickr.en.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        references = [line.strip() for line in handle]
    rng = np.random.default_rng(args.seed)
    results, taken = timed(lambda: [trial(references, args, rng) for _ in range(args.trials)])
    error = math.sqrt(LEVEL * (1 - LEVEL) / args.trials)
    print(
        f"{args.trials} trials of {args.sentences} sentences, {args.samples} resamples, drop "
        f"{args.drop}, noise {args.noise}, seed {args.seed}; {taken:.0f} s"
    )
    print(f"rejection rate at p < {LEVEL} (expected {LEVEL:.1%}, standard error {error:.1%})")
    table = Table(
        ("metric", 8),
        ("centred |d - mean d|", 22, ".1%"),
        ("sacreBLEU |d| - mean |d|", 26, ".1%"),
        separator="",
    )
    for name in ("bleu", "chrf"):
        centred, sacrebleu = (
            np.mean([result[name][k] < LEVEL for result in results]) for k in (0, 1)
        )
        table.row(name, centred, sacrebleu)


if __name__ == "__main__":
    main()
