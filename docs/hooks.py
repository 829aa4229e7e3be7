"""mkdocs hooks: the pages that must not drift from the code are generated at build time.

- `index.md` is the README, its links into `docs/` made relative to the site.
- `configuration.md` is the configuration reference, written from the config declarations.
- `<!-- help: COMMAND -->` in a page becomes that command's real `--help` text (`seq2seq`: the
  program's).
- `<!-- results: FOLDER -->` becomes a table of the `seq2seq evaluate --json` files there.
- The PNGs under `results/` are published at the same paths, so pages can embed them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELP_MARK = re.compile(r"<!-- help: ([a-z0-9-]+) -->")
RESULTS_MARK = re.compile(r"<!-- results: ([\w/.-]+) -->")
HELP_WIDTH = "100"


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every `seq2seq` command's parser, by name, from the real command line."""
    from seq2seq.cli import build_parser

    parser = build_parser()
    (choices,) = (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(choices)


def command_help(name: str) -> str:
    """`seq2seq NAME --help`, or with name `seq2seq` the program's own."""
    from seq2seq.cli import build_parser

    parser = build_parser() if name == "seq2seq" else commands()[name]
    # argparse wraps to the terminal's width; a fixed one keeps the pages the same everywhere.
    with _environment(COLUMNS=HELP_WIDTH):
        return parser.format_help()


def options(name: str) -> list[str]:
    """The long options of a command, e.g. `--beam-size`, without `--help`."""
    parser = commands()[name]
    spelled = (s for a in parser._actions for s in a.option_strings if s.startswith("--"))
    return [s for s in spelled if s != "--help"]


def results_table(folder: str) -> str:
    """One row per `RUN.SPLIT.bBEAM.json` that `seq2seq evaluate --json` wrote into folder."""
    rows = [
        "| file | split | sentences | BLEU (tokens) | sacreBLEU | chrF | free-running PPL |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted((ROOT / folder).glob("*.b[0-9]*.json")):
        r = json.loads(path.read_text())
        figures = [f"{r[k]:.2f}" for k in ("bleu_tokenized", "bleu", "chrf", "free_ppl")]
        rows.append(f"| `{path.name}` | {r['split']} | {r['sentences']} | {' | '.join(figures)} |")
    return "\n".join(rows)


def readme_as_index() -> str:
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def on_files(files, config):
    from mkdocs.structure.files import File

    from seq2seq.config import reference_markdown

    files.append(File.generated(config, "index.md", content=readme_as_index()))
    files.append(File.generated(config, "configuration.md", content=reference_markdown()))
    for png in sorted((ROOT / "results").rglob("*.png")):
        uri = png.relative_to(ROOT).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = HELP_MARK.sub(lambda m: f"```text\n{command_help(m[1])}```", markdown)
    return RESULTS_MARK.sub(lambda m: results_table(m[1]), markdown)


@contextlib.contextmanager
def _environment(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
