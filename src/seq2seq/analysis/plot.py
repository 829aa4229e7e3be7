"""Learning curves: train and validation loss, perplexity and BLEU per epoch, read from each
run's `log.jsonl`, several runs overlaid, each run's best epoch marked. Also the one way
figures are written (PNG or SVG by the extension, whole or not at all), which the sentence map
and the attention maps (alignment.py) use too.

matplotlib is an optional extra (`pip install "seq2seq[plot]"`). Figures are drawn on
`matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so plotting neither
needs a display nor changes the backend of a program that imports seq2seq.
"""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq import writing
from seq2seq.errors import Seq2SeqError

FORMATS = {".png": "png", ".svg": "svg"}
LOG_KEYS = ("epoch", "train_loss", "train_ppl", "val_loss", "val_ppl", "val_bleu")
PANELS = (  # (title, train key, validation key, log scale)
    ("loss", "train_loss", "val_loss", False),
    ("perplexity", "train_ppl", "val_ppl", True),
    ("BLEU (sacreBLEU, greedy)", None, "val_bleu", False),
)


def figure_format(output: Path) -> str:
    """The format the output's extension asks for; any other extension is refused."""
    try:
        return FORMATS[output.suffix.lower()]
    except KeyError:
        raise Seq2SeqError(
            f"cannot tell the figure format of {output}: give a file name ending in "
            f"{' or '.join(FORMATS)}"
        ) from None


def new_figure(**kwargs):
    """An empty matplotlib Figure on the Agg canvas, or one line saying how to get matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise Seq2SeqError(
            "plotting needs matplotlib, which is not installed; "
            "install it with: pip install 'seq2seq[plot]'"
        ) from None
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def check_figure_output(output: Path) -> None:
    """Refuse a figure name of an unknown format, and a missing matplotlib, before any work."""
    figure_format(output)
    new_figure()


def save_figure(figure, output: Path) -> None:
    """Write the figure in the format of output's extension. It is drawn into a temporary file
    beside output and renamed into place, so a failure never leaves a half-written figure."""
    fmt = figure_format(Path(output))
    with writing.replacing(output) as handle:
        figure.savefig(handle, format=fmt)


def read_log(run: Path) -> list[dict]:
    """The epoch records of a run's log.jsonl; a missing, empty or damaged log is refused."""
    path = Path(run) / "log.jsonl"
    if not Path(run).is_dir():
        raise Seq2SeqError(f"run directory {run} does not exist; give a run that seq2seq trained")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise Seq2SeqError(
            f"{run} has no log.jsonl; give a run directory written by seq2seq train"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise Seq2SeqError(f"cannot read {path}: {reason}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        where = f"{path} line {number}"
        if not line.strip():
            raise Seq2SeqError(f"{where} is empty; remove the blank line")
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise Seq2SeqError(f"{where} is not a JSON object; the log is damaged or cut short")
        missing = [key for key in LOG_KEYS if key not in record]
        if missing:
            raise Seq2SeqError(
                f"{where} has no {', '.join(missing)}; it is not a seq2seq training log"
            )
        records.append(record)
    if not records:
        raise Seq2SeqError(f"{path} is empty: the run has not finished an epoch yet")
    return records


def best_record(records: list[dict]) -> dict | None:
    """The record of the epoch whose checkpoint is best/: the last one flagged best."""
    flagged = [record for record in records if record.get("best")]
    return flagged[-1] if flagged else None


def draw_curves(logs: list[tuple[str, list[dict]]]):
    """One panel each for loss, perplexity and BLEU against the epoch. Each run has one colour,
    train dashed and validation solid, and a star on its best epoch's validation figures."""
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(figsize=(15, 4.5), layout="constrained")
    axes = figure.subplots(1, len(PANELS))
    colours = _colours(len(logs))
    for ax, (title, train_key, val_key, log_scale) in zip(axes, PANELS, strict=True):
        for (name, records), colour in zip(logs, colours, strict=True):
            epochs = [record["epoch"] for record in records]
            if train_key:
                train = [record[train_key] for record in records]
                ax.plot(epochs, train, "--", color=colour, label=f"{name} train")
            val = [record[val_key] for record in records]
            ax.plot(epochs, val, "-o", color=colour, markersize=3, label=f"{name} validation")
            best = best_record(records)
            if best is not None:
                ax.plot(
                    [best["epoch"]], [best[val_key]], "*", color=colour, markersize=14,
                    markeredgecolor="black", label=f"{name} best",
                )  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
    figure.legend(*_legend(logs, colours), loc="outside right upper")
    return figure


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [palette[i % len(palette)] for i in range(count)]


def _legend(logs: list[tuple[str, list[dict]]], colours: list):
    """One entry per run (its colour), then what the line styles and the star mean."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour, linewidth=3) for colour in colours]
    labels = [name for name, _ in logs]
    grey = "dimgrey"
    handles += [
        Line2D([], [], color=grey, linestyle="--"),
        Line2D([], [], color=grey, marker="o", markersize=3),
        Line2D([], [], color=grey, marker="*", linestyle="", markersize=12),
    ]
    labels += ["train", "validation", "best epoch"]
    return handles, labels


def run_names(runs: list[str]) -> list[str]:
    """Legend names: each run's directory name (a checkpoint's with its run's, "hour/best"), or
    the path as given where names repeat."""
    names = [_name(Path(run)) or str(run) for run in runs]
    return [
        name if names.count(name) == 1 else str(run) for name, run in zip(names, runs, strict=True)
    ]


def _name(path: Path) -> str:
    in_run = (path.parent / "log.jsonl").is_file()  # best/, epoch-K/ or an average in a run
    return f"{path.parent.name}/{path.name}" if in_run else path.name


def plot_runs(runs: list[str], output: str) -> None:
    """`seq2seq plot`: the learning curves of the runs, overlaid, written to output."""
    output = Path(output)
    check_figure_output(output)
    logs = [(name, read_log(Path(run))) for name, run in zip(run_names(runs), runs, strict=True)]
    save_figure(draw_curves(logs), output)
