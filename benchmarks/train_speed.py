"""Training speed of the tutorial's model against the tutorial's own training step.

    python benchmarks/train_speed.py --batches 30 --teacher-forcing 1.0 0.5
    python benchmarks/train_speed.py --full-epoch --teacher-forcing 0.5

Both implementations train the same model (2 x 512 LSTM, 256-dim embeddings, Multi30k de->en,
batch 128) on the same bucketed batches, in the same process, after a warm-up. The baseline is
a faithful re-implementation of the tutorial's step: a Python loop over target positions, one
decoder call per token, a random teacher-forcing draw per step, outputs written into a
zero-filled (T, B, V) tensor. Reported: target tokens per second, seconds per epoch
(extrapolated, or measured with --full-epoch), the padding share of the batches, peak memory,
and the compute floor: the model's FLOPs per epoch over the matrix-multiply rate measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import resource

import numpy as np
import torch
from common import Table, median_seconds, seconds, training_set

from seq2seq.config import RecurrentConfig, TrainConfig
from seq2seq.data.batching import padding_share
from seq2seq.data.vocab import model_sizes
from seq2seq.models import build_model
from seq2seq.training.optim import make_optimizer


def tutorial_forward(model, src, src_lengths, tgt, teacher_forcing_ratio):
    """The tutorial's Seq2Seq.forward, on our modules: one decoder call per target position."""
    batch_size, steps = tgt.shape
    vocab_size = model.decoder.output.out_features
    outputs = torch.zeros(steps, batch_size, vocab_size)
    state = model.encode(src, src_lengths)
    token = tgt[:, 0]
    for t in range(1, steps):
        logits, state = model.decoder(token.unsqueeze(1), state)
        outputs[t] = logits[:, 0]
        teacher_force = random.random() < teacher_forcing_ratio
        top1 = logits[:, 0].argmax(1)
        token = tgt[:, t] if teacher_force else top1
    return outputs[1:].transpose(0, 1)  # (B, T-1, V), as ours


def our_forward(model, src, src_lengths, tgt, teacher_forcing_ratio):
    return model(src, src_lengths, tgt, teacher_forcing_ratio)


