"""`seq2seq analysis RUN ... --output FILE`: BLEU by sentence length and by average word
frequency rank (the paper's Figure 3)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from seq2seq.cli import common


def add(commands) -> None:
    parser = commands.add_parser(
        "analysis", help="BLEU by sentence length and by word frequency rank (Figure 3)"
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help=common.RUN_HELP + "; overlaid")
    parser.add_argument(
        "--split", default="test", help="test, val, or a split's file prefix (default: test)"
    )
    parser.add_argument("--data-dir", help="folder holding the split's and training files")
    parser.add_argument(
        "--groups", type=int, default=8, help="groups of about equal size per curve (default: 8)"
    )
    parser.add_argument("--output", help="figure file: .png or .svg")
    parser.add_argument("--json", action="store_true", help="print the groups as JSON")
    common.add_decoding_options(parser, ensemble=False)


def run(args) -> int:
    from seq2seq.analysis.buckets import length_frequency, table

    results = length_frequency(
        args.runs,
        args.split,
        args.output,
        device=common.device(args),
        settings=common.decoding_settings(args),
        groups=args.groups,
        data_dir=args.data_dir,
    )
    if args.json:
        print(json.dumps([asdict(result) for result in results], indent=2))
    else:
        for result in results:
            print("\n".join(table(result)))
    if args.output:  # on stderr, so that --json prints JSON alone
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
