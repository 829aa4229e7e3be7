"""Packing without host syncs (models/packing.py) gives what PyTorch's own calls give: the
same packed data, final states and padded outputs, in batch order. On a GPU too, where
one is present (the GPU is where the difference matters)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.models.packing import length_mask, pack, to_device, unpack

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pack_and_unpack_equal_pytorchs_packing(device, bidirectional):
    torch.manual_seed(0)
    lengths = torch.tensor([3, 7, 1, 7, 5])  # unsorted, with a tie
    embedded = torch.randn(5, 7, 4, device=device)
    rnn = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True, bidirectional=bidirectional)
    rnn = rnn.to(device)
    ours_out, (ours_h, ours_c) = rnn(pack(embedded, lengths))
    plain = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    theirs_out, (theirs_h, theirs_c) = rnn(plain)
    assert torch.equal(ours_out.data, theirs_out.data)
    assert torch.equal(ours_out.batch_sizes, theirs_out.batch_sizes)
    assert torch.equal(ours_h, theirs_h) and torch.equal(ours_c, theirs_c)
    padded = pad_packed_sequence(theirs_out, batch_first=True, total_length=9)[0]
    assert torch.equal(unpack(ours_out, total_length=9), padded)
    assert unpack(ours_out, total_length=9)[2, 1:].abs().sum() == 0  # padding stays zero


@pytest.mark.parametrize("device", DEVICES)
def test_masks_and_copies_arrive_whole(device):
    lengths = torch.tensor([2, 4, 1])
    mask = length_mask(lengths, 5, torch.device(device))
    assert mask.device.type == device
    assert mask.tolist() == [
        [True, True, False, False, False],
        [True, True, True, True, False],
        [True, False, False, False, False],
    ]
    values = torch.arange(1000)
    assert torch.equal(to_device(values, torch.device(device)).cpu(), values)
