"""SentencePiece on Multi30k: training time, vocabulary sizes, and pieces per sentence.

    python benchmarks/subword_stats.py [--data-dir DIR] [--vocab-size N] [--cased]
        [--max-sizes]

For each model type (unigram, bpe) and vocabulary (separate, joint), with the default data
settings otherwise (lowercased, raw text), trains SentencePiece on the whole training split,
uncached, and prints the seconds it took, the vocabulary sizes, and the mean number of pieces per
sentence of the training split and of test2016, beside spaCy's tokens per sentence.
`--max-sizes` prints instead the largest `data.vocab_size` the training text allows per model
type and language (SentencePiece refuses a larger one).
"""

from __future__ import annotations

import argparse
import time

from common import Table

from seq2seq.config import ConfigError, DataConfig
from seq2seq.data import subword
from seq2seq.data.files import data_dirs, find_file
from seq2seq.data.reading import read_lines
from seq2seq.data.tokenizer import Tokenizer, processor, sentencepiece_input

LANGS = ("de", "en")
SPLITS = {"train": "train", "test_2016_flickr": "test16"}  # file prefix: column name


def mean_length(sentences: list[list[str]]) -> float:
    return sum(map(len, sentences)) / len(sentences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with the Multi30k files")
    parser.add_argument("--vocab-size", type=int, default=DataConfig().vocab_size)
    parser.add_argument("--cased", action="store_true", help="keep case (data.lowercase=false)")
    parser.add_argument("--max-sizes", action="store_true")
    args = parser.parse_args()
    dirs = data_dirs(args.data_dir)
    lowercase = not args.cased
    text = {
        (split, lang): sentencepiece_input(
            read_lines(find_file(split, lang, dirs)), lowercase=lowercase
        )
        for split in SPLITS
        for lang in LANGS
    }
    if args.max_sizes:
        for model_type in ("unigram", "bpe"):
            for langs in (*((lang,) for lang in LANGS), LANGS):
                lines = [line for lang in langs for line in text["train", lang]]
                try:
                    subword.train(lines, model_type=model_type, vocab_size=10**6, name="")
                except ConfigError as error:
                    print(f"{model_type:<8} {'+'.join(langs):<6} {str(error).split()[-1]:>7}")
        return

    spacy_lengths = {
        (split, lang): mean_length(Tokenizer(lang, lowercase=lowercase).tokenize_many(lines))
        for (split, lang), lines in text.items()
    }
    print(f"vocab_size {args.vocab_size}, {'cased' if args.cased else 'lowercased'}, raw text")
    pieces = [(f"{name} {lang}", 11, ".2f") for name in SPLITS.values() for lang in LANGS]
    table = Table(
        *(("tokenizer", 22), ("train s", 8, ".1f"), ("vocab de", 10, "d"), ("vocab en", 10, "d")),
        *pieces,
        separator="",
    )
    table.row("spacy tokens", "", "", "", *spacy_lengths.values())
    for model_type in ("unigram", "bpe"):
        for joint in (False, True):
            started = time.perf_counter()
            if joint:
                model = subword.train(
                    text["train", "de"] + text["train", "en"],
                    model_type=model_type,
                    vocab_size=args.vocab_size,
                    name="de+en",
                )
                models = {"de": model, "en": model}
            else:
                models = {
                    lang: subword.train(
                        text["train", lang],
                        model_type=model_type,
                        vocab_size=args.vocab_size,
                        name=lang,
                    )
                    for lang in LANGS
                }
            seconds = time.perf_counter() - started
            vocabs = {lang: subword.subword_vocab(model) for lang, model in models.items()}
            lengths = [
                mean_length(processor(models[lang]).encode(text[split, lang]))
                for split in SPLITS
                for lang in LANGS
            ]
            name = f"{model_type}, {'joint' if joint else 'separate'}"
            table.row(name, seconds, len(vocabs["de"]), len(vocabs["en"]), *lengths)


if __name__ == "__main__":
    main()
