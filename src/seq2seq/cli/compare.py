"""`seq2seq compare RUN_A RUN_B`: a paired bootstrap test of RUN_B against RUN_A on a split."""

from __future__ import annotations

import json

from seq2seq.cli import common


def add(commands) -> None:
    parser = commands.add_parser(
        "compare", help="paired bootstrap: is RUN_B better than RUN_A on a split?"
    )
    parser.add_argument("run_a", metavar="RUN_A", help="the baseline run or checkpoint")
    parser.add_argument("run_b", metavar="RUN_B", help="the run or checkpoint compared with it")
    parser.add_argument("--split", default="test", help="test, val, or a file prefix")
    parser.add_argument("--data-dir", help="folder holding the split's files")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    common.add_decoding_options(parser, ensemble=False)


def run(args) -> int:
    from seq2seq.analysis.compare import compare_runs, format_comparison

    result = compare_runs(
        args.run_a,
        args.run_b,
        split=args.split,
        device=common.device(args),
        data_dir=args.data_dir,
        settings=common.decoding_settings(args),
    )
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
    return 0
