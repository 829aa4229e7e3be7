"""How the data path scales: preparation throughput, training's memory, start-up and disk.

Builds synthetic corpora of N pairs from Multi30k's training lines, each line's words shuffled
(a new order per copy, so that the lines differ), then, side by side in one run, for each N:

- `seq2seq prepare` with `data.num_workers` processes, spaCy and SentencePiece: pairs/s;
- the prepared corpus's bytes on disk, per token and per pair;
- `seq2seq train configs/tutorial.yaml` for a few steps: the seconds from the command's start
  to the first training step, and the process's peak RSS (the kernel's high-water mark);
- the same with 2 gloo processes (torchrun's variables set by hand): each one's
  peak RSS.

    python benchmarks/data_scale.py --sizes 30000 300000 --steps 3 --processes 1 2 \
        --workdir /tmp/data-scale
    python benchmarks/data_scale.py --sizes 3000000 --tile 300000 --steps 3 --processes 1 2 \
        --workdir /tmp/data-scale

    python benchmarks/data_scale.py ... --set data.max_size=5000    # one vocabulary size

The synthetic corpora's vocabulary grows with them (a word seen once in Multi30k is seen ten
times in ten copies, and passes `data.min_freq`), and so does the model; `--set
data.max_size=5000` holds both vocabularies at 5,000 words, so that what grows is the data.

Validation uses Multi30k's first 100 validation pairs, to keep the runs short; it is the same
for every N. Every process runs with 2 threads (`train.num_threads=2`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, multi30k_dir

MULTI30K = multi30k_dir()
TUTORIAL = ROOT / "configs" / "tutorial.yaml"
FIRST_STEP = "first training step at"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000, 3_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/data-scale"))
    parser.add_argument("--workers", type=int, default=2, help="data.num_workers (2)")
    parser.add_argument(
        "--tokenizers", nargs="+", default=["spacy", "sentencepiece"], help="to prepare with"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (20)")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1, 2],
        help="train with 1 process, with 2 gloo processes, or both (the default)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        metavar="SMALL",
        help="build each corpus (text and prepared folder) as copies of the SMALL-pair one, "
        "prepared before, instead of preparing it (see tile)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every preparation and run, e.g. data.max_size=5000 to hold "
        "the vocabulary (so the model) at one size whatever the corpus's size",
    )
    args = parser.parse_args()
    EXTRA.extend(args.set)
    for size in args.sizes:
        folder = args.workdir / f"corpus-{size}"
        if args.tile:
            show({"pairs": size, "tiled_from": args.tile, **tile(args.workdir, args.tile, size)})
            args.tokenizers = [t for t in args.tokenizers if t == "spacy"]
        else:
            write_corpus(folder, size)
        for tokenizer in args.tokenizers if not args.tile else []:
            figures = prepare(folder, args.workdir, tokenizer, args.workers)
            show({"pairs": size, "prepare": tokenizer, **figures})
        if "spacy" in args.tokenizers:
            for processes in args.processes:
                figures = train(folder, args.workdir, size, args.steps, processes=processes)
                show({"pairs": size, "train": f"{processes} process(es)", **figures})


def show(result: dict) -> None:
    print(json.dumps(result), flush=True)


def write_corpus(folder: Path, size: int) -> None:
    """`size` pairs of Multi30k's training lines, cycling: the first copy as it is, each later
    one with every line's words shuffled (each side on its own: alignment does not matter to
    what is measured), and Multi30k's first 100 validation pairs."""
    if (folder / "train.en").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    for side in ("de", "en"):
        with gzip.open(MULTI30K / f"train.{side}.gz", "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        rng = random.Random(side)
        with open(folder / f"train.{side}.tmp", "w", encoding="utf-8") as out:
            for index in range(size):
                words = lines[index % len(lines)].split()
                if index >= len(lines):
                    rng.shuffle(words)
                out.write(" ".join(words) + "\n")
        (folder / f"train.{side}.tmp").rename(folder / f"train.{side}")
        with gzip.open(MULTI30K / f"val.{side}.gz", "rt", encoding="utf-8") as handle:
            val = handle.read().splitlines()[:100]
        (folder / f"val.{side}").write_text("\n".join(val) + "\n", encoding="utf-8")


def tile(workdir: Path, small: int, size: int) -> dict:
    """The `size`-pair corpus as copies of the `small`-pair one: its text files repeated, and
    its spaCy-prepared folder repeated where `seq2seq prepare` would write the big one's.
    Tokenizing is per line, so the ids are those preparation would write, and so is the
    vocabulary if no token of the small corpus is rare enough to be <unk> (counts all grow
    alike, so their order holds): `unk_tokens` says how many are."""
    import numpy as np

    os.environ["SEQ2SEQ_CACHE"] = str(workdir / "cache")
    from seq2seq.config import load_config
    from seq2seq.data.mapped import MANIFEST, SIDES, offset_dtype, open_prepared
    from seq2seq.data.prepare import file_digest, prepared_path

    repeats, source, folder = size // small, workdir / f"corpus-{small}", workdir / f"corpus-{size}"
    big_data = load_config(TUTORIAL, data_overrides(folder, "spacy")).data
    if (folder / "train.en").is_file() and prepared_path(big_data).is_dir():  # tiled before
        return disk_figures(prepared_path(big_data))
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.de", "train.en"):
        data = (source / name).read_bytes()
        with open(folder / name, "wb") as out:
            for _ in range(repeats):
                out.write(data)
    for name in ("val.de", "val.en"):
        (folder / name).write_bytes((source / name).read_bytes())
    small_data = load_config(TUTORIAL, data_overrides(source, "spacy")).data
    corpus = open_prepared(prepared_path(small_data))
    target = prepared_path(big_data)
    target.mkdir(parents=True, exist_ok=True)
    manifest = corpus.manifest
    for side in SIDES:
        facts, prepared = manifest["sides"][side], getattr(corpus, side)
        for name in (f"{side}.ids", f"{side}.lengths"):
            data = (corpus.path / name).read_bytes()
            with open(target / name, "wb") as out:
                for _ in range(repeats):
                    out.write(data)
        lengths = np.tile(prepared.lengths, repeats)
        offsets = np.zeros(len(lengths), dtype=offset_dtype(facts["tokens"] * repeats))
        np.cumsum(lengths[:-1], out=offsets[1:])
        offsets.tofile(target / f"{side}.offsets")
        facts |= {"pairs": facts["pairs"] * repeats, "tokens": facts["tokens"] * repeats}
        name = f"{side}.vocab.json"
        (target / name).write_bytes((corpus.path / name).read_bytes())
    for part in manifest["parts"]:
        part |= {"lines": part["lines"] * repeats, "pairs": part["pairs"] * repeats}
    manifest["pairs"] *= repeats
    manifest["inputs"] = [file_digest(folder / name) for name in ("train.de", "train.en")]
    manifest["files"] = {p.name: p.stat().st_size for p in sorted(target.iterdir())}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    unk = sum(int((getattr(corpus, side).ids == 0).sum()) for side in SIDES)
    return {"unk_tokens": unk, **disk_figures(target)}


def disk_figures(path: Path) -> dict:
    manifest = json.loads((path / "manifest.json").read_text())
    pairs = manifest["pairs"]
    tokens = sum(side["tokens"] for side in manifest["sides"].values())
    size = sum(file.stat().st_size for file in path.iterdir())
    return {
        "bytes": size,
        "tokens": tokens,
        # What is left per token once 16 bytes per pair are set aside for the index.
        "bytes_per_token_after_16_per_pair": round((size - 16 * pairs) / tokens, 3),
    }


EXTRA: list[str] = []  # --set


def data_overrides(folder: Path, tokenizer: str) -> list[str]:
    overrides = ["data.corpus=files", f"data.dir={folder}", *EXTRA]
    if tokenizer == "sentencepiece":
        overrides += ["data.tokenizer=sentencepiece"]
    return overrides


def environment(workdir: Path, **extra: str) -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    cache = str(workdir / "cache")
    return {**os.environ, "PYTHONPATH": path, "SEQ2SEQ_CACHE": cache, **extra}


def prepare(folder: Path, workdir: Path, tokenizer: str, workers: int) -> dict:
    command = [sys.executable, "-m", "seq2seq", "prepare", str(TUTORIAL), "--force"]
    command += [*data_overrides(folder, tokenizer), f"data.num_workers={workers}"]
    started = time.perf_counter()
    done = subprocess.run(command, env=environment(workdir), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(done.stderr)
    path = Path(done.stdout.split()[1])
    pairs = json.loads((path / "manifest.json").read_text())["pairs"]
    return {
        "seconds": round(seconds, 1),
        "pairs_per_second": round(pairs / seconds),
        **disk_figures(path),
    }


def train(folder: Path, workdir: Path, size: int, steps: int, processes: int) -> dict:
    """Peak RSS (MB) and seconds to the first step of each training process."""
    epochs = steps * 128 / size  # batches of 128 sentences: about `steps` of them
    output = workdir / f"runs-{size}-{processes}"
    argv = [str(TUTORIAL), *data_overrides(folder, "spacy"), f"output_dir={output}"]
    argv += [f"train.epochs={epochs:.8f}", "train.num_threads=2", "overwrite=true"]
    argv += ["train.precision=float32"]
    port = str(free_port())
    children = []
    started = time.time()
    for rank in range(processes):
        extra = {}
        if processes > 1:
            extra = {"RANK": str(rank), "WORLD_SIZE": str(processes), "LOCAL_RANK": str(rank)}
            extra |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        log = open(workdir / f"train-{size}-{processes}-{rank}.log", "w")  # noqa: SIM115
        command = [sys.executable, __file__, "--first-step", *argv]
        child = subprocess.Popen(command, env=environment(workdir, **extra), stdout=log, stderr=log)
        children.append((child, log))
    figures = []
    for child, log in children:
        _, status, usage = os.wait4(child.pid, 0)
        log.close()
        text = Path(log.name).read_text()
        if status:
            sys.exit(text)
        first = float(text.split(FIRST_STEP)[1].split()[0])
        peak = usage.ru_maxrss / 1024  # KB on Linux
        figures.append({"peak_rss_mb": round(peak), "first_step_s": round(first - started, 1)})
    return {"processes": figures}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_step_driver(argv: list[str]) -> None:
    """`seq2seq train ARGV`, printing the wall-clock time of the first training step."""
    from seq2seq.config import load_config
    from seq2seq.training import Trainer, train

    original, printed = Trainer._batch, []

    def timed(self, indices):  # the first batch is collated as the first step begins
        if not printed:
            printed.append(True)
            print(f"{FIRST_STEP} {time.time()}", flush=True)
        return original(self, indices)

    Trainer._batch = timed
    train(load_config(argv[0], argv[1:]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first-step"]:
        first_step_driver(sys.argv[2:])
    else:
        main()
