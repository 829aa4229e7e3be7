"""`seq2seq plot`: the curves drawn are the log's figures, runs overlaid, the best epoch marked;
bad logs and file names are refused in one line, and no half-written figure is ever left."""

from __future__ import annotations

import json
import math
import sys

import pytest
from conftest import assert_error, cli

from seq2seq.analysis.plot import draw_curves, read_log, run_names, save_figure
from seq2seq.errors import Seq2SeqError


def record(epoch: int, train_loss: float, val_loss: float, bleu: float, best: bool) -> dict:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_ppl": math.exp(train_loss),
        "val_loss": val_loss,
        "val_ppl": math.exp(val_loss),
        "val_bleu": bleu,
        "best": best,
    }


RECORDS = {  # run b's validation loss turns up after epoch 2: its best epoch is 2, not 3
    "a": [record(1, 5.0, 4.5, 1.0, True), record(2, 4.0, 4.0, 3.0, True)],
    "b": [
        record(1, 5.5, 5.0, 0.5, True),
        record(2, 4.5, 4.2, 2.0, True),
        record(3, 4.0, 4.4, 2.5, False),
    ],
}


def write_run(directory, records: list[dict]):
    directory.mkdir(parents=True)
    (directory / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


@pytest.fixture
def runs(tmp_path):
    return [write_run(tmp_path / name, records) for name, records in RECORDS.items()]


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_curves_are_the_logged_figures_with_the_best_epoch_marked(runs):
    figure = draw_curves([(run.name, read_log(run)) for run in runs])
    loss, ppl, bleu = figure.axes[:3]
    for ax, train_key, val_key in ((loss, "train_loss", "val_loss"), (ppl, "train_ppl", "val_ppl")):
        drawn = lines_by_label(ax)
        for name, records in RECORDS.items():
            epochs = [r["epoch"] for r in records]
            assert list(drawn[f"{name} train"].get_xdata()) == epochs
            assert list(drawn[f"{name} train"].get_ydata()) == [r[train_key] for r in records]
            assert list(drawn[f"{name} validation"].get_ydata()) == [r[val_key] for r in records]
        assert list(drawn["b best"].get_xdata()) == [2]
        assert list(drawn["b best"].get_ydata()) == [RECORDS["b"][1][val_key]]
        assert list(drawn["a best"].get_xdata()) == [2]
    assert ppl.get_yscale() == "log" and loss.get_yscale() == "linear"
    drawn = lines_by_label(bleu)
    assert "a train" not in drawn  # BLEU is measured on validation only
    assert list(drawn["b validation"].get_ydata()) == [0.5, 2.0, 2.5]
    assert list(drawn["b best"].get_ydata()) == [2.0]
    # Each run keeps its colour in every panel, and the legend names the runs.
    assert drawn["a validation"].get_color() != drawn["b validation"].get_color()
    assert lines_by_label(loss)["a train"].get_color() == drawn["a validation"].get_color()
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["a", "b", "train", "validation", "best epoch"]


def test_a_run_that_never_improved_has_no_best_mark(tmp_path):
    run = write_run(tmp_path / "nan", [{**record(1, 5.0, math.nan, 0.0, False)}])
    drawn = lines_by_label(draw_curves([("nan", read_log(run))]).axes[0])
    assert "nan validation" in drawn and "nan best" not in drawn


def test_legend_names_are_run_names_or_paths_where_they_repeat():
    assert run_names(["runs/a", "other/b"]) == ["a", "b"]
    assert run_names(["x/tiny", "y/tiny", "z/c/"]) == ["x/tiny", "y/tiny", "c"]


def test_a_checkpoint_in_a_run_is_named_with_its_run(tmp_path):
    for run in ("hour", "fast"):
        (tmp_path / run / "best").mkdir(parents=True)
        (tmp_path / run / "log.jsonl").write_text("")
    (tmp_path / "loose" / "best").mkdir(parents=True)  # a checkpoint outside any run
    checkpoints = [tmp_path / "hour" / "best", tmp_path / "fast" / "best", tmp_path / "loose"]
    assert run_names([str(c) for c in checkpoints]) == ["hour/best", "fast/best", "loose"]


@pytest.mark.slow
def test_plot_writes_png_and_svg_from_a_trained_run(tiny_run, runs, tmp_path, capsys):
    png, svg = tmp_path / "curves.png", tmp_path / "CURVES.SVG"
    assert cli(["plot", tiny_run, *runs, "--output", png]) == 0
    assert capsys.readouterr().out == f"wrote {png}\n"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert cli(["plot", tiny_run, "--output", svg]) == 0
    text = svg.read_text()
    assert "<svg" in text and "tiny" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CURVES.SVG", "a", "b", "curves.png"]


def test_an_unknown_extension_is_refused(runs, tmp_path, capsys):
    code = cli(["plot", *runs, "--output", tmp_path / "curves.jpg"])
    assert_error(capsys, code, "curves.jpg", "ending in .png or .svg")
    assert not (tmp_path / "curves.jpg").exists()


def test_a_run_without_a_log(tmp_path, capsys):
    (tmp_path / "empty-run").mkdir()
    code = cli(["plot", tmp_path / "empty-run", "--output", tmp_path / "c.png"])
    assert_error(capsys, code, f"{tmp_path / 'empty-run'} has no log.jsonl")
    code = cli(["plot", tmp_path / "missing", "--output", tmp_path / "c.png"])
    assert_error(capsys, code, f"run directory {tmp_path / 'missing'} does not exist")
    assert not (tmp_path / "c.png").exists()


GOOD = json.dumps(record(1, 5.0, 4.5, 1.0, True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "log.jsonl is empty: the run has not finished an epoch yet"),
        (GOOD + "\n\n" + GOOD + "\n", "log.jsonl line 2 is empty"),
        (GOOD + "\n" + GOOD[:30], "log.jsonl line 2 is not a JSON object; the log is damaged"),
        ("[1, 2]\n", "log.jsonl line 1 is not a JSON object"),
        ('{"epoch": 1, "train_loss": 2.0}\n', "line 1 has no train_ppl, val_loss, val_ppl"),
        (b"\xff\xfe\n", "cannot read"),
    ],
)
def test_a_damaged_log_is_refused_and_the_old_figure_kept(text, message, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    data = text if isinstance(text, bytes) else text.encode()
    (run / "log.jsonl").write_bytes(data)
    output = tmp_path / "curves.png"
    output.write_bytes(b"the previous figure")
    assert_error(capsys, cli(["plot", run, "--output", output]), message)
    assert output.read_bytes() == b"the previous figure"


def test_a_failed_write_leaves_no_partial_file(runs, tmp_path):
    class Failing:
        def savefig(self, handle, format):
            handle.write(b"\x89PNG half")
            raise OSError(28, "No space left on device")

    output = tmp_path / "out" / "curves.png"
    output.parent.mkdir()
    with pytest.raises(Seq2SeqError, match="cannot write .*curves.png: No space left on device"):
        save_figure(Failing(), output)
    assert list(output.parent.iterdir()) == []


def test_an_unwritable_folder(runs, tmp_path, capsys):
    output = tmp_path / "no-such-folder" / "curves.png"
    code = cli(["plot", *runs, "--output", output])
    assert_error(capsys, code, f"cannot write {output}: No such file or directory")


def test_without_matplotlib_it_says_how_to_install_it(runs, tmp_path, capsys, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    code = cli(["plot", *runs, "--output", tmp_path / "curves.png"])
    assert_error(capsys, code, "plotting needs matplotlib", "pip install 'seq2seq[plot]'")
    assert not (tmp_path / "curves.png").exists()
