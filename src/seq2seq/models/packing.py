"""Packing padded batches for the RNNs, and length masks, without stopping the GPU: what the
CPU knows (source lengths) goes to the GPU without a wait.

A copy from ordinary host memory to a GPU waits for the GPU's queue of work to drain; so do
`pack_padded_sequence(..., enforce_sorted=False)` (it copies its sort order that way) and
`pad_packed_sequence` (it reads the order back). A training step that did these would wait for
the GPU once or more every step. Here the order and the masks go from pinned memory without
waiting, and nothing comes back. The packing is PyTorch's own, step for step (the same sort,
the same gather), so the result is the same on every device.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (on the CPU) on `device`; to a GPU from pinned memory, without a wait."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def length_mask(lengths: torch.Tensor, length: int, device: torch.device) -> torch.Tensor:
    """(B, length) True at positions before each sequence's length (lengths on the CPU)."""
    return to_device(torch.arange(length) < lengths.unsqueeze(1), device)


def pack(embedded: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
    """`pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)`: the
    same packed sequence, with its sort order copied to the GPU without a wait."""
    lengths, order = torch.sort(lengths, descending=True)
    order = to_device(order, embedded.device)
    packed = pack_padded_sequence(embedded.index_select(0, order), lengths, batch_first=True)
    return PackedSequence(packed.data, packed.batch_sizes, order, None)


def unpack(packed: PackedSequence, total_length: int) -> torch.Tensor:
    """`pad_packed_sequence(packed, batch_first=True, total_length=...)[0]`, in batch order,
    without reading the order back to the CPU."""
    if packed.unsorted_indices is None:
        return pad_packed_sequence(packed, batch_first=True, total_length=total_length)[0]
    in_order = PackedSequence(packed.data, packed.batch_sizes)  # sorted by length
    padded = pad_packed_sequence(in_order, batch_first=True, total_length=total_length)[0]
    return padded.index_select(0, packed.unsorted_indices)
