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
from seq2seq.training import loop as loop_module

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

    # Each host sync PyTorch reports is counted in the part of training it happened in: the
    # updates (`_run_updates`), the batches' copies to the GPU (`_batch`), the reads of the
    # figures every 50 steps (`fetch`), or elsewhere (validation, saving).
    part, syncs = ["elsewhere"], []
    model, forward = trainer.model, trainer.model.forward

    def poisoned(*args, **kwargs):
        logits = forward(*args, **kwargs)
        return logits + math.nan if trainer.step in NAN_STEPS else logits

    model.forward = poisoned

    def within(name, method):
        def wrapper(*args, **kwargs):
            outer, part[0] = part[0], name
            try:
                return method(*args, **kwargs)
            finally:
                part[0] = outer

        return wrapper

    def note(message, category, filename, lineno, *rest):
        if "synchroniz" in str(message).lower():
            syncs.append((part[0], trainer.step, f"{Path(filename).name}:{lineno}"))

    if not reseed:  # a diagnosis: does seeding every batch cost a sync?
        trainer.seed_batch = lambda epoch, position: None
    trainer._run_updates = within("step", trainer._run_updates)
    trainer._batch = within("batch", trainer._batch)
    real_fetch = loop_module.fetch
    loop_module.fetch = within("read", real_fetch)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note
        on_gpu = trainer.device.type == "cuda"  # (--device cpu: a dry run of this script)
        if on_gpu:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            record = trainer.train()
        finally:
            loop_module.fetch = real_fetch
            if on_gpu:
                torch.cuda.set_sync_debug_mode("default")
    in_steps = [s for s in syncs if s[0] == "step"]
    finite = all(torch.isfinite(p).all().item() for p in trainer.model.parameters())
    result = {
        "config": config_path,
        "precision": trainer.precision,
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "steps": trainer.step,
        "syncs_in_steps": len(in_steps),
        # The first step may set up cuDNN's state.
        "syncs_after_the_first_step": sum(step > 0 for _, step, _ in in_steps),
        "syncs_in_batch_copies": sum(s[0] == "batch" for s in syncs),
        "syncs_all": len(syncs),
        "sync_lines": dict(Counter(line for *_, line in syncs).most_common(5)),
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
