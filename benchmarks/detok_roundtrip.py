"""Share of reference lines that come back unchanged from tokenize + detokenize, per language.

    python benchmarks/detok_roundtrip.py [--data-dir DIR] [--splits test_2016_flickr val]
        [--show N]

Tokenizes each Multi30k reference line with the project's spaCy tokenizer (case kept), joins the
tokens back with `Tokenizer.detokenize`, and counts the lines equal to the original (both with
runs of whitespace collapsed, as the tokens do not keep them). `--show N` prints the first N
lines that differ, per language, to see which rule is missing.

The last two columns count the `-` tokens between two words that were a hyphen inside a word
in the text (`t-shirt`) and those that were a dash with spaces around it (`man - woman`): the
tokens are the same, so the detokenizer joins both where spaCy splits hyphenated words.
"""

from __future__ import annotations

import argparse

import spacy
from common import Table

from seq2seq.data.files import data_dirs, find_file
from seq2seq.data.reading import read_lines
from seq2seq.data.tokenizer import Tokenizer

LANGS = ("en", "de", "fr", "cs")


def roundtrip(lines: list[str], lang: str) -> list[tuple[str, str]]:
    """(original, detokenized) for each line that does not come back unchanged."""
    tokenizer = Tokenizer(lang, lowercase=False)
    back = [tokenizer.detokenize(tokens) for tokens in tokenizer.tokenize_many(lines)]
    return [(line, text) for line, text in zip(lines, back, strict=True) if line != text]


def dashes(lines: list[str], lang: str) -> tuple[int, int]:
    """`-` tokens between two words: (hyphens inside a word, dashes with spaces around)."""
    inside = spaced = 0
    for doc in spacy.blank(lang).tokenizer.pipe(lines):
        for left, dash, right in zip(doc, doc[1:], doc[2:], strict=False):
            if dash.text == "-" and left.text[-1].isalnum() and right.text[0].isalnum():
                inside += not (left.whitespace_ or dash.whitespace_)
                spaced += bool(left.whitespace_ and dash.whitespace_)
    return inside, spaced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with the Multi30k files")
    parser.add_argument("--splits", nargs="+", default=["test_2016_flickr", "val"])
    parser.add_argument("--show", type=int, default=0, help="print N differing lines per language")
    args = parser.parse_args()
    dirs = data_dirs(args.data_dir)
    table = Table(
        *(("split", 18), ("lang", 6), ("lines", 7, "d"), ("unchanged", 11, "d")),
        *(("share", 8, ".1%"), ("hyphens", 9, "d"), ("dashes", 8, "d")),
        separator="",
    )
    for split in args.splits:
        for lang in LANGS:
            path = find_file(split, lang, dirs)
            if path is None:
                print(f"{split:<18}{lang:<6}   (no file)")
                continue
            lines = [" ".join(line.split()) for line in read_lines(path)]
            differ = roundtrip(lines, lang)
            same = len(lines) - len(differ)
            inside, spaced = dashes(lines, lang)
            table.row(split, lang, len(lines), same, same / len(lines), inside, spaced)
            for original, back in differ[: args.show]:
                print(f"    - {original}\n    + {back}")


if __name__ == "__main__":
    main()
