"""The learning-rate schedules, the optimizers, the label-smoothed loss, the training
recipe's config keys and the config diff that guards resumes."""

from __future__ import annotations

import gzip
import math
import random

import pytest
import torch
from conftest import CONFIGS, assert_error, cli

from seq2seq.config import (
    ConfigError,
    config_diff,
    config_from_dict,
    config_to_dict,
    load_config,
)
from seq2seq.device import pick_precision
from seq2seq.training import Trainer
from seq2seq.training.optim import lr_factor, make_optimizer
from seq2seq.training.state import RESUMABLE_CHANGES
from seq2seq.training.step import token_losses


def write_corpus(folder, multi30k_dir, counts: dict[str, int]) -> None:
    """The first lines of Multi30k splits as plain files, so no test tokenizes the corpus."""
    for split, count in counts.items():
        for lang in ("de", "en"):
            with gzip.open(multi30k_dir / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(count)]
            (folder / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("epoch", "factor"),
    [(0.0, 1.0), (4.99, 1.0), (5.0, 0.5), (5.49, 0.5), (5.5, 0.25), (6.0, 0.125), (7.49, 1 / 32)],
)
def test_the_papers_schedule_halves_every_half_epoch_after_five(epoch, factor):
    config = load_config(CONFIGS / "sutskever2014.yaml")
    assert lr_factor(config, epoch, step=1) == factor


def test_a_constant_schedule_never_changes():
    config = load_config(CONFIGS / "tutorial.yaml")
    assert {lr_factor(config, step / 10, step + 1) for step in range(0, 200, 7)} == {1.0}


@pytest.mark.parametrize(
    ("step", "factor"),
    [(1, 1 / 4000), (400, 0.1), (2000, 0.5), (4000, 1.0), (16000, 0.5), (64000, 0.25)],
)
def test_inverse_sqrt_warms_up_linearly_peaks_then_decays_as_one_over_the_root(step, factor):
    config = load_config(None, ["train.lr_schedule=inverse_sqrt"])
    assert config.train.warmup_steps == 4000
    assert lr_factor(config, 0.0, step) == pytest.approx(factor, rel=1e-12)
    assert lr_factor(config, 7.5, step) == lr_factor(config, 0.0, step)  # steps, not epochs


def test_inverse_sqrt_follows_the_warmup_setting():
    config = load_config(None, ["train.lr_schedule=inverse_sqrt", "train.warmup_steps=100"])
    assert [lr_factor(config, 0.0, s) for s in (50, 100, 400)] == [0.5, 1.0, 0.5]


def test_the_label_smoothed_loss_of_a_hand_computed_example():
    """V = 3, logits (2, 0, 0) with gold 0, then a padded position. log p = (2 - Z, -Z, -Z)
    with Z = log(e^2 + 2): cross-entropy Z - 2; against the uniform, Z - 2/3; smoothed by 0.1,
    0.9 (Z - 2) + 0.1 (Z - 2/3) = Z - 1.8 - 1/15. Padding counts for neither."""
    pad = 1
    logits = torch.tensor([[[2.0, 0.0, 0.0], [5.0, -3.0, 9.0]]])  # (B=1, T=2, V=3)
    gold = torch.tensor([[0, pad]])
    z = math.log(math.exp(2) + 2)
    smoothed, plain = token_losses(logits, gold, pad=pad, label_smoothing=0.1)
    assert plain.item() == pytest.approx(z - 2, rel=1e-6)
    assert smoothed.item() == pytest.approx(z - 1.8 - 1 / 15, rel=1e-6)
    same = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), gold.flatten(), ignore_index=pad, label_smoothing=0.1
    )
    assert smoothed.item() == pytest.approx(same.item(), rel=1e-6)
    unsmoothed, again = token_losses(logits, gold, pad=pad, label_smoothing=0.0)
    assert unsmoothed.item() == again.item() == plain.item()


