"""Command line: `seq2seq train | evaluate | translate`. Parses and dispatches, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from seq2seq.errors import Seq2SeqError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Sequence to sequence learning with LSTMs (Sutskever 2014)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", help="YAML config, e.g. configs/tutorial.yaml")
    train.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=2 name=trial")

    evaluate = commands.add_parser("evaluate", help="loss, perplexity, BLEU and chrF on a split")
    evaluate.add_argument("run", help="run directory (uses best/) or a checkpoint directory")
    evaluate.add_argument(
        "--split", default="test", help="test, val, or a split's file prefix (default: test)"
    )
    evaluate.add_argument("--data-dir", help="folder holding the split's files")
    evaluate.add_argument("--output", help="write the translations to this file")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    _decoding_options(evaluate)

    translate = commands.add_parser("translate", help="translate sentences")
    translate.add_argument("run", help="run directory (uses best/) or a checkpoint directory")
    translate.add_argument("sentences", nargs="*", help="sentences; none reads --input or stdin")
    translate.add_argument("--input", help="file with one sentence per line")
    translate.add_argument("--output", help="write translations here instead of stdout")
    _decoding_options(translate)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return {"train": _train, "evaluate": _evaluate, "translate": _translate}[args.command](args)
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seq2seq: interrupted", file=sys.stderr)
        return 130


def _decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per batch")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="cap on output tokens (default: 1.5 x source length + 10)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def _settings(args):
    from seq2seq.evaluate import DecodeSettings

    if args.batch_size < 1:
        raise Seq2SeqError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.max_length is not None and args.max_length < 1:
        raise Seq2SeqError(f"--max-length must be at least 1 (got {args.max_length})")
    return DecodeSettings(batch_size=args.batch_size, max_length=args.max_length)


def _load(args):
    from seq2seq import checkpoint
    from seq2seq.train import pick_device

    device = pick_device(args.device)
    return checkpoint.load(args.run, device), device


def _train(args) -> int:
    from seq2seq.config import load_config
    from seq2seq.train import train

    run_dir = train(load_config(args.config, args.overrides))
    print(f"trained: {run_dir}/best (evaluate with: seq2seq evaluate {run_dir} --split test)")
    return 0


def _evaluate(args) -> int:
    from seq2seq.evaluate import evaluate_split

    settings = _settings(args)
    ckpt, device = _load(args)
    result = evaluate_split(
        ckpt, args.split, device=device, data_dir=args.data_dir, settings=settings
    )
    translations = result.pop("translations")
    if args.output:
        _write_lines(Path(args.output), translations)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['split']}: {result['sentences']} sentences, checkpoint {ckpt.path}")
    print(f"loss (teacher forced)           {result['loss']:.3f}  ppl {result['ppl']:.2f}")
    print(
        f"loss (free running, tutorial's) {result['free_loss']:.3f}  ppl {result['free_ppl']:.2f}"
    )
    print(f"BLEU (detokenized, lowercased)  {result['bleu']:.2f}  {result['bleu_signature']}")
    print(f"chrF                            {result['chrf']:.2f}  {result['chrf_signature']}")
    print(f"BLEU (lowercased spaCy tokens)  {result['bleu_tokenized']:.2f}  (the tutorial's)")
    return 0


def _translate(args) -> int:
    from seq2seq.translate import Translator

    settings = _settings(args)
    if args.sentences and args.input:
        raise Seq2SeqError("give sentences as arguments or --input FILE, not both")
    if args.sentences:
        lines = args.sentences
    elif args.input:
        lines = _read_input(Path(args.input))
    else:
        lines = _decode_stdin()
    ckpt, device = _load(args)
    outputs = Translator(ckpt, device, settings).translate(lines)
    if args.output:
        _write_lines(Path(args.output), outputs)
    else:
        sys.stdout.write("".join(line + "\n" for line in outputs))
    return 0


def _read_input(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise Seq2SeqError(f"cannot read --input {path}: {error.strerror}") from None
    return _split_lines(data, str(path))


def _decode_stdin() -> list[str]:
    return _split_lines(sys.stdin.buffer.read(), "standard input")


def _split_lines(data: bytes, source: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise Seq2SeqError(
            f"{source} line {line} is not valid UTF-8; convert it to UTF-8"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _write_lines(path: Path, lines: list[str]) -> None:
    try:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
