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


# Model types whose training bfloat16 was measured to speed up on CPUs with AMX. The
# Transformer's was measured slower (736 against 2,067 target tokens/s on the tutorial-size
# model, float32 against bfloat16 autocast), so `auto` keeps it in float32 on CPUs.
CPU_BFLOAT16_TYPES = ("lstm", "attention")


def pick_precision(name: str, device: torch.device, model_type: str = "lstm") -> str:
    """With "auto", bfloat16 autocast where it was measured to pay off without costing quality,
    and float32 elsewhere. On a CPU with AMX a full tutorial epoch took 74 s against 138 s in
    float32, and the tutorial run's test BLEU was within seed noise of float32's (README,
    Results); the attention models train 1.3-1.6x faster in it there too. GPUs that support
    bfloat16 get it for every model. CPUs without AMX emulate bfloat16 or barely speed it up,
    and MPS autocast support varies, so they keep float32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu" and model_type in CPU_BFLOAT16_TYPES:
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        return "bfloat16" if amx() else "float32"
    return "float32"


def autocast(precision: str, device: torch.device):
    """The autocast context for a precision picked by `pick_precision`."""
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
