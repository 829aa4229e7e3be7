"""`seq2seq export RUN --output DIR`: a Transformer run as a CTranslate2 model directory."""

from __future__ import annotations

from seq2seq.cli import common


def add(commands) -> None:
    parser = common.add_run_command(
        commands, "export", "a Transformer run as a CTranslate2 model directory, to decode fast"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="the directory to write")
    parser.add_argument(
        "--quantization",
        default="int8",
        help="int8 (default), int8_float32, bfloat16 or float32: how the weights are stored",
    )


def run(args) -> int:
    from seq2seq.export import manifest
    from seq2seq.export.convert import export_run

    output = export_run(args.run, args.output, quantization=args.quantization)
    # A run still training may have moved on: say which checkpoint this is.
    taken = manifest.read(output)
    print(
        f"exported: {output} from {taken.checkpoint} (epoch {taken.epoch}, step {taken.step}); "
        f"translate with: seq2seq translate {output}"
    )
    return 0
