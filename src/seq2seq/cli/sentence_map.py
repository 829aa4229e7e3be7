"""`seq2seq sentence-map RUN --output FILE`: the paper's Figure 2, a 2-D PCA of the encoder's
sentence vectors."""

from __future__ import annotations

from seq2seq.cli import common


def add(commands) -> None:
    parser = common.add_run_command(
        commands, "sentence-map", "2-D PCA of the encoder's sentence vectors (the paper's Figure 2)"
    )
    parser.add_argument(
        "--sentences", help="one source sentence per line, groups apart by blank lines "
        "(default: the shipped German probes)"
    )  # fmt: skip
    parser.add_argument("--output", required=True, help="figure file: .png or .svg")
    common.add_device_option(parser)


def run(args) -> int:
    from seq2seq.analysis.sentence_map import sentence_map

    result = sentence_map(args.run, args.output, sentences=args.sentences, device=args.device)
    if result["separation"]:
        within, between = result["separation"]
        print(f"mean cosine similarity: {within:.3f} within groups, {between:.3f} between groups")
    print(f"wrote {args.output}")
    return 0
