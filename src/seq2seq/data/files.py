"""Where a split's files are: finding them, and fetching Multi30k when they are missing.

A split is a path prefix; its files are `{prefix}.{lang}` or `{prefix}.{lang}.gz`, or with
`data.columns` one tab-separated file, `{prefix}.tsv` or `{prefix}.txt` (or either `.gz`).
Directories are searched in order: the config's `data.dir`, `$SEQ2SEQ_DATA`, then the user
cache. Multi30k files found in none of them are downloaded into the cache and checked against
the SHA-256 sums shipped in `multi30k.sha256`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seq2seq.config import DataConfig
from seq2seq.data.columns import Columns
from seq2seq.data.holdout import Holdout, Part
from seq2seq.errors import DataError

# The dataset's public repository; SEQ2SEQ_MULTI30K_URL points elsewhere (a mirror, a test server).
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"


def cache_dir() -> Path:
    """The user cache: downloaded data, prepared corpora, tokens and subword models."""
    if "SEQ2SEQ_CACHE" in os.environ:
        return Path(os.environ["SEQ2SEQ_CACHE"])
    import pooch

    return Path(pooch.os_cache("seq2seq"))


def data_dirs(configured: str | None) -> list[Path]:
    """Where corpus files are looked for, in order."""
    dirs = []
    if configured:
        dirs.append(Path(configured).expanduser())
    if os.environ.get("SEQ2SEQ_DATA"):
        dirs.append(Path(os.environ["SEQ2SEQ_DATA"]).expanduser())
    dirs.append(cache_dir() / "multi30k")
    return dirs


TSV_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz")


@dataclass(frozen=True)
class SplitFiles:
    """Where a split's pairs are: two line-aligned files, or (with `columns`) one tab-separated
    file, both paths naming it; with `holdout`, only one held-out part of its pairs."""

    src_path: Path
    tgt_path: Path
    columns: Columns | None = None
    holdout: Holdout | None = None

    @property
    def paths(self) -> list[Path]:
        """Each file once."""
        return [self.src_path] if self.columns else [self.src_path, self.tgt_path]

    def __str__(self) -> str:
        return " / ".join(map(str, self.paths))

    def pairs(
        self, src: list[str], tgt: list[str] | None, first_line: int = 1
    ) -> tuple[list[str], list[str], list[int]]:
        """The source and target sentences of lines read from the files (`tgt` None for one
        tab-separated file), from line `first_line` on, and each pair's line number: every
        pair, or those of the held-out part."""
        if self.columns is not None:
            src, tgt = self.columns.pairs(src, str(self.src_path), first_line)
        numbers = range(first_line, first_line + len(src))
        if self.holdout is None:
            return src, tgt, list(numbers)
        kept = self.holdout.kept(tgt if self.holdout.by_target else src)
        return [src[i] for i in kept], [tgt[i] for i in kept], [numbers[i] for i in kept]


def locate(data: DataConfig, prefix: str, dirs: list[Path], part: Part | None = None) -> SplitFiles:
    """The files of split `prefix`; with `part` and `data.holdout`, that part of its pairs."""
    holdout = Holdout.of(data, part) if part else None
    columns = Columns.of(data)
    if columns is None:
        paths = locate_split(prefix, (data.src_lang, data.tgt_lang), dirs, data.corpus)
        return SplitFiles(*paths, holdout=holdout)
    for directory in dirs:
        for suffix in TSV_SUFFIXES:
            if (path := directory / f"{prefix}{suffix}").is_file():
                return SplitFiles(path, path, columns, holdout)
    places = ", ".join(str(d) for d in dirs)
    raise DataError(
        f"cannot find {prefix}.tsv or {prefix}.txt (or either .gz) in {places}; set data.dir "
        f"to the folder holding it"
    )


def find_file(prefix: str, lang: str, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        for name in (f"{prefix}.{lang}", f"{prefix}.{lang}.gz"):
            path = directory / name
            if path.is_file():
                return path
    return None


def locate_split(prefix: str, langs: tuple[str, str], dirs: list[Path], corpus: str) -> list[Path]:
    """Paths of the split's files for both languages, downloading Multi30k if it is missing."""
    for directory in dirs:
        paths = [find_file(prefix, lang, [directory]) for lang in langs]
        if all(paths):
            return paths
    if corpus == "multi30k" and "/" not in prefix:
        return [download_multi30k(f"{prefix}.{lang}.gz") for lang in langs]
    wanted = " and ".join(f"{prefix}.{lang}[.gz]" for lang in langs)
    places = ", ".join(str(d) for d in dirs)
    raise DataError(f"cannot find {wanted} in {places}; set data.dir to the folder holding them")


def multi30k_checksums() -> dict[str, str]:
    text = resources.files("seq2seq.data").joinpath("multi30k.sha256").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines() if line)}


def download_multi30k(filename: str) -> Path:
    """Fetch one Multi30k file into the cache, verifying its SHA-256."""
    import pooch
    import requests

    target = cache_dir() / "multi30k"
    checksums = multi30k_checksums()
    if filename not in checksums:
        raise DataError(
            f"no checksum is recorded for Multi30k file {filename}, so it is not downloaded; "
            f"put it in {target} or set data.dir"
        )
    base = os.environ.get("SEQ2SEQ_MULTI30K_URL", MULTI30K_URL).rstrip("/") + "/"
    try:
        path = pooch.retrieve(
            url=base + filename,
            known_hash=f"sha256:{checksums[filename]}",
            fname=filename,
            path=target,
            progressbar=True,
        )
    except (requests.RequestException, OSError) as error:
        raise DataError(
            f"cannot download {base}{filename} ({type(error).__name__}); offline, put the "
            f"Multi30k files ({', '.join(sorted(checksums))}) in {target}, or set data.dir "
            f"or SEQ2SEQ_DATA to a folder holding them"
        ) from None
    except ValueError as error:  # pooch's hash mismatch
        raise DataError(f"downloaded {filename} is corrupt: {error}") from None
    return Path(path)