def train_steps(forward, model, batches, ratio, pad, precision) -> None:
    """Full training steps (forward, loss, backward, clip, Adam): the tutorial's plain Adam for
    its step, our trainer's optimizer for ours."""
    if forward is tutorial_forward:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = make_optimizer(TrainConfig(lr=1e-3), model.parameters(), torch.device("cpu"))
    criterion = torch.nn.CrossEntropyLoss(ignore_index=pad)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bfloat16"
        else contextlib.nullcontext()
    )
    model.train()
    for batch in batches:
        with autocast:
            logits = forward(model, batch.src, batch.src_lengths, batch.tgt, ratio)
        loss = criterion(logits.float().flatten(0, 1), batch.tgt[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def matmul_rate(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a size x size matrix product (median of repeats)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    seconds(lambda: a @ b)  # warm up
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats)


def flops_per_epoch(config: RecurrentConfig, src_tokens: int, tgt_tokens: int, vocab: int) -> float:
    """Forward and backward (3x forward) matrix FLOPs, padding excluded: LSTM gates for every
    source and target token, and the output layer for every target token."""
    gates = 4 * config.hidden_size
    lstm = 2 * gates * (config.embedding_size + config.hidden_size)
    lstm += 2 * gates * 2 * config.hidden_size * (config.num_layers - 1)
    output = 2 * config.hidden_size * vocab
    return 3 * (src_tokens * lstm + tgt_tokens * (lstm + output))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per setting")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--full-epoch", action="store_true", help="time a whole epoch")
    parser.add_argument("--teacher-forcing", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument(
        "--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"]
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--random-batches",
        action="store_true",
        help="also time seq2seq on randomly drawn (padded) batches",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--repeats", type=int, default=1, help="time the batches this often, report the median"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)

    found = training_set()
    src_vocab, tgt_vocab = found.src_vocab, found.tgt_vocab
    lengths, epoch = found.corpus.lengths, found.epoch
    config = RecurrentConfig()
    batches = found.batches(epoch if args.full_epoch else epoch[: args.warmup + args.batches])
    warm, timed = batches[: args.warmup], batches if args.full_epoch else batches[args.warmup :]
    pairs = len(found.corpus)
    epoch_tgt = int(lengths.tgt.sum()) - pairs  # every target token but <sos>
    epoch_src = int(lengths.src.sum())
    timed_tokens = sum(b.num_target_tokens for b in timed)

    fp32, bf16 = matmul_rate(torch.float32), matmul_rate(torch.bfloat16)
    flops = flops_per_epoch(config, epoch_src, epoch_tgt, len(tgt_vocab))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{len(epoch)} batches/epoch, {epoch_tgt} target tokens/epoch, padding "
        f"{padding_share(lengths, epoch):.1%} (bucketed) vs "
        f"{padding_share(lengths, _random_batches(pairs)):.1%} (random batches)"
    )
    print(
        f"matmul 2048^2: {fp32 / 1e9:.0f} GFLOP/s float32, {bf16 / 1e9:.0f} GFLOP/s bfloat16; "
        f"model {flops / 1e12:.1f} TFLOP/epoch -> floor {flops / fp32:.0f} s/epoch float32, "
        f"{flops / bf16:.0f} s/epoch bfloat16"
    )
    print(
        f"timed: {len(timed)} batches, {timed_tokens} target tokens"
        + (" (a full epoch)" if args.full_epoch else f" after {len(warm)} warm-up batches")
        + (f", median of {args.repeats} runs" if args.repeats > 1 else "")
    )
    table = Table(
        *(("implementation", 32), ("tf", 4, ".2f"), ("precision", 9, "s"), ("tok/s", 8, ".0f")),
        *(("s/epoch", 8, ".0f"), ("x floor", 8, ".2f"), ("speed-up", 8, ".2f")),
        ("peak RSS GiB", 12, ".2f"),
    )
    runs = (
        [] if args.skip_baseline else [("tutorial step", tutorial_forward, "float32", warm, timed)]
    )
    runs += [("seq2seq", our_forward, p, warm, timed) for p in args.precision]
    if args.random_batches:
        # The same number of batches drawn at random (as the tutorial's loader), to isolate
        # what bucketing gives.
        drawn = found.batches(_random_batches(pairs)[: args.warmup + len(timed)])
        runs.append(
            (
                "seq2seq, random batches",
                our_forward,
                "float32",
                drawn[: args.warmup],
                drawn[args.warmup :],
            )
        )
    for ratio in args.teacher_forcing:
        baseline = None
        for name, forward, precision, warm_set, timed_set in runs:
            torch.manual_seed(0)
            random.seed(0)
            model = build_model(config, **model_sizes(src_vocab, tgt_vocab))
            train_steps(forward, model, warm_set, ratio, tgt_vocab.pad, precision)
            steps = (forward, model, timed_set, ratio, tgt_vocab.pad, precision)
            taken = median_seconds(functools.partial(train_steps, *steps), args.repeats)
            rate = sum(b.num_target_tokens for b in timed_set) / taken
            epoch_seconds = taken if args.full_epoch else epoch_tgt / rate
            floor = flops / (bf16 if precision == "bfloat16" else fp32)
            baseline = baseline or rate
            table.row(
                *(name, ratio, precision, rate, epoch_seconds, epoch_seconds / floor),
                *(rate / baseline, peak_rss_gib()),
            )


def _random_batches(n: int) -> list[np.ndarray]:
    order = np.arange(n)
    random.Random(0).shuffle(order)
    return [order[i : i + 128] for i in range(0, n, 128)]


if __name__ == "__main__":
    main()
