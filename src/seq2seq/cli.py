"""Command line: `seq2seq train | evaluate | translate`. Parses and dispatches, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from seq2seq.errors import Seq2SeqError, TrainingInterrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Sequence to sequence learning with LSTMs (Sutskever 2014)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", help="YAML config, e.g. configs/tutorial.yaml")
    train.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=2 name=trial")

    evaluate = commands.add_parser("evaluate", help="loss, perplexity, BLEU and chrF on a split")
    evaluate.add_argument(
        "run", nargs="+", help="run directory (uses best/) or checkpoint; several: an ensemble"
    )
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
    translate.add_argument(
        "--n-best",
        type=int,
        default=1,
        help="print N hypotheses per input: 'LINE ||| TEXT ||| LOGPROB ||| SCORE'",
    )
    _decoding_options(translate)

    score = commands.add_parser("score", help="log-probability of given translations")
    score.add_argument("run", help="run directory (uses best/) or a checkpoint directory")
    score.add_argument("--source", required=True, help="file of source sentences")
    score.add_argument("--target", required=True, help="file of target sentences, line-aligned")
    _decoding_options(score)

    serve = commands.add_parser("serve", help="a JSON API and a web page over trained models")
    serve.add_argument(
        "run",
        nargs="+",
        help="run or checkpoint directory; NAME=PATH names it, PATH+PATH serves an ensemble; "
        "several are served side by side, the first is the default",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (8000)")
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    serve.add_argument("--num-threads", type=int, help="PyTorch CPU threads (PyTorch's choice)")
    _server_options(serve)

    # Options may follow the sentences of `translate`; argparse alone would stop the sentence
    # list at the first option and refuse the rest.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "translate" and not any(e.startswith("-") for e in extra):
        args.sentences += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        commands = {
            "train": _train,
            "evaluate": _evaluate,
            "translate": _translate,
            "score": _score,
            "serve": _serve,
        }
        return commands[args.command](args)
    except TrainingInterrupted as error:
        print(f"seq2seq: {error}", file=sys.stderr)
        return 130
    except Seq2SeqError as error:
        print(f"seq2seq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seq2seq: interrupted", file=sys.stderr)
        return 130


def _decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        default=[],
        metavar="RUN",
        help="more runs or checkpoints, decoded as an ensemble with RUN; they take every "
        "argument up to the next option, so give sentences before them",
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
        "--max-length",
        type=int,
        default=None,
        help="cap on output tokens (default: 1.5 x source length + 10)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")


def _server_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of the server's settings, e.g. --max-beam-size."""
    from dataclasses import fields

    from seq2seq.server.settings import ServerSettings, option

    kinds = {"bool": {"action": "store_true"}, "int": {"type": int}, "float": {"type": float}}
    for item in fields(ServerSettings):
        help = item.metadata["help"] + ("" if item.type == "bool" else f" ({item.default})")
        parser.add_argument(option(item.name), default=item.default, help=help, **kinds[item.type])


def _settings(args):
    from seq2seq.decode import DecodeSettings

    n_best = getattr(args, "n_best", 1)
    checks = [
        ("--batch-size", args.batch_size, args.batch_size >= 1, "at least 1"),
        ("--beam-size", args.beam_size, args.beam_size >= 1, "at least 1"),
        ("--n-best", n_best, 1 <= n_best <= args.beam_size, "between 1 and --beam-size"),
        ("--alpha", args.alpha, args.alpha >= 0, "0 or more"),
        ("--min-length", args.min_length, args.min_length >= 0, "0 or more"),
        (
            "--max-length",
            args.max_length,
            args.max_length is None or args.max_length >= 1,
            "at least 1",
        ),
    ]
    for option, value, ok, requirement in checks:
        if not ok:
            raise Seq2SeqError(f"{option} must be {requirement} (got {value})")
    return DecodeSettings(
        batch_size=args.batch_size,
        beam_size=args.beam_size,
        alpha=args.alpha,
        n_best=n_best,
        min_length=args.min_length,
        max_length=args.max_length,
    )


def _load(args):
    from seq2seq import checkpoint
    from seq2seq.device import pick_device

    device = pick_device(args.device)
    runs = args.run if isinstance(args.run, list) else [args.run]
    return checkpoint.load_ensemble([*runs, *args.checkpoints], device), device


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
    elif getattr(sys.stdin, "isatty", lambda: False)():
        raise Seq2SeqError(
            "nothing to translate: give sentences (before any --checkpoints), --input FILE, "
            "or pipe text to standard input"
        )
    else:
        lines = _decode_stdin()
    ckpt, device = _load(args)
    translator = Translator(ckpt, device, settings)
    if settings.n_best == 1:
        outputs = translator.translate(lines)
    else:
        outputs = [
            f"{number} ||| {text} ||| {h.log_prob:.4f} ||| {h.score:.4f}"
            for number, hypotheses in enumerate(translator.nbest(lines))
            for text, h in hypotheses
        ]
    _emit(outputs, args.output)
    return 0


def _score(args) -> int:
    from seq2seq.translate import Translator

    settings = _settings(args)
    sources, targets = _read_input(Path(args.source)), _read_input(Path(args.target))
    if len(sources) != len(targets):
        raise Seq2SeqError(
            f"--source has {len(sources)} lines but --target has {len(targets)}; "
            f"give line-aligned files"
        )
    ckpt, device = _load(args)
    scores = Translator(ckpt, device, settings).score(sources, targets)
    _emit([f"{value:.4f}" for value in scores], None)
    return 0


def _serve(args) -> int:
    try:
        from seq2seq.server.run import serve
    except ImportError as error:
        raise Seq2SeqError(
            f"seq2seq serve needs FastAPI and uvicorn ({error}); pip install -e '.[serve]'"
        ) from None
    from dataclasses import fields

    import torch

    from seq2seq.device import pick_device
    from seq2seq.server.settings import ServerSettings

    settings = ServerSettings(
        **{item.name: getattr(args, item.name) for item in fields(ServerSettings)}
    )
    if args.num_threads is not None and args.num_threads < 1:
        raise Seq2SeqError(f"--num-threads must be at least 1 (got {args.num_threads})")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    serve(
        args.run, host=args.host, port=args.port, device=pick_device(args.device), settings=settings
    )
    return 0


def _emit(lines: list[str], output: str | None) -> None:
    if output:
        _write_lines(Path(output), lines)
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))


def _read_input(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise Seq2SeqError(f"cannot read {path}: {error.strerror}") from None
    return _split_lines(data, str(path))


def _decode_stdin() -> list[str]:
    return _split_lines(sys.stdin.buffer.read(), "standard input")


def _split_lines(data: bytes, source: str) -> list[str]:
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
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
