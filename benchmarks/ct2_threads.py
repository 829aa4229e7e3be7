"""How CTranslate2 should spend a CPU's threads on our exports: one worker using every thread
for each matrix (inter_threads 1, intra_threads N) or N workers of one thread each, decoding
batches side by side (what `export/load.py` chooses), on test2016.

    python benchmarks/ct2_threads.py EXPORT --threads 2 --beam-size 5

For each layout, prints the sentences/s of the whole split decoded as `CTranslate2Model` does
(one batch per length limit, queued one after another or all at once), the median of
--repeats passes, and the median milliseconds of one sentence decoded alone (the first 200
sentences), as a client of the server or an interactive `translate` sees it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.data.dataset import load_split, numericalize
from seq2seq.decode import DecodeSettings
from seq2seq.export.requirement import ctranslate2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compute-type", default="default", help="e.g. int8 for a float export")
    args = parser.parse_args()

    config = checkpoint.read_config(args.export)
    src_vocab, tgt_vocab = checkpoint.read_vocabs(args.export, config.data)
    split = load_split(config.data, "test", vocabs=(src_vocab, tgt_vocab))
    examples = numericalize(split, src_vocab, tgt_vocab, config.data)
    sources = [[src_vocab.itos[i] for i in example.src[1:-1]] for example in examples]
    settings = DecodeSettings(batch_size=128, beam_size=args.beam_size)
    limits = settings.limits(torch.tensor([len(source) for source in sources])).tolist()
    groups = defaultdict(list)
    for index, limit in enumerate(limits):
        groups[limit].append(index)
    options = {"beam_size": args.beam_size, "length_penalty": 0.0, "max_batch_size": 128}
    print(
        f"{len(sources)} sentences of test2016 in {len(groups)} length groups, beam "
        f"{args.beam_size}, {args.threads} threads, {args.compute_type}"
    )
    print(f"{'layout':<32} {'queued':<8} {'sent/s':>7}  {'passes':<16} {'one sentence ms':>15}")

    for inter, intra in ((1, args.threads), (args.threads, 1)):
        translator = ctranslate2().Translator(
            str(args.export),
            device="cpu",
            compute_type=args.compute_type,
            inter_threads=inter,
            intra_threads=intra,
        )

        def whole(asynchronous: bool, translator=translator) -> None:
            pending = [
                translator.translate_batch(
                    [sources[i] for i in indices],
                    max_decoding_length=limit,
                    asynchronous=asynchronous,
                    **options,
                )
                for limit, indices in groups.items()
            ]
            for results in pending:
                for result in results:
                    result.result() if asynchronous else result

        alone = []
        for source, limit in zip(sources[:200], limits, strict=False):
            started = time.perf_counter()
            translator.translate_batch([source], max_decoding_length=limit, **options)
            alone.append(1000 * (time.perf_counter() - started))
        layout = f"inter_threads {inter}, intra_threads {intra}"
        for asynchronous in (False, True):
            rates = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                whole(asynchronous)
                rates.append(len(sources) / (time.perf_counter() - started))
            passes = ", ".join(f"{rate:.0f}" for rate in rates)
            print(
                f"{layout:<32} {'at once' if asynchronous else 'in turn':<8} "
                f"{statistics.median(rates):>7.1f}  {passes:<16} {statistics.median(alone):>15.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
