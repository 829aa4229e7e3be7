"""Checkpoint averaging: the mean of the members' weights, written as an ordinary checkpoint
that every command reads; members that are not one model are refused in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_error, cli, isolated
from helpers import CONFIG, SRC, TGT, make_model, save, tiny, train
from sacrebleu.metrics import BLEU

from seq2seq import checkpoint
from seq2seq.average import average_checkpoints
from seq2seq.data.vocab import Vocab, model_sizes
from seq2seq.errors import Seq2SeqError
from seq2seq.models import build_model


def weights(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path).model.state_dict()


@pytest.fixture
def two(tmp_path) -> list[Path]:
    """Two checkpoints of one model with different weights."""
    paths = [tmp_path / "a", tmp_path / "b"]
    for seed, path in enumerate(paths):
        save(path, make_model(seed))
    return paths


def test_averaging_two_checkpoints_gives_the_mean_of_their_weights(two, tmp_path):
    assert average_checkpoints(two, tmp_path / "mean") == two
    a, b, mean = weights(two[0]), weights(two[1]), weights(tmp_path / "mean")
    assert mean.keys() == a.keys()
    for name in a:
        assert not torch.equal(a[name], b[name])
        assert torch.equal(mean[name], ((a[name].double() + b[name].double()) / 2).float()), name
    loaded = checkpoint.load(tmp_path / "mean")
    assert (loaded.src_vocab, loaded.tgt_vocab, loaded.config) == (SRC, TGT, CONFIG)
    assert loaded.meta["averaged"] == [str(path) for path in two]
    assert (loaded.meta["epoch"], loaded.meta["step"]) == (2, 40)


def test_averaging_one_checkpoint_copies_its_weights(two, tmp_path):
    average_checkpoints(two[:1], tmp_path / "copy")
    a, copy = weights(two[0]), weights(tmp_path / "copy")
    assert all(torch.equal(a[name], copy[name]) for name in a)


def test_other_vocabularies_are_refused_in_one_line(two, tmp_path, capsys):
    swapped = Vocab([*TGT.itos[:4], TGT.itos[5], TGT.itos[4], *TGT.itos[6:]])  # same size
    checkpoint.save(tmp_path / "c", make_model(2), CONFIG, (SRC, swapped), {"epoch": 1})
    code = cli(["average", two[0], tmp_path / "c", "--output", tmp_path / "mean"])
    assert_error(capsys, code, f"cannot average {tmp_path / 'c'} with {two[0]}", "vocabularies")
    assert not (tmp_path / "mean").exists()


def test_other_model_settings_are_refused_in_one_line_naming_them(two, tmp_path, capsys):
    config = dataclasses.replace(CONFIG, model=dataclasses.replace(CONFIG.model, cell="gru"))
    model = build_model(config.model, **model_sizes(SRC, TGT))
    checkpoint.save(tmp_path / "gru", model, config, (SRC, TGT), {"epoch": 1})
    code = cli(["average", *two, tmp_path / "gru", "--output", tmp_path / "mean"])
    assert_error(capsys, code, "their configs differ (model.cell: 'lstm' -> 'gru')")
    assert not (tmp_path / "mean").exists()


@pytest.mark.parametrize(("key", "value"), [("joint_vocab", True), ("max_length", 50)])
def test_other_text_preparation_is_refused_as_ensembles_refuse_it(two, tmp_path, key, value):
    config = dataclasses.replace(CONFIG, data=dataclasses.replace(CONFIG.data, **{key: value}))
    checkpoint.save(tmp_path / "c", make_model(2), config, (SRC, TGT), {"epoch": 1})
    with pytest.raises(Seq2SeqError) as error:
        average_checkpoints([two[0], tmp_path / "c"], tmp_path / "mean")
    expected = f"{tmp_path / 'c'} has data.{key}={value!r} but {two[0]} has"
    assert f"cannot average {tmp_path / 'c'} with {two[0]}: {expected}" in str(error.value)
    assert not (tmp_path / "mean").exists()


def test_an_existing_output_is_replaced_only_if_it_is_an_average(two, tmp_path, capsys):
    average_checkpoints(two, tmp_path / "mean")
    average_checkpoints(two[::-1], tmp_path / "mean")  # an earlier average: replaced
    assert checkpoint.load(tmp_path / "mean").meta["averaged"] == [str(p) for p in two[::-1]]

    for taken in (two[0], tmp_path):  # a checkpoint training wrote; a folder of other things
        code = cli(["average", *two, "--output", taken])
        assert_error(capsys, code, f"--output {taken} already exists", "give a new directory")
    assert checkpoint.load(two[0]).meta.get("averaged") is None


def test_last_needs_one_run_and_enough_epoch_checkpoints(two, tmp_path, capsys):
    code = cli(["average", *two, "--last", 2, "--output", tmp_path / "mean"])
    assert_error(capsys, code, "--last N takes one run directory")
    code = cli(["average", tmp_path / "nowhere", "--last", 2, "--output", tmp_path / "mean"])
    assert_error(capsys, code, f"run directory {tmp_path / 'nowhere'} does not exist")
    code = cli(["average", tmp_path, "--last", 0, "--output", tmp_path / "mean"])
    assert_error(capsys, code, "--last must be at least 1 (got 0)")
    code = cli(["average", tmp_path, "--last", 2, "--output", tmp_path / "mean"])
    assert_error(
        capsys, code, "holds 0 epoch checkpoints (none), fewer than --last 2", "keep_checkpoints=2"
    )


@pytest.fixture(scope="module")
def kept_run(corpus, tmp_path_factory) -> Path:  # noqa: F811 (corpus is a fixture)
    """Three epochs of the tiny recipe keeping the last two epochs' checkpoints."""
    with isolated(tmp_path_factory.getbasetemp() / "cache"):
        output_dir = tmp_path_factory.mktemp("kept")
        return train(tiny(corpus, output_dir, "train.epochs=3", "train.keep_checkpoints=2"))


