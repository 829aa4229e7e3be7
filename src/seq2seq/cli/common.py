"""What several commands share: the decoding options, loading the runs, writing lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RUN_HELP = "run directory (uses best/), a checkpoint directory or a CTranslate2 export"


def option(parameter: str) -> str:
    """`attention_plot` as the command line spells it: `--attention-plot`."""
    return "--" + parameter.replace("_", "-")


def add_run_command(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A command's parser whose first argument is a run."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument("run", help=RUN_HELP)
    return parser


def add_decoding_options(parser: argparse.ArgumentParser, *, ensemble: bool = True) -> None:
    if ensemble:
        parser.add_argument(
            "--ensemble",
            action="append",
            default=[],
            metavar="RUN",
            help="one more run or checkpoint, decoded as an ensemble with RUN; repeat for more",
        )
    parser.add_argument("--beam-size", type=int, default=1, help="1 is greedy (default)")
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.0,
        help="GNMT length penalty; 0 (default) ranks by log-probability",
    )
    parser.add_argument("--min-length", type=int, default=0, help="no <eos> before N tokens")
    parser.add_argument(
        "--max-length-a",
        type=float,
        help="output tokens per source token (default: the checkpoint's train.max_length_a)",
    )
    parser.add_argument(
        "--max-length-b",
        type=int,
        help="output tokens added to that (default: the checkpoint's train.max_length_b)",
    )
    parser.add_argument(
        "--max-length", type=int, help="cap on output tokens (default: none but the rule above)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per batch")
    add_device_option(parser)
    if ensemble:
        add_quantize_option(parser)


def add_quantize_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quantize",
        default="none",
        help="int8: decode with int8 weights (CPU); auto: where that pays; none (default)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def decoding_settings(args):
    from seq2seq.decode import checked_settings

    names = ("batch_size", "beam_size", "n_best", "alpha", "min_length", "max_length")
    names += ("max_length_a", "max_length_b")
    values = {name: getattr(args, name) for name in names if name != "n_best"}
    values["n_best"] = getattr(args, "n_best", 1)  # translate's option alone
    return checked_settings({name: option(name) for name in names}, **values)


def device(args):
    from seq2seq.device import pick_device

    return pick_device(args.device)


def load_runs(args, device):
    """RUN and its --ensemble members, on `device`."""
    from seq2seq.loader import load_ensemble

    return load_ensemble([args.run, *args.ensemble], device, quantize=args.quantize)


def emit(lines: list[str], output: str | None) -> None:
    """The lines to `output`, or to standard output."""
    if output:
        write_lines(Path(output), lines)
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))


def write_lines(path: Path, lines: list[str]) -> None:
    from seq2seq.writing import write_file

    write_file(path, "".join(line + "\n" for line in lines))
