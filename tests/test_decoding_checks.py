"""One check of the decoding settings, before any work, for the command line, the Python API
and the server, and for a PyTorch run and a CTranslate2 export alike: every number has a range
the search can honour, and what an export cannot do is said in one line (a 422 from the
server), never a traceback or a 500."""

from __future__ import annotations

import httpx
import pytest
import torch
from conftest import ROOT, assert_error, cli, serving

import seq2seq
from seq2seq import checkpoint
from seq2seq.config import Config, DataConfig, TransformerConfig
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.decode import DecodeSettings
from seq2seq.errors import Seq2SeqError
from seq2seq.models import build_model
from seq2seq.search import MAX_LENGTH, max_lengths
from seq2seq.server.registry import load_models, parse_specs
from seq2seq.server.settings import ServerSettings
from seq2seq.translate import Translator

GOLDEN = ROOT / "tests" / "data" / "golden"
CPU = torch.device("cpu")
WORDS = [f"w{i}" for i in range(12)]
HUGE = 2**63


@pytest.fixture(scope="module")
def golden():
    return seq2seq.load(GOLDEN, device="cpu")


@pytest.fixture(scope="module")
def export_run(tmp_path_factory):
    """An untrained Transformer (it writes until its length limit) reading at most 20 tokens,
    and its float32 CTranslate2 export, whose position table then holds 41 rows."""
    pytest.importorskip("ctranslate2")
    from seq2seq.export.convert import export_run as export

    vocab = Vocab([*SPECIALS, *WORDS])
    model_config = TransformerConfig(
        d_model=8, heads=2, ff_size=16, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    config = Config(model=model_config, data=DataConfig(max_length=20, reverse_source=False))
    torch.manual_seed(0)
    model = build_model(model_config, **model_sizes(vocab, vocab))
    run = tmp_path_factory.mktemp("runs") / "tiny"
    checkpoint.save(run / "best", model, config, (vocab, vocab), {"epoch": 1, "step": 3})
    return run, export(run, run.parent / "ct2", quantization="float32")


# Ranges: the same refusal from every face, for a run and an export.


TOO_LARGE = [
    ({"alpha": 1000}, "alpha must be at most 10"),
    ({"alpha": 1e308}, "alpha must be at most 10"),
    ({"max_length": HUGE}, f"max_length must be at most {MAX_LENGTH}"),
    ({"max_length": 1e30}, "max_length must be a whole number"),
    ({"min_length": HUGE}, f"min_length must be at most {MAX_LENGTH}"),
    ({"batch_size": HUGE}, "batch_size must be at most"),
]


@pytest.mark.parametrize(("options", "message"), TOO_LARGE, ids=lambda x: str(x))
def test_the_api_refuses_numbers_the_search_cannot_honour(golden, export_run, options, message):
    for model in (golden, seq2seq.load(export_run[1], device="cpu")):
        with pytest.raises(Seq2SeqError, match=message):
            model.translate(["w1 w2"], beam_size=2, **options)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--alpha", "1e308"], "--alpha must be at most 10 (got 1e+308)"),
        (["--max-length", str(HUGE)], f"--max-length must be at most {MAX_LENGTH}"),
        (["--max-length-a", "1e30"], f"--max-length-a must be at most {MAX_LENGTH}"),
        (["--max-length-b", "100000000000"], f"--max-length-b must be at most {MAX_LENGTH}"),
        (["--batch-size", str(HUGE)], "--batch-size must be at most"),
    ],
)
def test_the_command_line_refuses_them_in_one_line(golden, export_run, option, message, capsys):
    for model in (GOLDEN, export_run[1]):
        code = cli(["translate", model, "w1 w2", "--beam-size", "2", *option])
        assert_error(capsys, code, message)


def test_a_checkpoint_s_own_length_rule_is_capped_too():
    lengths = torch.tensor([0, 3, 1000])
    assert max_lengths(lengths, 1e30, 0).tolist() == [0, MAX_LENGTH, MAX_LENGTH]
    assert max_lengths(lengths, 1.5, 10**12).tolist() == [MAX_LENGTH] * 3
    assert max_lengths(lengths, 1.5, 10, limit=20).tolist() == [10, 14, 20]


# What an export cannot do, and what it now does as the run does.


