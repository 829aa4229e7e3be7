"""Transformer speed: training throughput against a plain nn.Transformer step, and beam search
with the key/value cache against beam search that recomputes the prefix.

    python benchmarks/transformer_speed.py train --batches 20 --repeats 3
    python benchmarks/transformer_speed.py decode RUN --beam-size 5 --sentences 1000

`train` times both implementations on the same bucketed Multi30k batches (tutorial-6 size by
default: 3 + 3 layers, d_model 256, 8 heads, feed-forward 512), in one process, alternating,
and reports target tokens per second (median of --repeats) and where our step's time goes.
`decode` decodes test2016 with a trained checkpoint both ways and checks the outputs agree.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics

import torch
from common import Table, seconds, split_examples, timed, training_set
from torch import nn
from torch.nn.attention import SDPBackend

from seq2seq import checkpoint
from seq2seq.config import TransformerConfig
from seq2seq.data.vocab import model_sizes
from seq2seq.decode import DecodeSettings, decode_examples
from seq2seq.device import autocast
from seq2seq.models import build_model, transformer
from seq2seq.models.transformer import PrefixRecomputation, sinusoids


class Reference(nn.Module):
    """The same model written with nn.Transformer, as a PyTorch user would."""

    def __init__(self, config: TransformerConfig, src_vocab: int, tgt_vocab: int, pad: int):
        super().__init__()
        size = config.d_model
        self.pad, self.scale = pad, math.sqrt(size)
        self.src_embedding = nn.Embedding(src_vocab, size, padding_idx=pad)
        self.tgt_embedding = nn.Embedding(tgt_vocab, size, padding_idx=pad)
        self.transformer = nn.Transformer(
            size,
            config.heads,
            config.encoder_layers,
            config.decoder_layers,
            config.ff_size,
            config.dropout,
            batch_first=True,
            norm_first=config.pre_norm,
        )
        self.output = nn.Linear(size, tgt_vocab, bias=False)
        self.output.weight = self.tgt_embedding.weight
        self.dropout = nn.Dropout(config.dropout)

    def embed(self, embedding, tokens):
        positions = sinusoids(tokens.size(1), embedding.embedding_dim)
        return self.dropout(embedding(tokens) * self.scale + positions)

    def forward(self, src, src_lengths, tgt):
        inputs = tgt[:, :-1]
        length = inputs.size(1)
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)  # True: not allowed
        out = self.transformer(
            self.embed(self.src_embedding, src),
            self.embed(self.tgt_embedding, inputs),
            tgt_mask=causal,
            src_key_padding_mask=src == self.pad,
            tgt_key_padding_mask=inputs == self.pad,
            memory_key_padding_mask=src == self.pad,
            tgt_is_causal=True,
        )
        return self.output(out)


def train_steps(model, batches, pad: int, precision: str) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    device = torch.device("cpu")
    for batch in batches:
        with autocast(precision, device):
            logits = model(batch.src, batch.src_lengths, batch.tgt)
        loss = nn.functional.cross_entropy(
            logits.float().flatten(0, 1), batch.tgt[:, 1:].flatten(), ignore_index=pad
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def profile_step(model, batch, pad: int, precision: str) -> None:
    """Where one of our training steps spends its time, by operator."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(model, [batch], pad, precision)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def train_main(args) -> None:
    if args.cpu_attention == "flash":  # what PyTorch would pick, to compare with our choice
        transformer._CPU_BACKENDS = [SDPBackend.FLASH_ATTENTION]
    found = training_set()
    src_vocab, tgt_vocab = found.src_vocab, found.tgt_vocab
    config = TransformerConfig(
        d_model=args.d_model, heads=8, ff_size=args.ff_size, dropout=0.1, pre_norm=args.pre_norm
    )
    batches = found.batches(found.epoch[: args.warmup + args.batches])
    warm, timed = batches[: args.warmup], batches[args.warmup :]
    tokens = sum(b.num_target_tokens for b in timed)
    torch.manual_seed(0)
    ours = build_model(config, **model_sizes(src_vocab, tgt_vocab))
    reference = Reference(config, len(src_vocab), len(tgt_vocab), tgt_vocab.pad)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}, "
        f"{args.cpu_attention} attention; "
        f"{len(timed)} batches of 128 sentences, {tokens} target tokens, after "
        f"{len(warm)} warm-up batches; median of {args.repeats}"
    )
    rates: dict[str, list[float]] = {"nn.Transformer reference": [], "seq2seq Transformer": []}
    models = {"nn.Transformer reference": reference, "seq2seq Transformer": ours}
    for model in models.values():
        train_steps(model, warm, tgt_vocab.pad, args.precision)
    for _ in range(args.repeats):  # alternate, so that machine noise hits both alike
        for name, model in models.items():
            steps = functools.partial(train_steps, model, timed, tgt_vocab.pad, args.precision)
            rates[name].append(tokens / seconds(steps))
    base = statistics.median(rates["nn.Transformer reference"])
    table = Table(("implementation", 28), ("target tok/s", 12, ".0f"), ("x reference", 11, ".2f"))
    for name, values in rates.items():
        rate = statistics.median(values)
        table.row(name, rate, rate / base)
    if args.profile:
        profile_step(ours, timed[0], tgt_vocab.pad, args.precision)


def decode_main(args) -> None:
    ckpt = checkpoint.load(args.run)
    _, examples = split_examples(ckpt.config.data, ckpt.vocabs, "test", args.sentences)
    vocab = ckpt.tgt_vocab
    settings = DecodeSettings(beam_size=args.beam_size, batch_size=args.batch_size)
    ways = {"cache": ckpt.model, "recompute prefix": PrefixRecomputation(ckpt.model).eval()}
    taken: dict[str, list[float]] = {name: [] for name in ways}
    outputs = {}
    options = {"sos": vocab.sos, "eos": vocab.eos, "pad": vocab.pad, "settings": settings}
    options["device"] = torch.device("cpu")
    for _ in range(args.repeats):  # alternate, so that machine noise hits both alike
        for name, model in ways.items():
            decode = functools.partial(decode_examples, model, examples, **options)
            outputs[name], spent = timed(decode)
            taken[name].append(spent)
    same = [h[0].tokens for h in outputs["cache"]] == [
        h[0].tokens for h in outputs["recompute prefix"]
    ]
    print(
        f"{ckpt.path}: {len(examples)} test2016 sentences, beam {args.beam_size}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}; identical output: {same}"
    )
    base = len(examples) / statistics.median(taken["recompute prefix"])
    table = Table(("search", 18), ("sentences/s", 11, ".1f"), ("x recompute", 11, ".2f"))
    for name, values in taken.items():
        rate = len(examples) / statistics.median(values)
        table.row(name, rate, rate / base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--batches", type=int, default=20)
    train.add_argument("--warmup", type=int, default=3)
    train.add_argument("--repeats", type=int, default=3)
    train.add_argument("--d-model", type=int, default=256)
    train.add_argument("--ff-size", type=int, default=512)
    train.add_argument("--pre-norm", action="store_true")
    train.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    train.add_argument("--profile", action="store_true")
    train.add_argument(
        "--cpu-attention",
        default="math",
        choices=["math", "flash"],
        help="the SDPA backend our model uses on CPU (it ships with math)",
    )
    decode = commands.add_parser("decode")
    decode.add_argument("run")
    decode.add_argument("--beam-size", type=int, default=5)
    decode.add_argument("--sentences", type=int, default=1000)
    decode.add_argument("--batch-size", type=int, default=128)
    decode.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    (train_main if args.command == "train" else decode_main)(args)


if __name__ == "__main__":
    main()
