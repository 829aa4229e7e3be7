"""Preparing the training corpora once: tokenized in parallel, filtered, counted, written as a
prepared corpus (data/mapped.py) that every later run maps instead of reading text.

The input streams through a pool of `data.num_workers` processes in chunks of lines; this
process keeps only running counts, the pairs' lengths and one chunk's ids at a time. spaCy's
vocabulary is known only at the end, so the first pass writes provisional ids (numbered in
order of first appearance) and counts them, and a second pass over those ids, in numpy,
turns them into vocabulary ids. SentencePiece's models are trained first (on a text file
streamed out of the corpus), so its single pass writes final ids.

The prepared folder is keyed by everything its contents depend on: the inputs' SHA-256, the
settings, the format and library versions. A run with the same key finds it and starts at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import sentencepiece

from seq2seq.config import DataConfig
from seq2seq.data.files import SplitFiles, cache_dir, data_dirs, locate
from seq2seq.data.filters import REASONS, Filters, FilterState
from seq2seq.data.id_files import Provisional, SideWriter
from seq2seq.data.mapped import (
    FORMAT_VERSION,
    MANIFEST,
    SIDES,
    PreparedCorpus,
    PreparedError,
    id_dtype,
    open_prepared,
    save_vocab,
)
from seq2seq.data.reading import read_chunks
from seq2seq.data.subword import train_cached
from seq2seq.data.tokenizer import spacy_version
from seq2seq.data.vocab import Vocab
from seq2seq.data.workers import (
    ChunkIds,
    WorkerSettings,
    default_workers,
    in_processes,
    ordered_map,
    subword_text_chunk,
    tokenize_chunk,
)
from seq2seq.errors import DataError
from seq2seq.writing import WriteError, staged_dir, write_cache

log = logging.getLogger(__name__)


def prepared_path(data: DataConfig) -> Path:
    """Where the config's prepared training corpus is (or will be)."""
    inputs = _inputs(data)
    settings = _settings(data)
    described = json.dumps(
        {"format": FORMAT_VERSION, "settings": settings, "inputs": _digests(inputs)},
        sort_keys=True,
    )
    return cache_dir() / "corpora" / hashlib.sha256(described.encode()).hexdigest()[:32]


def prepare(data: DataConfig, *, force: bool = False) -> PreparedCorpus:
    """The config's prepared training corpus: found, or prepared now (again with `force`).
    DataError if `data.train_weights` gives a share of an epoch to a corpus that kept no pair."""
    path = prepared_path(data)
    corpus = None
    if path.exists() and not force:
        try:
            corpus = open_prepared(path)
        except PreparedError as error:
            log.warning("%s; preparing it again", error)
    if corpus is None:
        _prepare_into(path, data)
        corpus = open_prepared(path)
    if data.train_weights is not None and (emptied := _emptied(corpus.manifest["parts"], data)):
        raise DataError(
            f"data.train_weights gives every training corpus a share of each epoch, but "
            f"{', and '.join(emptied)}; drop it from data.train and data.train_weights, or "
            f"loosen the filters"
        )
    return corpus


def _prepare_into(path: Path, data: DataConfig) -> None:
    """Build the corpus in a folder beside `path` and rename it into place whole (writing.py):
    an error or Ctrl-C leaves no half-written corpus where a run would find it."""
    try:
        with staged_dir(path, replace=True) as folder:
            _build(data, folder)
    except WriteError as error:
        raise WriteError(f"{error} (prepared corpora go under SEQ2SEQ_CACHE)") from None


def _emptied(parts: list[dict], data: DataConfig) -> list[str]:
    """Each training corpus that kept no pair, in words: "long keeps no pair of its 20 lines
    (20 longer than data.max_length=50)"; a corpus listed twice is named by its place."""
    prefixes = [part["prefix"] for part in parts]
    filters, said = Filters.of(data), []
    for number, part in enumerate(parts, 1):
        if part["pairs"]:
            continue
        name, lines = part["prefix"], part["lines"]
        if prefixes.count(name) > 1:
            name += f" (corpus {number} of data.train)"
        said.append(
            f"{name} keeps no pair of its {lines} line{'s' * (lines != 1)} "
            f"({filters.dropped_words(part['dropped'])})"
        )
    return said


