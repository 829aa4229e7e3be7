"""Int8 decoding of PyTorch models: dynamic quantization at load time (`--quantize int8`).

`torch.ao.quantization.quantize_dynamic` stores the weights of every `nn.Linear`, `nn.LSTM`
and `nn.GRU` in int8 and quantizes their inputs on the fly, one scale per tensor; embeddings
and everything else stay float32. It runs on CPUs only (PyTorch's fbgemm and qnnpack kernels).

The recurrent models' CPU fast path (models/cpu_rnn.py) calls the float LSTM's weights
directly, which a quantized LSTM no longer has: quantized models take the plain module calls.

`auto` quantizes only the model types on which int8 was measured to pay at every beam size
(benchmarks/decode_speed.py --engines; the figures are in docs/export-measured.md): the LSTM.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from seq2seq.errors import ParameterError

CHOICES = ("none", "int8", "auto")
# The model.type values whose int8 decoding was measured faster on the CPU, greedy and at beam
# 5, at the same BLEU (docs/export-measured.md).
PAYS: frozenset[str] = frozenset({"lstm"})


def check_quantize(quantize: str) -> None:
    if quantize not in CHOICES:
        raise ParameterError(
            "quantize", f"{{parameter}} must be one of {', '.join(CHOICES)} (got {quantize!r})"
        )


def quantized(ckpt, quantize: str):
    """The checkpoint with its model quantized as `quantize` asks (the same checkpoint when it
    asks for nothing)."""
    check_quantize(quantize)
    on_cpu = next(ckpt.model.parameters()).device.type == "cpu"
    if quantize == "auto":
        quantize = "int8" if on_cpu and ckpt.config.model.type in PAYS else "none"
    if quantize == "none":
        return ckpt
    if not on_cpu:
        raise ParameterError(
            "quantize",
            "{parameter} int8 is PyTorch's dynamic quantization, which runs on CPUs only; "
            "decode on the cpu device or drop {parameter}",
        )
    for module in ckpt.model.modules():
        if hasattr(module, "fast"):  # the recurrent CPU fast path reads float weights
            module.fast = False
    with warnings.catch_warnings():
        # PyTorch announces that its quantized tensors and torch.ao.quantization will move to
        # torchao; they work in the releases this project supports (2.13 tested), and the
        # notices would be every user's stderr.
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor", category=UserWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization", category=DeprecationWarning
        )
        ckpt.model = torch.ao.quantization.quantize_dynamic(
            ckpt.model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8
        )
    return ckpt
