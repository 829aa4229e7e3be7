"""`seq2seq score RUN --source FILE --target FILE`: the log-probability of translations."""

from __future__ import annotations

from pathlib import Path

from seq2seq.cli import common
from seq2seq.errors import Seq2SeqError


def add(commands) -> None:
    parser = common.add_run_command(commands, "score", "log-probability of given translations")
    parser.add_argument("--source", required=True, help="file of source sentences")
    parser.add_argument("--target", required=True, help="file of target sentences, line-aligned")
    common.add_decoding_options(parser)


def run(args) -> int:
    from seq2seq.data.reading import read_lines
    from seq2seq.translate import Translator

    settings, on = common.decoding_settings(args), common.device(args)
    sources, targets = read_lines(Path(args.source)), read_lines(Path(args.target))
    if len(sources) != len(targets):
        raise Seq2SeqError(
            f"--source has {len(sources)} lines but --target has {len(targets)}; "
            f"give line-aligned files"
        )
    ckpt = common.load_runs(args, on)
    scores = Translator(ckpt, on, settings).score(sources, targets)
    common.emit([f"{value:.4f}" for value in scores], None)
    return 0
