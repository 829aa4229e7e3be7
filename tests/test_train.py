"""The learning-rate schedule and the config diff that guards resumes."""

from __future__ import annotations

import pytest
import torch
from conftest import CONFIGS

from seq2seq.config import config_to_dict, load_config
from seq2seq.device import pick_precision
from seq2seq.resume import config_diff
from seq2seq.train import lr_factor, make_optimizer


@pytest.mark.parametrize(
    ("epoch", "factor"),
    [(0.0, 1.0), (4.99, 1.0), (5.0, 0.5), (5.49, 0.5), (5.5, 0.25), (6.0, 0.125), (7.49, 1 / 32)],
)
def test_the_papers_schedule_halves_every_half_epoch_after_five(epoch, factor):
    config = load_config(CONFIGS / "sutskever2014.yaml")
    assert lr_factor(config, epoch) == factor


def test_a_constant_schedule_never_changes():
    config = load_config(CONFIGS / "tutorial.yaml")
    assert {lr_factor(config, step / 10) for step in range(0, 200, 7)} == {1.0}


def test_config_diff_names_changes_but_not_where_the_run_lives():
    old = config_to_dict(load_config(CONFIGS / "tutorial.yaml"))
    new = config_to_dict(
        load_config(
            CONFIGS / "tutorial.yaml",
            ["train.lr=0.01", "train.epochs=20", "name=moved", "output_dir=elsewhere"],
        )
    )
    assert config_diff(old, new) == ["train.lr: 0.001 -> 0.01"]


@pytest.mark.parametrize("amx, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_is_bfloat16_on_cpus_with_amx_only(monkeypatch, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert pick_precision("auto", torch.device("cpu")) == expected
    for name in ("float32", "bfloat16"):  # an explicit choice always stands
        assert pick_precision(name, torch.device("cpu")) == name


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_precision_on_gpus_follows_bfloat16_support(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert pick_precision("auto", torch.device("cuda")) == expected
    assert pick_precision("auto", torch.device("mps")) == "float32"


def test_optimizers_are_fused_on_cpu_and_step_as_the_plain_ones():
    config = load_config(CONFIGS / "tiny.yaml").train
    torch.manual_seed(0)
    weights = [torch.randn(5, 3, requires_grad=True) for _ in range(2)]
    fused = make_optimizer(config, [weights[0]], torch.device("cpu"))
    plain = torch.optim.Adam([weights[1]], lr=config.lr)
    assert fused.defaults["fused"] is True
    start = weights[0].detach().clone()
    with torch.no_grad():
        weights[1].copy_(start)
    for _ in range(3):
        for weight, optimizer in zip(weights, (fused, plain), strict=True):
            optimizer.zero_grad()
            (weight**2).sum().backward()
            optimizer.step()
    assert not torch.equal(weights[0], start)
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


def test_token_batches_train_exactly_the_epochs_asked_for(tmp_path, multi30k_dir):
    """Token-sized batches vary in number from shuffle to shuffle; a run of N epochs must still
    log exactly N epochs, each over all of its own batches."""
    import gzip
    import json

    from seq2seq.train import Trainer

    for split, count in (("train", 1200), ("val", 20)):
        for lang in ("de", "en"):
            with gzip.open(multi30k_dir / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(count)]
            (tmp_path / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    config = load_config(
        CONFIGS / "tiny.yaml",
        [
            f"data.dir={tmp_path}",
            "data.corpus=files",
            f"output_dir={tmp_path}",
            "train.epochs=2",
            "train.batch_unit=tokens",
            "train.batch_size=200",
        ],
    )
    trainer = Trainer(config)
    counts = []
    real = trainer._epoch_batches

    def epoch_batches(rng):
        batches = real(rng)
        counts.append(len(batches))
        return batches

    trainer._epoch_batches = epoch_batches
    trainer.train()
    records = [json.loads(line) for line in (config.run_dir / "log.jsonl").read_text().splitlines()]
    epoch_counts = counts[1:]  # the first count is the log line's estimate
    assert len(set(epoch_counts)) > 1  # the shuffles did give different batch counts
    assert [r["epoch"] for r in records] == [1, 2]
    steps = [r["step"] for r in records]
    assert steps == [sum(epoch_counts[: i + 1]) for i in range(2)]