def _inputs(data: DataConfig) -> list[tuple[str, SplitFiles]]:
    """Each training corpus's prefix and files (with `data.holdout`, its training part)."""
    dirs = data_dirs(data.dir)
    return [(prefix, locate(data, prefix, dirs, "train")) for prefix in data.train_corpora]


def _settings(data: DataConfig) -> dict:
    """The settings the prepared corpus depends on (not max_length's truncation, nor the
    source's reversal: both are applied when pairs are read)."""
    names = ["tokenizer", "src_lang", "tgt_lang", "lowercase", "joint_vocab", "train_limit"]
    if data.tokenizer == "spacy":
        names += ["min_freq", "max_size"]
    else:
        names += ["sp_model_type", "vocab_size", "sp_pretokenize"]
    settings = {
        **{name: getattr(data, name) for name in names},
        "filters": asdict(Filters.of(data)),
        "libraries": {"spacy": spacy_version(), "sentencepiece": sentencepiece.__version__},
    }
    # Keys absent at their defaults: corpora prepared before they existed keep their folders.
    if data.columns is not None:
        settings["columns"] = data.columns
    if data.holdout is not None:
        settings.update(holdout=data.holdout, holdout_by=data.holdout_by or data.src_lang)
    if data.train_limit is not None and len(data.train_corpora) > 1:
        # The limit counts each corpus's pairs; folders whose limit counted the corpora
        # together (and could leave one out) were prepared under the same settings otherwise.
        settings["train_limit_counts"] = "each corpus"
    return settings


def _digests(inputs: list[tuple[str, SplitFiles]]) -> list[dict]:
    return [file_digest(path) for _, files in inputs for path in files.paths]


def file_digest(path: Path) -> dict:
    """A file's path, size and SHA-256. The SHA-256 is remembered with the file's size and
    modification time, so a run over unchanged files does not read them all again."""
    stat = path.stat()
    memo_file = cache_dir() / "corpora" / "digests.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    facts = {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    known = memo.get(facts["path"], {})
    if all(known.get(key) == facts[key] for key in ("bytes", "mtime_ns")):
        return {**facts, "sha256": known["sha256"]}
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    facts["sha256"] = digest.hexdigest()
    memo[facts["path"]] = facts
    write_cache(memo_file, json.dumps(memo).encode())
    return facts