def lengths(path, lines: list[str], **settings) -> list[tuple[int, bool]]:
    """(tokens, ended) of each line's best hypothesis, decoded with these settings."""
    ckpt = seq2seq.load(path, device="cpu").checkpoint
    found = Translator(ckpt, CPU, DecodeSettings(**settings)).nbest(lines)
    return [(len(hyps[0][1].tokens), hyps[0][1].ended) for hyps in found]


def test_an_export_caps_the_length_limit_at_its_position_table(export_run, caplog):
    run, export = export_run
    for rule in ({"max_length_b": 2000}, {"max_length_a": 1000.0}):
        assert lengths(export, ["w1 w2 w3"], **rule) == [(40, False)]
        assert "outputs are cut at 40 tokens" in caplog.text
        caplog.clear()
    assert cli(["translate", export, "w1 w2 w3", "--max-length-b", "2000"]) == 0
    assert "outputs are cut at 40 tokens" in caplog.text  # the command line's stderr


def test_a_minimum_length_beyond_the_limit_is_cut_at_the_limit_as_a_run_does(export_run):
    for path in export_run:
        assert lengths(path, ["w1 w2 w3"], min_length=100) == [(14, False)]  # 1.5 x 3 + 10


def test_the_length_penalty_on_an_export_is_refused_before_any_work(export_run, capsys):
    model = seq2seq.load(export_run[1], device="cpu")
    with pytest.raises(Seq2SeqError, match="alpha 0.6 is GNMT's length penalty"):
        model.translate(["w1"], beam_size=2, alpha=0.6)
    code = cli(["translate", export_run[1], "w1", "--beam-size", "2", "--alpha", "0.6"])
    assert_error(capsys, code, "--alpha 0.6 is GNMT's length penalty", "--alpha 0")


def test_exporting_a_run_before_its_first_checkpoint_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: run\n")  # what a run has before its first save
    code = cli(["export", run, "--output", tmp_path / "out"])
    assert_error(capsys, code, f"{run} has no checkpoint yet", "end of its first epoch")
    assert not (tmp_path / "out").exists()


def test_an_export_says_which_checkpoint_it_took(export_run, tmp_path, capsys):
    run, _ = export_run
    assert cli(["export", run, "--output", tmp_path / "out"]) == 0
    assert f"from {run / 'best'} (epoch 1, step 3)" in capsys.readouterr().out


# The server: each refusal a 422 with its sentence.


@pytest.fixture(scope="module")
def server(export_run):
    models = load_models(parse_specs([f"fast={export_run[1]}", f"golden={GOLDEN}"]), CPU)
    with (
        serving(models, ServerSettings(max_wait_ms=10)) as (url, _),
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "fast", "alpha": 0.6}, "alpha 0.6 is GNMT's length penalty"),
        (
            {"model": "fast", "attention": True},
            "is a CTranslate2 export, which gives no attention maps",
        ),
        ({"model": "golden", "alpha": 1000}, "alpha must be at most 10 (got 1000"),
        ({"model": "golden", "alpha": 1e308}, "alpha must be at most 10"),
        ({"model": "fast", "max_length": HUGE}, f"max_length must be at most {MAX_LENGTH}"),
        ({"model": "golden", "min_length": HUGE}, f"min_length must be at most {MAX_LENGTH}"),
        ({"model": "golden", "max_length": 1e30}, "max_length"),
    ],
    ids=lambda x: str(x),
)
def test_the_server_refuses_with_a_422_and_the_sentence(server, body, message):
    response = server.post("/translate", json={"text": ["w1 w2"], "beam_size": 2, **body})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]


def test_the_server_decodes_a_minimum_length_past_the_limit_on_an_export(server, export_run):
    body = {"text": ["w1 w2 w3"], "model": "fast", "min_length": 100, "n_best": 1}
    response = server.post("/translate", json=body)
    assert response.status_code == 200, response.text
    ckpt = seq2seq.load(export_run[1], device="cpu").checkpoint
    expected = Translator(ckpt, CPU, DecodeSettings(beam_size=5, min_length=100)).nbest(
        body["text"]
    )
    assert response.json()["nbest"][0][0]["log_prob"] == pytest.approx(expected[0][0][1].log_prob)
