"""`seq2seq translate RUN [SENTENCE ...]`: translate sentences, from arguments, a file or
standard input; n-best lists; an attention map of one sentence."""

from __future__ import annotations

import sys
from pathlib import Path

from seq2seq.cli import common
from seq2seq.errors import Seq2SeqError


def add(commands) -> None:
    parser = common.add_run_command(commands, "translate", "translate sentences")
    parser.add_argument(
        "sentences", nargs="*", default=[], help="sentences; none reads --input or stdin"
    )
    parser.add_argument("--input", help="file with one sentence per line")
    parser.add_argument("--output", help="write translations here instead of stdout")
    parser.add_argument(
        "--n-best",
        type=int,
        default=1,
        help="print N hypotheses per input: 'LINE ||| TEXT ||| LOGPROB ||| SCORE'",
    )
    parser.add_argument(
        "--attention-plot",
        metavar="FILE",
        help="draw the sentence's attention map (.png or .svg); attention models, one sentence",
    )
    parser.add_argument(
        "--layer", type=int, help="with --attention-plot: a Transformer's decoder layer (last)"
    )
    parser.add_argument(
        "--head", type=int, help="with --attention-plot: a Transformer's head (mean of all)"
    )
    common.add_decoding_options(parser)


def run(args) -> int:
    from seq2seq.analysis import attention_maps
    from seq2seq.translate import Translator

    settings, on = common.decoding_settings(args), common.device(args)
    lines = _input_lines(args)
    if args.attention_plot:
        attention_maps.check_plot(args.attention_plot, lines)
    elif args.layer is not None or args.head is not None:
        raise Seq2SeqError("--layer and --head choose what --attention-plot draws; give it too")
    ckpt = common.load_runs(args, on)
    if args.attention_plot:
        attention_maps.check_attention(ckpt)
    translator = Translator(ckpt, on, settings)
    found = translator.nbest(lines)
    if args.attention_plot:
        attention_maps.plot_attention(
            translator, lines[0], found[0][0], args.attention_plot, layer=args.layer, head=args.head
        )
        print(f"wrote {args.attention_plot}", file=sys.stderr)
    if settings.n_best == 1:
        outputs = [hypotheses[0][0] for hypotheses in found]
    else:
        outputs = [
            f"{number} ||| {text} ||| {h.log_prob:.4f} ||| {h.score:.4f}"
            for number, hypotheses in enumerate(found)
            for text, h in hypotheses
        ]
    common.emit(outputs, args.output)
    return 0


def _input_lines(args) -> list[str]:
    from seq2seq.data.reading import read_lines, read_stdin

    if args.sentences and args.input:
        raise Seq2SeqError("give sentences as arguments or --input FILE, not both")
    if args.sentences:
        return args.sentences
    if args.input:
        return read_lines(Path(args.input))
    if getattr(sys.stdin, "isatty", lambda: False)():
        raise Seq2SeqError(
            "nothing to translate: give sentences, --input FILE, or pipe text to standard input"
        )
    return read_stdin()
