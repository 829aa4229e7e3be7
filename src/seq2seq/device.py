"""Which device to run on and at which precision: the choice shared by training and decoding."""

from __future__ import annotations

import contextlib

import torch

from seq2seq.errors import Seq2SeqError

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str) -> torch.device:
    """`auto` takes cuda, then mps, then cpu; a named device must exist on this machine."""
    if name not in DEVICES:
        raise Seq2SeqError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available[name]:
        raise Seq2SeqError(f"device {name!r} is not available on this machine; use auto or cpu")
    return torch.device(name)


# Model types that `auto` trains in bfloat16 on CPUs with native bfloat16 arithmetic: those
# whose quality in bfloat16 was measured. The Transformer trained faster in it on a quiet CPU
# (benchmarks/transformer_speed.py), and bfloat16 runs showed no loss of quality, on a GPU and
# on the CPU (docs/speed.md, docs/results.md). A new model type joins the list once measured.
CPU_BFLOAT16_TYPES = ("lstm", "attention", "transformer")


def pick_precision(name: str, device: torch.device, model_type: str = "lstm") -> str:
    """With "auto", bfloat16 autocast where it was measured to pay off without costing quality,
    and float32 elsewhere (docs/precision.md). CPUs with native bfloat16 arithmetic
    (`cpu_has_native_bfloat16`: avx512_bf16 or AMX) get it: there the tutorial LSTM and the
    Transformer trained faster in it, and the tutorial run's test BLEU was within seed noise of
    float32's (docs/speed.md). GPUs that support bfloat16 get it for every model, older GPUs
    float16 with a gradient scaler. Other CPUs emulate bfloat16 (there the Transformer trained
    several times slower in it, docs/precision.md, and oneDNN has no bfloat16 LSTM at all), and
    MPS autocast support varies, so they keep float32. float16 is for CUDA alone: CPUs have no
    fast float16 arithmetic."""
    if name == "float16" and device.type != "cuda":
        raise Seq2SeqError(
            f"train.precision=float16 needs a CUDA GPU (this run is on {device.type}); use "
            f"bfloat16 or float32"
        )
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device.type == "cpu" and model_type in CPU_BFLOAT16_TYPES:
        return "bfloat16" if cpu_has_native_bfloat16() else "float32"
    return "float32"


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively: AVX-512 BF16 instructions (Intel Cooper
    Lake and later, AMD Zen 4 and later) or AMX tiles (Intel Sapphire Rapids and later), as
    PyTorch's oneDNN detects them."""
    detectors = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in detectors)


def autocast(precision: str, device: torch.device):
    """The autocast context for a precision picked by `pick_precision`."""
    if precision in ("bfloat16", "float16"):
        return torch.autocast(device.type, dtype=getattr(torch, precision))
    return contextlib.nullcontext()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """float16's gradient scaler: it scales the loss up so that small gradients do not vanish,
    skips the update of a step whose gradients overflowed and lowers the scale. Other
    precisions use it too, with the scale held at 1 (`update(fixed_scale(...))`), for the skip
    alone: the check stays on the device, so a step needs no host synchronisation to leave a
    non-finite gradient out."""
    return torch.amp.GradScaler(device.type, init_scale=2.0**16 if precision == "float16" else 1.0)


def fixed_scale(precision: str) -> float | None:
    """The scale to hold a precision's gradient scaler at after each step: None lets float16's
    adapt; every other precision keeps 1."""
    return None if precision == "float16" else 1.0
