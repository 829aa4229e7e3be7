"""Is one model better than another on a test set, or is the difference chance? Paired
bootstrap resampling (Koehn 2004) over BLEU and chrF.

Both systems translate the split; the test draws `samples` resamples of the test sentences
(with replacement, the same draws for both systems, as sacreBLEU draws them), scores both
systems on each from sacreBLEU's sufficient statistics, and reads the spread of the
differences d = B - A:

- the 95% confidence interval of B - A: the 2.5th and 97.5th percentiles of the resampled
  differences (sacreBLEU's percentile convention, n // 40 from each end);
- the p-value, two-sided: the share of resamples whose difference, centred on the resamples'
  mean (|d - mean d|: the null hypothesis's spread), is at least the observed |B - A|, with +1
  in both counts.

This departs from sacreBLEU's `--paired-bs`, which centres the absolute differences
(|d| - mean |d|). Where the systems are about equally good, d spreads around 0 and mean |d| is
about 0.8 of its standard deviation, so that statistic's null distribution is shifted down by
as much, its p-values are too small, and a true null is rejected far more often than the level
promises (docs/compare.md measures it: benchmarks/bootstrap_calibration.py). Ties count as "at least
as large", so a system compared with itself gets p = 1, where sacreBLEU's `PairedTest` gives
1/(samples + 1). The metrics are those of `seq2seq evaluate`: BLEU and chrF, lowercased.
"""

from __future__ import annotations

import numpy as np
import torch
from sacrebleu.metrics import BLEU, CHRF

from seq2seq.data.splits import load_split
from seq2seq.decode import DecodeSettings
from seq2seq.errors import ParameterError, Seq2SeqError
from seq2seq.evaluate import evaluate_split
from seq2seq.loader import load_checkpoint

SAMPLES = 1000
SEED = 12345  # sacreBLEU's default seed (SACREBLEU_SEED)


def metrics() -> dict:
    return {"bleu": BLEU(lowercase=True), "chrf": CHRF(lowercase=True)}


def paired_bootstrap(
    hypotheses_a: list[str],
    hypotheses_b: list[str],
    references: list[str],
    *,
    samples: int = SAMPLES,
    seed: int = SEED,
) -> dict[str, dict]:
    """For each metric: both systems' scores, B - A, its 95% interval and the p-value."""
    count = len(references)
    if not (count == len(hypotheses_a) == len(hypotheses_b)) or count == 0:
        raise Seq2SeqError(
            f"cannot compare {len(hypotheses_a)} and {len(hypotheses_b)} translations "
            f"of {count} references; give one translation per reference"
        )
    rng = np.random.default_rng(seed)
    draws = rng.choice(count, size=(samples, count), replace=True)  # as sacreBLEU draws them
    out = {}
    for name, metric in metrics().items():
        (score_a, resampled_a), (score_b, resampled_b) = (
            resampled_scores(metric, hypotheses, references, draws)
            for hypotheses in (hypotheses_a, hypotheses_b)
        )
        differences = resampled_b - resampled_a
        ordered = np.sort(differences)
        low, high = ordered[samples // 40], ordered[samples - samples // 40 - 1]
        out[name] = {
            "a": score_a,
            "b": score_b,
            "difference": score_b - score_a,
            "ci95": [float(low), float(high)],
            "p_value": p_value(differences, score_b - score_a),
            "signature": str(metric.get_signature()),
        }
    return out


def resampled_scores(
    metric, hypotheses: list[str], references: list[str], draws: np.ndarray
) -> tuple[float, np.ndarray]:
    """The system's corpus score, and its score on each resample (a row of `draws`)."""
    # The statistics and scoring PairedTest uses; sacreBLEU has no public call for them.
    stats = metric._extract_corpus_statistics(hypotheses, [references])
    score = metric._aggregate_and_compute(stats).score
    stats = np.array(stats, dtype="float32")
    resampled = [metric._compute_score_from_stats(stats[rows].sum(0)).score for rows in draws]
    return score, np.array(resampled)


def p_value(differences: np.ndarray, observed: float) -> float:
    """Two-sided: how often the resampled differences, centred on their mean (the null
    hypothesis, no difference), lie at least |observed| from it; ties count."""
    null = np.abs(differences - differences.mean())
    return float((np.sum(null >= abs(observed)) + 1) / (len(differences) + 1))


def compare_runs(
    run_a: str,
    run_b: str,
    *,
    split: str,
    device: torch.device,
    data_dir: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
    samples: int = SAMPLES,
    seed: int = SEED,
) -> dict:
    """`seq2seq compare`: decode the split with both runs, then the paired bootstrap."""
    ckpts = [load_checkpoint(run, device) for run in (run_a, run_b)]
    references = [
        load_split(c.config.data, split, data_dir, vocabs=c.vocabs).tgt_text for c in ckpts
    ]
    if references[0] != references[1]:  # before the slow part: decoding
        raise ParameterError(
            "data_dir",
            f"{run_a} and {run_b} read different references for split {split!r}; compare "
            f"runs trained on the same language pair, or give {{parameter}}",
        )
    results = [
        evaluate_split(c, split, device=device, data_dir=data_dir, settings=settings) for c in ckpts
    ]
    translations = [result.pop("translations") for result in results]
    return {
        "split": results[0]["split"],
        "sentences": results[0]["sentences"],
        "samples": samples,
        "seed": seed,
        "beam_size": settings.beam_size,
        "a": str(ckpts[0].path),
        "b": str(ckpts[1].path),
        **paired_bootstrap(*translations, references[0], samples=samples, seed=seed),
    }


def format_comparison(result: dict) -> str:
    """The comparison as a small table, one row per metric."""
    lines = [
        f"{result['split']}: {result['sentences']} sentences, beam {result['beam_size']}; "
        f"paired bootstrap, {result['samples']} resamples, seed {result['seed']}",
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{'':6}{'A':>8}{'B':>8}{'B - A':>8}   {'95% CI of B - A':<18}{'p-value':>8}",
    ]
    for name, label in (("bleu", "BLEU"), ("chrf", "chrF")):
        row = result[name]
        low, high = row["ci95"]
        lines.append(
            f"{label:<6}{row['a']:8.2f}{row['b']:8.2f}{row['difference']:+8.2f}   "
            f"{f'[{low:+.2f}, {high:+.2f}]':<18}{row['p_value']:8.4f}"
        )
    lines.append(
        "p-value: the chance of a difference at least this large if A and B were equally "
        "good (two-sided), from the centred differences |d - mean d|, not sacreBLEU's "
        "|d| - mean |d|, which finds significance too often"
    )
    return "\n".join(lines)