@pytest.mark.slow
def test_the_last_epochs_of_a_run_average_into_a_checkpoint_every_command_reads(
    kept_run,
    corpus,  # noqa: F811 (a fixture)
    tmp_path,
    capsys,
):
    out = tmp_path / "averaged"
    assert cli(["average", kept_run, "--last", 2, "--output", out]) == 0
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    members = [kept_run / "epoch-2", kept_run / "epoch-3"]
    assert json.loads((out / "meta.json").read_text())["averaged"] == list(map(str, members))
    a, b, mean = (weights(path) for path in (*members, out))
    for name in mean:
        assert torch.equal(mean[name], ((a[name].double() + b[name].double()) / 2).float())

    written = tmp_path / "val.en"
    assert cli(["evaluate", out, "--split", "val", "--json", "--output", written]) == 0
    figures = json.loads(capsys.readouterr().out)
    translations = written.read_text(encoding="utf-8").splitlines()
    assert figures["sentences"] == len(translations) == 100
    # The figures are those of the translations, which are what `translate` gives.
    references = (corpus / "val.en").read_text(encoding="utf-8").splitlines()
    bleu = BLEU(lowercase=checkpoint.load(out).config.data.lowercase)
    assert figures["bleu"] == pytest.approx(bleu.corpus_score(translations, [references]).score)
    assert cli(["translate", out, "--input", corpus / "val.de"]) == 0
    assert capsys.readouterr().out.splitlines() == translations
    assert cli(["translate", out, "Ein Mann fährt Fahrrad.", "--beam-size", 2]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # one line (this tiny model says little)
    source, target = tmp_path / "src.de", tmp_path / "tgt.en"
    source.write_text("Ein Mann fährt Fahrrad.\n")
    target.write_text("A man rides a bike.\n")
    assert cli(["score", out, "--source", source, "--target", target]) == 0
    assert float(capsys.readouterr().out) < 0
