"""`--quantize`: PyTorch's dynamic int8 at load time (quantize.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_error, cli

import seq2seq
from seq2seq import checkpoint
from seq2seq.config import AttentionConfig, Config, RecurrentConfig
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.errors import Seq2SeqError
from seq2seq.models import build_model

WORDS = [f"w{i}" for i in range(20)]
SOURCES = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10"]


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    """A small LSTM as `model.type: lstm` builds it (uniform init), saved untrained."""
    torch.manual_seed(0)
    vocab = Vocab([*SPECIALS, *WORDS])
    config = Config(model=RecurrentConfig(embedding_size=16, hidden_size=32, num_layers=2))
    model = build_model(config.model, **model_sizes(vocab, vocab))
    path = tmp_path_factory.mktemp("lstm") / "run"
    checkpoint.save(path, model, config, (vocab, vocab), {"epoch": 1})
    return path


def test_int8_quantizes_the_lstm_and_its_output_layer(lstm_run):
    model = seq2seq.load(lstm_run, device="cpu", quantize="int8").checkpoint.model
    kinds = {type(module) for module in model.modules()}
    assert torch.ao.nn.quantized.dynamic.LSTM in kinds
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    assert torch.nn.LSTM not in kinds
    assert not model.encoder.fast and not model.decoder.fast  # the fast path reads float weights


def test_int8_scores_close_to_float(lstm_run):
    targets = ["w3 w2 w1", "w5 w4", "w10 w9 w8 w7 w6"]
    float32 = seq2seq.load(lstm_run, device="cpu").score(SOURCES, targets)
    int8 = seq2seq.load(lstm_run, device="cpu", quantize="int8").score(SOURCES, targets)
    assert int8 == pytest.approx(float32, rel=0.01)
    translations = seq2seq.load(lstm_run, device="cpu", quantize="int8").translate(SOURCES)
    assert len(translations) == 3 and all(isinstance(t, str) for t in translations)


def test_auto_quantizes_only_where_int8_was_measured_to_pay(lstm_run, tmp_path):
    """The LSTM (docs/export.md); not the attention model, not measured."""
    model = seq2seq.load(lstm_run, device="cpu", quantize="auto").checkpoint.model
    assert torch.ao.nn.quantized.dynamic.LSTM in {type(module) for module in model.modules()}
    vocab = Vocab([*SPECIALS, *WORDS])
    config = Config(model=AttentionConfig(embedding_size=16, hidden_size=32, num_layers=1))
    attention = build_model(config.model, **model_sizes(vocab, vocab))
    checkpoint.save(tmp_path / "attention", attention, config, (vocab, vocab), {"epoch": 1})
    model = seq2seq.load(tmp_path / "attention", device="cpu", quantize="auto").checkpoint.model
    assert torch.nn.LSTM in {type(module) for module in model.modules()}


def test_a_bad_value_is_one_line(lstm_run, capsys):
    code = cli(["translate", lstm_run, "w1", "--quantize", "int4"])
    assert_error(capsys, code, "--quantize must be one of none, int8, auto", "'int4'")
    with pytest.raises(Seq2SeqError, match="^quantize must be one of"):
        seq2seq.load(lstm_run, device="cpu", quantize="int4")
