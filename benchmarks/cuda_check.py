"""Training on a CUDA GPU, checked: each precision trains, the non-finite guard holds, and a
training step never waits for the GPU.

For every precision (bfloat16 autocast, float16 with the gradient scaler, float32) it trains
`--steps` steps of each config on the GPU with `train.sync_every=50`, and:

- adds NaN to the logits of two steps, and checks that exactly those two were skipped and
  counted, and that the weights stayed finite (the guard reads the figures every 50 steps);
- counts the host synchronisations PyTorch reports (`torch.cuda.set_sync_debug_mode`) inside
  the training step and the batch's copy to the GPU, and the Python lines that waited: there
  must be none after the first step (which may set up cuDNN's state); the reads every 50 steps
  and validation are counted apart;
- reports target tokens per second over the steps (the first ones, cuDNN's set-up, included:
  a check, not a benchmark).

    python benchmarks/cuda_check.py [--configs configs/tutorial.yaml ...] [--steps 150]

Prints one JSON line per config and precision and exits non-zero if a check fails. Needs a
CUDA GPU and the Multi30k files (SEQ2SEQ_DATA)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import torch

from seq2seq.config import load_config
from seq2seq.training import Trainer

NAN_STEPS = (20, 21)


def check(
    config_path: str, precision: str, steps: int, output_dir: str, device: str, reseed: bool
) -> dict:
    config = load_config(
        config_path,
        [
            f"device={device}",
            f"train.precision={precision}",
            "train.sync_every=50",
            f"name=cuda-{precision}",
            f"output_dir={output_dir}",
            "overwrite=true",
            "train.epochs=1",
            "train.patience=null",
            "train.keep_checkpoints=0",
        ],
    )
    trainer = Trainer(config)
    batches_per_epoch = len(trainer._epoch_batches(random.Random(0)))
    # A fractional epoch: `steps` steps.
    train = dataclasses.replace(config.train, epochs=steps / batches_per_epoch)
    trainer.config = dataclasses.replace(config, train=train)

    counts = {"in_step": 0, "in_later_steps": 0, "in_batch": 0, "steps": 0}
    where: Counter = Counter()
    model, forward = trainer.model, trainer.model.forward

    def poisoned(*args, **kwargs):
        logits = forward(*args, **kwargs)
        return logits + math.nan if trainer.step in NAN_STEPS else logits

    model.forward = poisoned

    def counted(name, method):
        def wrapper(*args, **kwargs):
            before = len(caught)
            result = method(*args, **kwargs)
            counts[name] += len(caught) - before
            if counts["steps"] > 0 and name == "in_step":  # the first step sets things up
                counts["in_later_steps"] += len(caught) - before
            for warning in caught[before:]:  # the Python line that waited
                where[f"{Path(warning.filename).name}:{warning.lineno}"] += 1
            counts["steps"] += name == "in_step"
            return result

        return wrapper

    if not reseed:  # a diagnosis: does seeding every batch cost a sync?
        trainer.updater.seed_batch = lambda position: None
    trainer.updater.update = counted("in_step", trainer.updater.update)
    trainer._batch = counted("in_batch", trainer._batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_gpu = trainer.device.type == "cuda"  # (--device cpu: a dry run of this script)
        if on_gpu:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            record = trainer.train()
        finally:
            if on_gpu:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    finite = all(torch.isfinite(p).all().item() for p in trainer.model.parameters())
    result = {
        "config": config_path,
        "precision": trainer.precision,
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "steps": counts["steps"],
        "syncs_in_steps": counts["in_step"],
        "syncs_after_the_first_step": counts["in_later_steps"],
        "syncs_in_batch_copies": counts["in_batch"],
        "syncs_all": len(syncs),
        "sync_lines": dict(where.most_common(5)),
        "reseed": reseed,
        "skipped_steps": record["skipped_steps"],
        "weights_finite": finite,
        "tokens_per_second": round(record["tokens_per_second"]),
        "train_loss": record["train_loss"],
        "val_loss": record["val_loss"],
    }
    result["ok"] = (
        result["syncs_after_the_first_step"] == 0
        and result["syncs_in_batch_copies"] == 0
        and result["skipped_steps"] == len(NAN_STEPS)
        and finite
        and math.isfinite(record["val_loss"])
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/tutorial.yaml"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--precisions", nargs="+", default=["bfloat16", "float16", "float32"])
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    parser.add_argument(
        "--no-reseed", action="store_true", help="diagnosis: leave out the per-batch seeding"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda_check: no CUDA GPU on this machine", file=sys.stderr)
        return 2
    ok = True
    with tempfile.TemporaryDirectory() as output_dir:
        for config in args.configs:
            for precision in args.precisions:
                result = check(
                    config, precision, args.steps, output_dir, args.device, not args.no_reseed
                )
                ok &= result["ok"]
                print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
