"""A Table-1-style comparison on Multi30k test2016 (Sutskever et al. 2014, Table 1): source
reversed or not, beam sizes, single models and an ensemble.

    python benchmarks/table1.py --reversed runs/tutorial runs/tutorial-seed2 \
        --not-reversed runs/tutorial-noreverse --beams 1 2 12

Prints a Markdown table with sacreBLEU (detokenized, lowercased) and the tutorial's BLEU on
lowercased spaCy tokens, for every model and for the ensemble of the reversed models.
"""

from __future__ import annotations

import argparse
import functools

import torch
from common import Table, timed

from seq2seq.decode import DecodeSettings
from seq2seq.evaluate import evaluate_split
from seq2seq.loader import load_ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reversed", nargs="*", default=[], help="runs with reversed source")
    parser.add_argument("--not-reversed", nargs="*", default=[], help="runs without")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 2, 12])
    parser.add_argument("--split", default="test")
    args = parser.parse_args()

    rows = [(f"single, reversed ({run})", [run]) for run in args.reversed]
    rows += [(f"single, not reversed ({run})", [run]) for run in args.not_reversed]
    if len(args.reversed) > 1:
        rows.append((f"ensemble of {len(args.reversed)}, reversed", args.reversed))
    device = torch.device("cpu")
    table = Table(
        *(("model", 0), ("beam", 0, "d"), ("BLEU (sacreBLEU, detok., lc)", 0, ".2f")),
        *(("BLEU (spaCy tokens, lc)", 0, ".2f"), ("free-running PPL", 0, ".2f")),
        ("seconds", 0, ".0f"),
        markdown=True,
    )
    for name, runs in rows:
        ckpt = load_ensemble(runs, device)
        for beam in args.beams:
            settings = DecodeSettings(beam_size=beam)
            evaluate = functools.partial(evaluate_split, ckpt, args.split, device=device)
            result, taken = timed(lambda s=settings, e=evaluate: e(settings=s))
            table.row(
                name, beam, result["bleu"], result["bleu_tokenized"], result["free_ppl"], taken
            )


if __name__ == "__main__":
    main()
