"""Decoding speed on Multi30k test2016: batched greedy and beam search against the tutorial's
one-sentence-at-a-time greedy loop, on the same model, in the same process.

    python benchmarks/decode_speed.py runs/tutorial --repeats 3

Prints sentences per second (median of --repeats runs) and the ratio to the tutorial loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seq2seq import checkpoint
from seq2seq.data.dataset import load_split, numericalize
from seq2seq.decode import DecodeSettings, decode_examples


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


def timed(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 12])
    args = parser.parse_args()

    ckpt = checkpoint.load(args.run)
    model = ckpt.model.eval()
    split = load_split(ckpt.config.data, args.split, vocabs=ckpt.vocabs)
    examples = numericalize(split, ckpt.src_vocab, ckpt.tgt_vocab, ckpt.config.data)
    vocab, n = ckpt.tgt_vocab, len(examples)
    print(
        f"{n} sentences of {split.name}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}"
    )

    baseline = timed(
        lambda: tutorial_greedy(model, examples, vocab.sos, vocab.eos), args.baseline_repeats
    )
    print(f"{'tutorial loop (greedy, 1 sentence)':40} {n / baseline:8.1f} sent/s   1.0x")
    for beam in [1, *args.beams]:
        settings = DecodeSettings(batch_size=128, beam_size=beam)
        seconds = timed(
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
        print(f"{name:40} {n / seconds:8.1f} sent/s {baseline / seconds:6.1f}x")


if __name__ == "__main__":
    main()
