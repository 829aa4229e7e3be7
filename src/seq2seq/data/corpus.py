"""Reading parallel corpora: finding the files, checking them, and fetching Multi30k.

A split is a path prefix; its files are `{prefix}.{lang}` or `{prefix}.{lang}.gz`. Directories
are searched in order: the config's `data.dir`, `$SEQ2SEQ_DATA`, then the user cache. Multi30k
files found in none of them are downloaded into the cache and checked against the SHA-256 sums
shipped in `multi30k.sha256`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seq2seq.data.lines import read_lines
from seq2seq.errors import DataError

log = logging.getLogger(__name__)

# The dataset's public repository; SEQ2SEQ_MULTI30K_URL points elsewhere (a mirror, a test server).
MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"


def cache_dir() -> Path:
    """The user cache for downloaded data and prepared (tokenized) corpora."""
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


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs of one split, as raw (untokenized) text."""

    src: list[str]
    tgt: list[str]
    src_path: Path
    tgt_path: Path


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


def read_parallel(src_path: Path, tgt_path: Path, *, skip_empty: bool) -> ParallelText:
    """Read two aligned files. Pairs with an empty side are skipped (and the skip logged) with
    `skip_empty`, for training; otherwise every line is kept, so an evaluation counts every
    reference, and an empty source translates to an empty line."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if not src:
        raise DataError(f"{src_path} is empty; a corpus file needs one sentence per line")
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            f"the files of a split must be line-aligned"
        )
    pairs = enumerate(zip(src, tgt, strict=True))
    empty = [i for i, (s, t) in pairs if not (s.strip() and t.strip())]
    if len(empty) == len(src):
        raise DataError(f"{src_path} / {tgt_path} hold no pair with text on both sides")
    if empty and skip_empty:
        log.warning(
            "skipped %d sentence pairs with an empty side in %s / %s (first at line %d)",
            len(empty),
            src_path,
            tgt_path,
            empty[0] + 1,
        )
        skip = set(empty)
        src = [line for i, line in enumerate(src) if i not in skip]
        tgt = [line for i, line in enumerate(tgt) if i not in skip]
    elif empty:
        log.info(
            "%d sentence pairs in %s / %s have an empty side (first at line %d); all are kept",
            len(empty),
            src_path,
            tgt_path,
            empty[0] + 1,
        )
    return ParallelText(src, tgt, src_path, tgt_path)