def test_training_minimises_the_smoothed_loss_and_reports_plain_cross_entropy(
    tmp_path, multi30k_dir
):
    """One SGD step at rate 1 without clipping moves every weight by minus the gradient of
    F.cross_entropy with label smoothing; the step reports the plain cross-entropy."""
    write_corpus(tmp_path, multi30k_dir, {"train": 64, "val": 8})
    overrides = [f"data.dir={tmp_path}", "data.corpus=files", f"output_dir={tmp_path}"]
    overrides += ["train.optimizer=sgd", "train.lr=1.0", "train.clip_norm=1e9"]
    overrides += ["train.precision=float32", "model.dropout=0.0", "train.label_smoothing=0.2"]
    trainer = Trainer(load_config(CONFIGS / "tiny.yaml", overrides))
    pad, model = trainer.data.tgt_vocab.pad, trainer.model.train()
    batches = trainer._epoch_batches(random.Random(0))[:1]
    batch = trainer._batch(batches[0])
    logits = model(batch.src, batch.src_lengths, batch.tgt, 1.0).flatten(0, 1)
    gold = batch.tgt[:, 1:].flatten()
    smoothed = torch.nn.functional.cross_entropy(
        logits, gold, ignore_index=pad, label_smoothing=0.2
    )
    plain = torch.nn.functional.cross_entropy(logits, gold, ignore_index=pad)
    params = list(model.parameters())
    smoothed_grads = torch.autograd.grad(smoothed, params, retain_graph=True)
    plain_grads = torch.autograd.grad(plain, params)
    expected = [p - g for p, g in zip(params, smoothed_grads, strict=True)]

    trainer._run_updates(batches, 1, stop={"signal": None})
    progress = trainer.progress
    assert progress.epoch_loss / progress.epoch_tokens == pytest.approx(plain.item(), rel=1e-6)
    for param, value in zip(params, expected, strict=True):
        assert torch.allclose(param, value, atol=1e-6)
    # ... which the plain loss would not have done:
    gaps = [(s - p).abs().max() for s, p in zip(smoothed_grads, plain_grads, strict=True)]
    assert max(gaps) > 1e-3


def test_config_diff_names_changes_but_not_where_the_run_lives():
    old = config_to_dict(load_config(CONFIGS / "tutorial.yaml"))
    new = config_to_dict(
        load_config(
            CONFIGS / "tutorial.yaml",
            ["train.lr=0.01", "train.epochs=20", "name=moved", "output_dir=elsewhere"],
        )
    )
    assert config_diff(old, new, ignore=RESUMABLE_CHANGES) == ["train.lr: 0.001 -> 0.01"]


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [
        (True, False, "bfloat16"),  # AMD Zen 4, Intel Cooper Lake: avx512_bf16 without AMX
        (False, True, "bfloat16"),
        (True, True, "bfloat16"),  # Intel Sapphire Rapids and later
        (False, False, "float32"),  # bfloat16 would be emulated, slower than float32
    ],
)
def test_auto_precision_is_bfloat16_on_cpus_with_native_bfloat16(
    monkeypatch, avx512_bf16, amx, expected
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    for model_type in ("lstm", "attention", "transformer"):  # each measured in bfloat16
        assert pick_precision("auto", torch.device("cpu"), model_type) == expected
    for name in ("float32", "bfloat16"):  # an explicit choice always stands
        assert pick_precision(name, torch.device("cpu")) == name


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16"), (False, "float16")])
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


@pytest.mark.slow
def test_token_batches_train_exactly_the_epochs_asked_for(tmp_path, multi30k_dir):
    """Token-sized batches vary in number from shuffle to shuffle; a run of N epochs must still
    log exactly N epochs, each over all of its own batches."""
    import json

    write_corpus(tmp_path, multi30k_dir, {"train": 1200, "val": 20})
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
    epoch_counts = counts  # (the start line counts batches without a shuffle)
    assert len(set(epoch_counts)) > 1  # the shuffles did give different batch counts
    assert [r["epoch"] for r in records] == [1, 2]
    steps = [r["step"] for r in records]
    assert steps == [sum(epoch_counts[: i + 1]) for i in range(2)]


def test_adam_takes_its_betas_and_weight_decay_makes_it_adamw():
    """Decoupled decay (AdamW): with a zero gradient the Adam step is zero, and the weight
    only shrinks by lr * weight_decay; Adam's L2 decay would move it by about lr instead."""
    weight = torch.ones(4, requires_grad=True)
    adam = make_optimizer(
        load_config(None, ["train.adam_betas=[0.9, 0.98]"]).train, [weight], torch.device("cpu")
    )
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.9, 0.98)

    overrides = ["train.lr=0.1", "train.weight_decay=0.01"]
    adamw = make_optimizer(load_config(None, overrides).train, [weight], torch.device("cpu"))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["betas"] == (0.9, 0.999)
    (weight * 0).sum().backward()
    adamw.step()
    assert torch.allclose(weight, torch.full((4,), 1 - 0.1 * 0.01))

    sgd = make_optimizer(
        load_config(None, [*overrides, "train.optimizer=sgd"]).train, [weight], torch.device("cpu")
    )
    assert type(sgd) is torch.optim.SGD and sgd.defaults["weight_decay"] == 0.01


