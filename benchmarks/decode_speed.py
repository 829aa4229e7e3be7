"""Decoding speed on Multi30k test2016: batched greedy and beam search against the tutorial's
one-sentence-at-a-time greedy loop, on the same model, in the same process; or, with
--engines, the engines a run can be decoded with, side by side.

    python benchmarks/decode_speed.py runs/tutorial --repeats 3

Prints sentences per second (median of --repeats runs) and the ratio to the tutorial loop.

    python benchmarks/decode_speed.py runs/transformer --engines --threads 2 --sentences 1000

Decodes the first --sentences of the split greedily and with beam 5 on every engine the run
has: our PyTorch float32 and, for a Transformer, its CTranslate2 exports in float32 and int8
(exported here, into a scratch folder), or, for a recurrent model, PyTorch's dynamic int8
(`--quantize int8`). Each (engine, beam) runs in a process of its own, so that its peak
resident memory is its own. Prints sentences/s, output tokens/s, peak RSS (and its growth
over the process before the model loaded), BLEU, and how many outputs equal PyTorch
float32's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import Table, median_seconds, split_examples, timed

from seq2seq import checkpoint
from seq2seq.data.tokenizer import tokenizer_for
from seq2seq.decode import DecodeSettings, decode_examples
from seq2seq.evaluate import sacrebleu_scores
from seq2seq.export.manifest import is_export
from seq2seq.loader import load_ensemble


@torch.inference_mode()
def tutorial_greedy(model, examples, sos: int, eos: int, max_output_length: int = 25):
    """The tutorial's translate_sentence: one sentence, one token per step, `.item()` each step."""
    outputs = []
    for example in examples:
        src = torch.tensor(example.src).unsqueeze(0)  # (1, S)
        state = model.encode(src, torch.tensor([len(example.src)]))
        tokens = [sos]
        for _ in range(max_output_length):
            logits, state = model.decoder(torch.tensor([[tokens[-1]]]), state)
            token = logits[0, -1].argmax(-1).item()
            tokens.append(token)
            if token == eos:
                break
        outputs.append(tokens)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 12])
    parser.add_argument("--engines", action="store_true", help="compare the run's engines")
    parser.add_argument("--threads", type=int, default=2, help="with --engines: CPU threads")
    parser.add_argument("--sentences", type=int, default=1000, help="with --engines")
    parser.add_argument(
        "--max-length-a",
        type=float,
        help="with --engines: the length rule's a (default: the checkpoint's); with a = 0 every "
        "sentence has the same limit, and CTranslate2 decodes a batch in one call",
    )
    parser.add_argument("--max-length-b", type=int, help="with --engines: the length rule's b")
    parser.add_argument(
        "--measure", nargs=3, metavar=("QUANTIZE", "BEAM", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        quantize, beam, out = args.measure
        return measure(args.run, quantize, int(beam), Path(out), args)
    if args.engines:
        return compare_engines(args)

    ckpt = checkpoint.load(args.run)
    model = ckpt.model.eval()
    split, examples = split_examples(ckpt.config.data, ckpt.vocabs, args.split)
    vocab, n = ckpt.tgt_vocab, len(examples)
    print(
        f"{n} sentences of {split.name}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )
    table = Table(("decoder", 40), ("sent/s", 8, ".1f"), ("x tutorial", 10, ".1f"))
    baseline = median_seconds(
        lambda: tutorial_greedy(model, examples, vocab.sos, vocab.eos), args.baseline_repeats
    )
    table.row("tutorial loop (greedy, 1 sentence)", n / baseline, 1.0)
    for beam in [1, *args.beams]:
        settings = DecodeSettings(
            batch_size=128,
            beam_size=beam,
            max_length_a=args.max_length_a,
            max_length_b=args.max_length_b,
        )
        taken = median_seconds(
            lambda s=settings: decode_examples(
                model,
                examples,
                sos=vocab.sos,
                eos=vocab.eos,
                pad=vocab.pad,
                device=torch.device("cpu"),
                settings=s,
            ),
            args.repeats,
        )
        name = "batched greedy" if beam == 1 else f"batched beam {beam}"
        table.row(name, n / taken, baseline / taken)


# CTranslate2 multiplies float32 matrices with oneDNN on CPUs that are not Intel's, unpacked,
# and with MKL, packed, on Intel's. Which is faster for float32 depends on the CPU (docs/
# export-measured.md); int8 runs on oneDNN. Set here: MKL for float32, oneDNN for int8.
CT2_BACKENDS = {"float32": {"CT2_USE_MKL": "1"}, "int8": {}}


def engines(run: str, scratch: Path) -> dict[str, tuple[str, str, dict]]:
    """Engine name -> (model directory, --quantize, environment) for the run's model type."""
    from seq2seq.export.convert import export_run

    found = {"PyTorch float32": (run, "none", {})}
    if checkpoint.load(run).config.model.type != "transformer":
        found["PyTorch dynamic int8"] = (run, "int8", {})
        return found
    for quantization, environment in CT2_BACKENDS.items():
        export = export_run(run, scratch / quantization, quantization=quantization)
        found[f"CTranslate2 {quantization}"] = (str(export), "none", environment)
    return found


def compare_engines(args) -> None:
    print(
        f"{args.sentences} sentences of {args.split}, {args.threads} threads, batches of 128, "
        f"torch {torch.__version__}; each row one process, one timed run",
        flush=True,
    )
    table = Table(
        *(("engine", 22), ("beam", 4, "d"), ("sent/s", 7, ".1f"), ("tok/s", 7, ".0f")),
        *(("RSS MB", 7, ".0f"), ("(+model)", 8, ".0f"), ("BLEU", 6, ".2f")),
        ("= PyTorch", 9, ".1%"),
    )
    with tempfile.TemporaryDirectory() as scratch:
        models = engines(args.run, Path(scratch))
        for beam in (1, 5):
            reference = None
            for name, (path, quantize, environment) in models.items():
                out = Path(scratch) / f"{name}-{beam}.json"
                argv = [sys.executable, __file__, path, "--split", args.split]
                argv += ["--threads", str(args.threads), "--sentences", str(args.sentences)]
                for key in ("max_length_a", "max_length_b"):
                    if getattr(args, key) is not None:
                        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
                subprocess.run(
                    [*argv, "--measure", quantize, str(beam), str(out)],
                    check=True,
                    env={**os.environ, **environment},
                )
                result = json.loads(out.read_text())
                reference = reference or result["translations"]
                same = sum(a == b for a, b in zip(reference, result["translations"], strict=True))
                table.row(
                    *(name, beam, result["sentences_per_s"], result["tokens_per_s"]),
                    *(result["peak_rss_mb"], result["model_rss_mb"], result["bleu"]),
                    same / len(reference),
                )


def measure(run: str, quantize: str, beam: int, out: Path, args) -> None:
    """One engine at one beam size, in this process: the figures, as JSON, to `out`."""
    torch.set_num_threads(args.threads)
    # The text first, from the config and vocabularies alone, so that the growth of the peak
    # RSS after it is the model's and its decoding's.
    directory = Path(run) if is_export(run) else checkpoint.resolve(run)
    data = checkpoint.read_config(directory).data
    vocabs = checkpoint.read_vocabs(directory, data)
    split, examples = split_examples(data, vocabs, args.split, args.sentences)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ckpt = load_ensemble([run], quantize=quantize)
    references = split.tgt_text[: args.sentences]
    vocab, tokenizer = ckpt.tgt_vocab, tokenizer_for(data, "tgt", ckpt.tgt_vocab)
    settings = DecodeSettings(
        batch_size=128,
        beam_size=beam,
        max_length_a=args.max_length_a,
        max_length_b=args.max_length_b,
    )
    options = {"sos": vocab.sos, "eos": vocab.eos, "pad": vocab.pad, "device": torch.device("cpu")}
    decode_examples(ckpt.model, examples[:16], settings=settings, **options)  # warm up
    found, taken = timed(
        lambda: decode_examples(ckpt.model, examples, settings=settings, **options)
    )
    translations = [tokenizer.detokenize(vocab.tokens(h[0].tokens)) for h in found]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "sentences_per_s": len(examples) / taken,
        "tokens_per_s": sum(len(h[0].tokens) for h in found) / taken,
        "peak_rss_mb": peak,
        "model_rss_mb": peak - before,
        "bleu": sacrebleu_scores(translations, references, lowercase=tokenizer.lowercase)["bleu"],
        "translations": translations,
    }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
