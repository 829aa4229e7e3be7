"""`seq2seq train CONFIG [key=value ...]`: train a model from a YAML config."""

from __future__ import annotations


def add(commands) -> None:
    parser = commands.add_parser("train", help="train a model from a YAML config")
    parser.add_argument("config", help="YAML config, e.g. configs/tutorial.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.epochs=2 name=trial")


def run(args) -> int:
    from seq2seq import distributed
    from seq2seq.config import load_config
    from seq2seq.training import train

    run_dir = train(load_config(args.config, args.overrides))
    if distributed.is_main():
        print(f"trained: {run_dir}/best (evaluate with: seq2seq evaluate {run_dir} --split test)")
    return 0
