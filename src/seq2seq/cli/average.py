"""`seq2seq average`: average checkpoints' weights into one (Vaswani et al. 2017, 6.1)."""

from __future__ import annotations

from seq2seq.errors import Seq2SeqError


def add(commands) -> None:
    parser = commands.add_parser("average", help="average checkpoints' weights into one")
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="a run directory with --last N, or checkpoints"
    )
    parser.add_argument(
        "--last", type=int, metavar="N", help="the run's last N epoch-K/ checkpoints"
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="the checkpoint directory to write"
    )


def run(args) -> int:
    from seq2seq.average import average_checkpoints, last_epochs

    paths = args.runs
    if args.last is not None:
        if len(paths) != 1:
            raise Seq2SeqError("--last N takes one run directory; without it, give checkpoints")
        paths = last_epochs(paths[0], args.last)
    members = average_checkpoints(paths, args.output)
    print(f"averaged {len(members)} checkpoints into {args.output}: {', '.join(map(str, members))}")
    return 0
