"""`seq2seq prepare CONFIG [key=value ...]`: tokenize, filter and write a config's training
corpora once, as the memory-mapped corpus every later run (and every process) reads."""

from __future__ import annotations


def add(commands) -> None:
    parser = commands.add_parser(
        "prepare", help="tokenize, filter and write a config's training corpora, once"
    )
    parser.add_argument("config", help="YAML config, e.g. configs/transformer.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. data.num_workers=8")
    parser.add_argument("--force", action="store_true", help="prepare again if prepared")


def run(args) -> int:
    from seq2seq.config import load_config
    from seq2seq.data.prepare import prepare

    corpus = prepare(load_config(args.config, args.overrides).data, force=args.force)
    print(f"prepared: {corpus.path} ({len(corpus)} training pairs)")
    return 0
