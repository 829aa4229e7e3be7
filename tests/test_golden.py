"""The golden checkpoint (format version 1) translates as recorded; later versions are refused;
loading puts every tensor on the asked device."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import ROOT, assert_error, cli
from helpers import (
    GOLDEN,
    GOLDEN_DE,
)

from seq2seq import checkpoint

# The golden checkpoint: format version 1, translated as recorded.


def translate_golden(capsys, *options) -> str:
    code = cli(["translate", GOLDEN, "--input", GOLDEN_DE, "--device", "cpu", *options])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_the_golden_checkpoint_translates_as_recorded(capsys):
    expected = (ROOT / "tests" / "data" / "golden.greedy.en").read_text(encoding="utf-8")
    assert translate_golden(capsys) == expected
    # A sentence's translation does not depend on the batch it is decoded in.
    assert translate_golden(capsys, "--batch-size", "1") == expected


def test_the_golden_checkpoint_beam_search_n_best_as_recorded(capsys):
    expected = (ROOT / "tests" / "data" / "golden.beam3.nbest").read_text(encoding="utf-8")
    assert translate_golden(capsys, "--beam-size", "3", "--n-best", "2") == expected


def test_a_later_format_version_is_refused_in_one_line(tmp_path, capsys):
    shutil.copytree(GOLDEN, tmp_path / "golden")
    meta = json.loads((GOLDEN / "meta.json").read_text())
    (tmp_path / "golden" / "meta.json").write_text(json.dumps({**meta, "format_version": 2}))
    code = cli(["translate", tmp_path / "golden", "Ein Mann."])
    assert_error(capsys, code, "checkpoint format version 2", "reads version 1")


# Device placement: saving writes tensors through .cpu(), and load(device="cpu") must put every
# tensor on the CPU. Without a GPU, a checkpoint written from GPU tensors cannot be made here;
# the CUDA test below runs only where one exists.


def test_load_on_the_cpu_puts_every_tensor_there():
    for device in ("cpu", torch.device("cpu")):
        model = checkpoint.load(GOLDEN, device).model
        tensors = [*model.parameters(), *model.buffers()]
        assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_non_contiguous_weights_are_saved_and_load_the_same(tmp_path):
    ckpt = checkpoint.load(GOLDEN)
    weight = ckpt.model.decoder.output.weight
    transposed = weight.detach().t().contiguous().t()  # same values, column-major storage
    assert not transposed.is_contiguous()
    ckpt.model.decoder.output.weight = torch.nn.Parameter(transposed)
    checkpoint.save(tmp_path / "c", ckpt.model, ckpt.config, (ckpt.src_vocab, ckpt.tgt_vocab), {})
    assert torch.equal(checkpoint.load(tmp_path / "c").model.decoder.output.weight, weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_checkpoint_saved_from_the_gpu_loads_on_the_cpu(tmp_path):
    ckpt = checkpoint.load(GOLDEN)
    on_gpu = checkpoint.load(GOLDEN, "cuda").model
    checkpoint.save(tmp_path / "c", on_gpu, ckpt.config, (ckpt.src_vocab, ckpt.tgt_vocab), {})
    loaded = checkpoint.load(tmp_path / "c", "cpu").model
    assert all(t.device.type == "cpu" for t in loaded.parameters())
    for name, tensor in ckpt.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
