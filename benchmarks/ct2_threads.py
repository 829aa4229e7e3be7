"""How CTranslate2 should spend a CPU's threads on our exports: one worker using every thread
for each matrix (inter_threads 1, intra_threads N) or N workers of one thread each, decoding
batches side by side (what `export/load.py` chooses), on test2016.

    python benchmarks/ct2_threads.py EXPORT --threads 2 --beam-size 5

For each layout, prints the sentences/s of the whole split decoded by `CTranslate2Model` (one
batch per length limit, queued all at once as it does, or each decoded before the next is
queued, as it did before), the median of --repeats passes, and the median milliseconds of one
sentence decoded alone (the first 200 sentences), as a client of the server or an interactive
`translate` sees it.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from common import Table, seconds, split_examples

from seq2seq.decode import DecodeSettings
from seq2seq.export.load import load_export
from seq2seq.export.requirement import ctranslate2


class InTurn:
    """A translator whose batches are each decoded before the next is queued: what
    `CTranslate2Model` did before it queued them all at once."""

    def __init__(self, translator):
        self.translator = translator

    def translate_batch(self, *args, asynchronous: bool = False, **options):
        return [Done(result) for result in self.translator.translate_batch(*args, **options)]


class Done:
    def __init__(self, result):
        self._result = result

    def result(self):
        return self._result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ckpt = load_export(args.export, torch.device("cpu"))
    engine = ckpt.model
    _, examples = split_examples(ckpt.config.data, ckpt.vocabs, "test")
    settings = DecodeSettings(batch_size=128, beam_size=args.beam_size)
    print(
        f"{len(examples)} sentences of test2016, beam {args.beam_size}, {args.threads} threads, "
        f"{engine.translator.compute_type}"
    )
    table = Table(
        ("layout", 32),
        ("queued", 8),
        ("sent/s", 7, ".1f"),
        ("passes", 17),
        ("one sentence ms", 15, ".2f"),
    )

    for inter, intra in ((1, args.threads), (args.threads, 1)):
        translator = ctranslate2().Translator(
            str(args.export), device="cpu", inter_threads=inter, intra_threads=intra
        )
        engine.translator = translator
        alone = [
            1000 * seconds(lambda e=example: engine.decode_examples([e], settings))
            for example in examples[:200]
        ]
        layout = f"inter_threads {inter}, intra_threads {intra}"
        for queued, engine.translator in (("in turn", InTurn(translator)), ("at once", translator)):
            rates = [
                len(examples) / seconds(lambda: engine.decode_examples(examples, settings))
                for _ in range(args.repeats)
            ]
            passes = " " + ", ".join(f"{rate:.0f}" for rate in rates)
            table.row(layout, queued, statistics.median(rates), passes, statistics.median(alone))


if __name__ == "__main__":
    main()