def test_adam_betas_read_from_yaml_and_round_trip(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  adam_betas: [0.9, 0.98]\n  lr_schedule: inverse_sqrt\n")
    config = load_config(path)
    assert config.train.adam_betas == (0.9, 0.98)
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.adam_betas=[0.9]", "train.adam_betas=[0.9] is not a list of 2 numbers"),
        ("train.adam_betas=[0.9, 0.98, 0.9]", "=[0.9, 0.98, 0.9] is not a list of 2 numbers"),
        ("train.adam_betas=0.9", "train.adam_betas=0.9 is not a list of 2 numbers"),
        ("train.adam_betas=[0.9, high]", "=[0.9, 'high'] is not a list of 2 numbers"),
        ("train.adam_betas=[0.9, 1.0]", "train.adam_betas=[0.9, 1.0] must be numbers in [0, 1)"),
        ("train.lr_schedule=cosine", "one of constant, halving, inverse_sqrt"),
        ("train.warmup_steps=0", "train.warmup_steps=0 must be at least 1"),
        ("train.weight_decay=-0.1", "train.weight_decay=-0.1 must be 0 or more"),
        ("train.label_smoothing=1.0", "train.label_smoothing=1.0 must be in [0, 1)"),
        ("train.patience=0", "train.patience=0 must be at least 1 or null"),
        ("train.keep_checkpoints=-1", "train.keep_checkpoints=-1 must be 0 or more"),
        ("train.valid_beam_size=0", "train.valid_beam_size=0 must be at least 1"),
    ],
)
def test_bad_recipe_settings_are_refused_naming_key_and_value(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_every_bad_recipe_setting_is_reported_at_once():
    overrides = ["train.adam_betas=[0.9]", "train.patience=0", "train.label_smoothing=2"]
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert str(error.value).count("train.") == 3


def test_the_recipe_defaults_change_nothing():
    train = load_config(None).train
    assert (train.label_smoothing, train.weight_decay, train.adam_betas) == (0.0, 0.0, (0.9, 0.999))
    assert (train.patience, train.keep_checkpoints, train.valid_beam_size) == (None, 0, 1)


def test_bad_data_leaves_no_run_folder_and_a_folder_without_checkpoint_is_empty(
    tmp_path, multi30k_dir, capsys
):
    """The data is checked before the run folder exists; a folder that a failed start left
    (no checkpoint) does not stop the next start."""
    data = tmp_path / "data"
    data.mkdir()
    write_corpus(data, multi30k_dir, {"train": 64, "val": 20})
    for lang in ("de", "en"):
        (data / f"long.{lang}").write_text(" ".join(["wort"] * 60) + "\n", encoding="utf-8")
    argv = ["train", CONFIGS / "tiny.yaml", f"output_dir={tmp_path / 'runs'}", f"data.dir={data}"]
    argv += ["data.corpus=files", "train.epochs=1", "data.num_workers=1"]
    weighted = ["data.train=[train,long]", "data.train_weights=[3,1]", "data.filter_long=true"]
    code = cli([*argv, *weighted, "data.max_length=50"])
    assert_error(
        capsys, code, "long keeps no pair of its 1 line (1 longer than data.max_length=50)"
    )
    assert not (tmp_path / "runs").exists()
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny\n")
    (run / "log.jsonl").write_text("")
    assert cli(argv) == 0
    assert (run / "best" / "meta.json").is_file()
