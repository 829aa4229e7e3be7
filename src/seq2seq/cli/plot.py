"""`seq2seq plot RUN ... --output FILE`: learning curves from the runs' log.jsonl."""

from __future__ import annotations


def add(commands) -> None:
    parser = commands.add_parser("plot", help="learning curves of runs, from their log.jsonl")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, overlaid")
    parser.add_argument("--output", required=True, help="figure file: .png or .svg")


def run(args) -> int:
    from seq2seq.analysis.plot import plot_runs

    plot_runs(args.runs, args.output)
    print(f"wrote {args.output}")
    return 0
