"""Command line: `seq2seq train | average | evaluate | translate | score | plot | sentence-map |
compare`.
Parses and dispatches, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from seq2seq.errors import Seq2SeqError, TrainingInterrupted


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seq2seq", description="Sequence to sequence learning with LSTMs (Sutskever 2014)."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)

    train = commands.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", help="YAML config, e.g. configs/tutorial.yaml")
    train.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=2 name=trial")

    prepare = commands.add_parser(
        "prepare", help="tokenize, filter and write a config's training corpora, once"
    )
    prepare.add_argument("config", help="YAML config, e.g. configs/transformer.yaml")
    prepare.add_argument("overrides", nargs="*", help="key=value, e.g. data.num_workers=8")
    prepare.add_argument("--force", action="store_true", help="prepare again if prepared")

    average = commands.add_parser("average", help="average checkpoints' weights into one")
    average.add_argument(
        "runs", nargs="+", metavar="RUN", help="a run directory with --last N, or checkpoints"
    )
    average.add_argument(
        "--last", type=int, metavar="N", help="the run's last N epoch-K/ checkpoints"
    )
    average.add_argument(
        "--output", required=True, metavar="DIR", help="the checkpoint directory to write"
    )

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
    translate.add_argument(
        "sentences", nargs="*", default=[], help="sentences; none reads --input or stdin"
    )
    translate.add_argument("--input", help="file with one sentence per line")
    translate.add_argument("--output", help="write translations here instead of stdout")
    translate.add_argument(
        "--n-best",
        type=int,
        default=1,
        help="print N hypotheses per input: 'LINE ||| TEXT ||| LOGPROB ||| SCORE'",
    )
    translate.add_argument(
        "--attention-plot",
        metavar="FILE",
        help="draw the sentence's attention map (.png or .svg); attention models, one sentence",
    )
    translate.add_argument(
        "--layer", type=int, help="with --attention-plot: a Transformer's decoder layer (last)"
    )
    translate.add_argument(
        "--head", type=int, help="with --attention-plot: a Transformer's head (mean of all)"
    )
    _decoding_options(translate)

    score = commands.add_parser("score", help="log-probability of given translations")
    score.add_argument("run", help="run directory (uses best/) or a checkpoint directory")
    score.add_argument("--source", required=True, help="file of source sentences")
    score.add_argument("--target", required=True, help="file of target sentences, line-aligned")
    _decoding_options(score)

    plot = commands.add_parser("plot", help="learning curves of runs, from their log.jsonl")
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run directories, overlaid")
    plot.add_argument("--output", required=True, help="figure file: .png or .svg")

    sentence_map = commands.add_parser(
        "sentence-map", help="2-D PCA of the encoder's sentence vectors (the paper's Figure 2)"
    )
    sentence_map.add_argument("run", help="run directory (uses best/) or a checkpoint directory")
    sentence_map.add_argument(
        "--sentences", help="one source sentence per line, groups apart by blank lines "
        "(default: the shipped German probes)"
    )  # fmt: skip
    sentence_map.add_argument("--output", required=True, help="figure file: .png or .svg")
    sentence_map.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")

    compare = commands.add_parser(
        "compare", help="paired bootstrap: is RUN_B better than RUN_A on a split?"
    )
    compare.add_argument("run_a", metavar="RUN_A", help="the baseline run or checkpoint")
    compare.add_argument("run_b", metavar="RUN_B", help="the run or checkpoint compared with it")
    compare.add_argument("--split", default="test", help="test, val, or a file prefix")
    compare.add_argument("--data-dir", help="folder holding the split's files")
    compare.add_argument("--json", action="store_true", help="print the figures as JSON")
    _decoding_options(compare, ensemble=False)

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

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        commands = {
            "train": _train,
            "prepare": _prepare,
            "average": _average,
            "evaluate": _evaluate,
            "translate": _translate,
            "score": _score,
            "plot": _plot,
            "sentence-map": _sentence_map,
            "compare": _compare,
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


def _decoding_options(parser: argparse.ArgumentParser, *, ensemble: bool = True) -> None:
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
    from seq2seq.decode import checked_settings

    names = ("batch_size", "beam_size", "n_best", "alpha", "min_length", "max_length")
    values = {name: getattr(args, name) for name in names if name != "n_best"}
    values["n_best"] = getattr(args, "n_best", 1)  # translate's option alone
    return checked_settings({name: "--" + name.replace("_", "-") for name in names}, **values)


def _device(args):
    from seq2seq.device import pick_device

    return pick_device(args.device)


def _load(args, device):
    from seq2seq import checkpoint

    return checkpoint.load_ensemble([args.run, *args.ensemble], device)


def _train(args) -> int:
    from seq2seq import distributed
    from seq2seq.config import load_config
    from seq2seq.train import train

    run_dir = train(load_config(args.config, args.overrides))
    if distributed.is_main():
        print(f"trained: {run_dir}/best (evaluate with: seq2seq evaluate {run_dir} --split test)")
    return 0


def _prepare(args) -> int:
    from seq2seq.config import load_config
    from seq2seq.data.prepare import prepare

    corpus = prepare(load_config(args.config, args.overrides).data, force=args.force)
    print(f"prepared: {corpus.path} ({len(corpus)} training pairs)")
    return 0


def _average(args) -> int:
    from seq2seq.average import average_checkpoints, last_epochs

    paths = args.runs
    if args.last is not None:
        if len(paths) != 1:
            raise Seq2SeqError("--last N takes one run directory; without it, give checkpoints")
        paths = last_epochs(paths[0], args.last)
    members = average_checkpoints(paths, args.output)
    print(f"averaged {len(members)} checkpoints into {args.output}: {', '.join(map(str, members))}")
    return 0


def _evaluate(args) -> int:
    from seq2seq.evaluate import evaluate_split

    settings, device = _settings(args), _device(args)
    ckpt = _load(args, device)
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
    bleu = f"BLEU (detokenized, {'lowercased' if ckpt.config.data.lowercase else 'cased'})"
    print(f"{bleu:<32}{result['bleu']:.2f}  {result['bleu_signature']}")
    print(f"chrF                            {result['chrf']:.2f}  {result['chrf_signature']}")
    print(f"BLEU (lowercased spaCy tokens)  {result['bleu_tokenized']:.2f}  (the tutorial's)")
    return 0


def _translate(args) -> int:
    from seq2seq import alignment
    from seq2seq.data.lines import read_lines, read_stdin
    from seq2seq.translate import Translator

    settings, device = _settings(args), _device(args)
    if args.sentences and args.input:
        raise Seq2SeqError("give sentences as arguments or --input FILE, not both")
    if args.sentences:
        lines = args.sentences
    elif args.input:
        lines = read_lines(Path(args.input))
    elif getattr(sys.stdin, "isatty", lambda: False)():
        raise Seq2SeqError(
            "nothing to translate: give sentences, --input FILE, or pipe text to standard input"
        )
    else:
        lines = read_stdin()
    if args.attention_plot:
        alignment.check_plot(args.attention_plot, lines)
    elif args.layer is not None or args.head is not None:
        raise Seq2SeqError("--layer and --head choose what --attention-plot draws; give it too")
    ckpt = _load(args, device)
    if args.attention_plot:
        alignment.check_attention(ckpt)
    translator = Translator(ckpt, device, settings)
    found = translator.nbest(lines)
    if args.attention_plot:
        alignment.plot_attention(
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
    _emit(outputs, args.output)
    return 0


def _score(args) -> int:
    from seq2seq.data.lines import read_lines
    from seq2seq.translate import Translator

    settings, device = _settings(args), _device(args)
    sources, targets = read_lines(Path(args.source)), read_lines(Path(args.target))
    if len(sources) != len(targets):
        raise Seq2SeqError(
            f"--source has {len(sources)} lines but --target has {len(targets)}; "
            f"give line-aligned files"
        )
    ckpt = _load(args, device)
    scores = Translator(ckpt, device, settings).score(sources, targets)
    _emit([f"{value:.4f}" for value in scores], None)
    return 0


def _plot(args) -> int:
    from seq2seq.plot import plot_runs

    plot_runs(args.runs, args.output)
    print(f"wrote {args.output}")
    return 0


def _sentence_map(args) -> int:
    from seq2seq.sentence_map import sentence_map

    result = sentence_map(args.run, args.output, sentences=args.sentences, device=args.device)
    if result["separation"]:
        within, between = result["separation"]
        print(f"mean cosine similarity: {within:.3f} within groups, {between:.3f} between groups")
    print(f"wrote {args.output}")
    return 0


def _compare(args) -> int:
    from seq2seq.compare import compare_runs, format_comparison
    from seq2seq.device import pick_device

    result = compare_runs(
        args.run_a,
        args.run_b,
        split=args.split,
        device=pick_device(args.device),
        data_dir=args.data_dir,
        settings=_settings(args),
    )
    print(json.dumps(result, indent=2) if args.json else format_comparison(result))
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


def _write_lines(path: Path, lines: list[str]) -> None:
    try:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as error:
        raise Seq2SeqError(f"cannot write {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