def _build(data: DataConfig, folder: Path) -> None:
    """Write the prepared corpus of `data` into the empty `folder`, its manifest last."""
    inputs = _inputs(data)
    workers = data.num_workers or default_workers()
    filters = Filters.of(data)
    langs = (data.src_lang, data.tgt_lang)
    vocabs, words = None, None
    if data.tokenizer == "sentencepiece":
        vocabs = _subword_vocabs(data, inputs, folder, workers)
        models = (vocabs[0].subword_model, vocabs[1].subword_model)
        writers = [
            SideWriter(folder, side, id_dtype(len(v)))
            for side, v in zip(SIDES, vocabs, strict=True)
        ]
    else:
        models, words = None, Provisional()
        writers = [SideWriter(folder, side, np.dtype(np.uint32)) for side in SIDES]
    settings = WorkerSettings(
        tokenizer=data.tokenizer,
        langs=langs,
        lowercase=data.lowercase,
        sp_pretokenize=data.sp_pretokenize,
        sp_models=models,
        digests=filters.duplicates,
    )
    state, parts = FilterState(filters), []
    for prefix, files in inputs:  # data.train_limit counts each corpus's pairs
        reader = PartReader(
            settings=settings, workers=workers, state=state, writers=writers, words=words
        )
        parts.append(reader.read(prefix, files, data.train_limit))
    if _total(parts) == 0:
        raise DataError(
            f"no training pair is left after the filters: {', '.join(_emptied(parts, data))}; "
            f"check the data.filter_* keys and data.max_length_ratio"
        )
    if words is not None:
        vocabs = words.vocabs(data)
    sides = {}
    for writer, vocab in zip(writers, vocabs, strict=True):
        sides[writer.side] = writer.finish(vocab, words)
        save_vocab(folder, writer.side, vocab)
    manifest = {
        "format": FORMAT_VERSION,
        "settings": _settings(data),
        "inputs": _digests(inputs),
        "parts": parts,
        "pairs": _total(parts),
        "sides": sides,
        "files": {p.name: p.stat().st_size for p in sorted(folder.iterdir())},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _total(parts: list[dict]) -> int:
    return sum(part["pairs"] for part in parts)


class PartReader:
    """Reads one training corpus through the pool into the writers, filtering as it goes."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        workers: int,
        state: FilterState,
        writers: list[SideWriter],
        words: Provisional | None,
    ):
        self.settings, self.workers, self.state = settings, workers, state
        self.writers, self.words = writers, words

    def read(self, prefix: str, files: SplitFiles, remaining: int | None) -> dict:
        before = Counter(self.state.dropped)
        lines = pairs = 0
        chunks = read_chunks(files)
        for chunk in ordered_map(tokenize_chunk, chunks, self.settings, self.workers):
            lines += len(chunk.empty)
            keep = self._keep(chunk, None if remaining is None else remaining - pairs)
            pairs += int(keep.sum())
            for writer, side in zip(self.writers, (chunk.src, chunk.tgt), strict=True):
                writer.add(side, keep, self.words)
            if remaining is not None and pairs >= remaining:
                break
        dropped = {reason: self.state.dropped[reason] - before[reason] for reason in REASONS}
        log.info(
            "prepared %s: %d lines read, %d pairs kept, dropped %s",
            files,
            lines,
            pairs,
            ", ".join(f"{count} {reason}" for reason, count in dropped.items()),
        )
        return {"prefix": prefix, "lines": lines, "pairs": pairs, "dropped": dropped}

    def _keep(self, chunk: ChunkIds, remaining: int | None) -> np.ndarray:
        keep = self.state.keep(chunk.empty, chunk.src.lengths, chunk.tgt.lengths, chunk.digests)
        if remaining is not None:  # data.train_limit: the first pairs kept, no more
            keep &= np.cumsum(keep) <= remaining
        return keep


def _subword_vocabs(data: DataConfig, inputs, folder: Path, workers: int) -> tuple[Vocab, Vocab]:
    """SentencePiece models trained (or found in the cache) on the first `data.train_limit`
    pairs with text on both sides of each training corpus, their text streamed to files in
    `folder` first."""
    settings = WorkerSettings(
        tokenizer="spacy" if data.sp_pretokenize else "none",  # spaCy words, or the text
        langs=(data.src_lang, data.tgt_lang),
        lowercase=data.lowercase,
        sp_pretokenize=data.sp_pretokenize,
    )
    files = [folder / "subword.src.txt", folder / "subword.tgt.txt"]
    count, limit = 0, data.train_limit
    with (
        open(files[0], "w", encoding="utf-8") as src_out,
        open(files[1], "w", encoding="utf-8") as tgt_out,
    ):
        for _, split in inputs:
            taken = 0
            chunks = read_chunks(split)
            for src, tgt, empty in ordered_map(subword_text_chunk, chunks, settings, workers):
                kept = [i for i in range(len(src)) if not (empty[i] and data.filter_empty)]
                kept = kept[: None if limit is None else limit - taken]
                src_out.writelines(src[i] + "\n" for i in kept)
                tgt_out.writelines(tgt[i] + "\n" for i in kept)
                taken += len(kept)
                if taken == limit:
                    break
            count += taken
    langs = (data.src_lang, data.tgt_lang)
    if data.joint_vocab:
        name = f"{data.src_lang}+{data.tgt_lang}"
        joint = train_cached(data, _joined_digest(files), _lines(files), name, 2 * count)
        vocabs = joint, joint
    else:  # each model's trainer is single-threaded (see subword.py): both at once
        calls = [(data, file, lang, count) for file, lang in zip(files, langs, strict=True)]
        vocabs = tuple(in_processes(_train_side, calls, workers))
    for file in files:
        file.unlink()
    return vocabs


def _train_side(data: DataConfig, file: Path, lang: str, count: int) -> Vocab:
    return train_cached(data, _joined_digest([file]), _lines([file]), lang, count)


def _lines(files: list[Path]):
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for line in handle:
                yield line[:-1]


def _joined_digest(files: list[Path]):
    """The SHA-256 of the files' lines joined by newlines: of their bytes, but the last."""
    digest, held = hashlib.sha256(), b""
    for file in files:
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(held)
                held = block
    digest.update(held[:-1])
    return digest
