"""Command line: `seq2seq COMMAND ...`, one module per command in this package.

Each command module has `add(commands)`, which declares its parser, and `run(args)`, which
calls the library and prints. Here: the top-level parser, and the mapping of the library's
errors to one line and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys

from seq2seq.cli import (
    analysis,
    average,
    compare,
    evaluate,
    export,
    plot,
    prepare,
    score,
    sentence_map,
    serve,
    train,
    translate,
)
from seq2seq.cli.common import option
from seq2seq.errors import ParameterError, Seq2SeqError, TrainingInterrupted

COMMANDS = {
    "train": train,
    "prepare": prepare,
    "average": average,
    "evaluate": evaluate,
    "translate": translate,
    "score": score,
    "plot": plot,
    "sentence-map": sentence_map,
    "analysis": analysis,
    "compare": compare,
    "serve": serve,
    "export": export,
}


class _IntermixedParser(argparse.ArgumentParser):
    """A command's parser: positionals (a run, sentences) may come before, between or after
    options, as with `parse_intermixed_args`, which argparse does not offer for subcommands."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_intermixed_args' own two passes
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            # Unknown arguments are this command's error, shown with this command's usage.
            return self.parse_intermixed_args(args, namespace), []
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Sequence to sequence learning with LSTMs (Sutskever 2014)."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)
    for module in COMMANDS.values():
        module.add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command].run(args)
    except TrainingInterrupted as error:
        print(f"seq2seq: {error}", file=sys.stderr)
        return 130
    except ParameterError as error:
        print(f"seq2seq: error: {error.spelled(option(error.parameter))}", file=sys.stderr)
        return 2
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seq2seq: interrupted", file=sys.stderr)
        return 130
