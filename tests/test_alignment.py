"""Attention maps: forced decoding gives the attention search saw, one row per output token,
each a distribution over the real source tokens in reading order; a Transformer's heads and
layers are chosen as asked; models without a single attention (LSTM, ensembles) are refused in
one line by the command line and the Python API; plots are valid PNG and SVG files, written
whole or not at all."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, assert_error, cli
from tiny_models import EOS, SOS, make, padded, sentences

import seq2seq
from seq2seq import checkpoint
from seq2seq.analysis.attention_maps import forced_attention, reading_order, supports_attention
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decode import DecodeSettings
from seq2seq.errors import Seq2SeqError
from seq2seq.models.ensemble import Ensemble
from seq2seq.search import greedy_search
from seq2seq.translate import Translator

GOLDEN = ROOT / "tests" / "data" / "golden"  # an LSTM: no attention
SENTENCES = ["Ein Hund rennt über die Wiese.", "Zwei Männer sitzen auf einer Bank."]


def watched_greedy(model, src, lengths, steps: int, layer=None, head=None):
    """Greedy decoding by hand, all rows for `steps` steps: the tokens (B, T) and the attention
    of each step (B, T, S)."""
    state, tokens = model.encode(src, lengths), torch.full((src.size(0),), SOS)
    outputs, attention = [], []
    with torch.inference_mode():
        for _ in range(steps):
            log_probs, state = model.decode_step(tokens, state)
            attention.append(state.attention(layer, head))
            tokens = log_probs.argmax(-1)
            outputs.append(tokens)
    return torch.stack(outputs, 1), torch.stack(attention, 1)


# Forced decoding, on tiny models.


@pytest.mark.parametrize("kind", ["attention", "transformer"])
def test_forced_decoding_gives_the_attention_search_saw(kind):
    model = make(kind)
    src, lengths = padded(sentences(6, seed=21), extra=2)
    found = greedy_search(model, src, lengths, sos=SOS, eos=EOS, max_length=lengths + 5)
    found = [h.tokens for (h,) in found]
    outputs, seen = watched_greedy(model, src, lengths, steps=int(lengths.max()) + 5)
    maps = forced_attention(model, src, lengths, found, sos=SOS)
    for i, (tokens, weights) in enumerate(zip(found, maps, strict=True)):
        assert outputs[i, : len(tokens)].tolist() == tokens
        assert weights.shape == (len(tokens) + 1, lengths[i])  # each token, then <eos>
        watched = min(len(tokens) + 1, seen.size(1))  # search stops at its length limit
        assert torch.allclose(weights[:watched], seen[i, :watched, : lengths[i]], atol=1e-5)
        assert torch.allclose(weights.sum(-1), torch.ones(len(tokens) + 1), atol=1e-5)


@pytest.mark.parametrize("kind", ["attention", "transformer"])
def test_a_batch_of_ragged_outputs_is_forced_as_each_sentence_alone(kind):
    model = make(kind)
    rows = sentences(4, seed=24)
    outputs = [[5, 9, 4, 12], [], [7], [14, 14, 6, 5, 8, 10, 11]]
    src, lengths = padded(rows, extra=3)
    maps = forced_attention(model, src, lengths, outputs, sos=SOS)
    for row, tokens, weights in zip(rows, outputs, maps, strict=True):
        alone, alone_lengths = padded([row])
        state, attention = model.encode(alone, alone_lengths), []
        for token in [SOS, *tokens]:
            _, state = model.decode_step(torch.tensor([token]), state)
            attention.append(state.attention()[0])
        assert torch.allclose(weights, torch.stack(attention), atol=1e-5)


def test_a_transformer_s_heads_and_layers_are_chosen_and_the_default_is_the_last_layer_s_mean():
    model = make("transformer")  # 2 decoder layers of 2 heads
    src, lengths = padded(sentences(3, seed=22))

    def forced(**choice):
        return forced_attention(model, src, lengths, [[5, 9, 4], [7], [12, 6]], sos=SOS, **choice)

    default, heads = forced(), [forced(layer=1, head=h) for h in (0, 1)]
    for i in range(3):
        assert torch.allclose(default[i], (heads[0][i] + heads[1][i]) / 2, atol=1e-6)
        assert not torch.allclose(heads[0][i], heads[1][i], atol=1e-3)
        assert not torch.allclose(forced(layer=0)[i], default[i], atol=1e-3)
        assert torch.allclose(forced(layer=0, head=1)[i].sum(-1), torch.tensor(1.0), atol=1e-5)
    _, seen = watched_greedy(model, src, lengths, steps=1, layer=0, head=1)  # the first step
    assert torch.allclose(forced(layer=0, head=1)[0][:1], seen[0, :, : lengths[0]], atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "choice", "message"),
    [
        ("transformer", {"layer": 2}, "layer 2 does not exist; the decoder has 2 layers"),
        ("transformer", {"head": 2}, "head 2 does not exist; each layer has 2 heads"),
        ("attention", {"layer": 0}, "an RNN attention model has one attention"),
        ("lstm", {}, "decoder state (RecurrentState) has no attention; use model.type=attention"),
    ],
)
def test_an_attention_the_model_lacks_is_one_line(kind, choice, message):
    src, lengths = padded(sentences(2, seed=23))
    with pytest.raises(Seq2SeqError) as error:
        forced_attention(make(kind), src, lengths, [[5], [6, 7]], sos=SOS, **choice)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_only_single_attention_models_support_attention():
    assert supports_attention(make("attention")) and supports_attention(make("transformer"))
    assert not supports_attention(make("lstm"))
    assert not supports_attention(Ensemble([make("attention"), make("transformer")]))


def test_reading_order_turns_a_reversed_source_back():
    assert reading_order(5, reversed_source=False) == [0, 1, 2, 3, 4]
    assert reading_order(5, reversed_source=True) == [0, 3, 2, 1, 4]  # <sos> c b a <eos>
    assert reading_order(2, reversed_source=True) == [0, 1]


# Maps of trained runs, with their labels.


def translator(run: Path) -> Translator:
    return Translator(checkpoint.load(run, "cpu"), torch.device("cpu"), DecodeSettings())


@pytest.mark.slow
def test_maps_label_rows_and_columns_and_show_a_reversed_source_as_written(attention_run):
    from seq2seq.analysis.attention_maps import attention_maps

    reader = translator(attention_run)
    ckpt, settings = reader.ckpt, reader.settings
    assert ckpt.config.data.reverse_source  # the model read "<sos> . wiese die ... <eos>"
    lines = [*SENTENCES, ""]
    best = [hypotheses[0] for hypotheses in reader.nbest(lines)]
    maps = attention_maps(reader, lines, best)
    tokenizer = Tokenizer("de", lowercase=ckpt.config.data.lowercase)
    for line, found, (text, hypothesis) in zip(lines[:2], maps[:2], best[:2], strict=True):
        words = tokenizer(line)
        assert found.translation == text == reader.translate([line])[0]
        assert found.source_tokens == ["<sos>", *words, "<eos>"]
        output = [ckpt.tgt_vocab.itos[i] for i in hypothesis.tokens]
        ended = len(output) < int(settings.max_length_a * len(words)) + settings.max_length_b
        assert hypothesis.ended == ended  # the map reads it; here it is worked out
        assert found.target_tokens == output + ["<eos>"] * ended
        weights = torch.tensor(found.weights)
        assert weights.shape == (len(found.target_tokens), len(found.source_tokens))
        assert torch.allclose(weights.sum(-1), torch.ones(len(weights)), atol=1e-5)
        # The columns are the model's own positions, the words turned back into reading order.
        ids = [ckpt.src_vocab.sos, *reversed(ckpt.src_vocab.ids(words)), ckpt.src_vocab.eos]
        src, lengths, sos = torch.tensor([ids]), torch.tensor([len(ids)]), ckpt.tgt_vocab.sos
        (raw,) = forced_attention(ckpt.model, src, lengths, [hypothesis.tokens], sos=sos)
        raw, n = raw[: len(weights)], len(words)
        assert torch.allclose(weights[:, 1 : n + 1], raw[:, 1 : n + 1].flip(-1), atol=1e-6)
        assert torch.allclose(weights[:, [0, -1]], raw[:, [0, -1]], atol=1e-6)
    assert maps[2] == seq2seq.AttentionMap("", [], [], [])  # an empty line has no map


# The command line.


@pytest.mark.slow
def test_translate_draws_png_and_svg_maps_and_prints_the_same_translation(
    attention_run, transformer_run, tmp_path, capsys
):
    sentence = SENTENCES[0]
    assert cli(["translate", attention_run, sentence]) == 0
    expected = capsys.readouterr().out
    png = tmp_path / "map.png"
    assert cli(["translate", attention_run, sentence, "--attention-plot", png]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected and captured.err.endswith(f"wrote {png}\n")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg = tmp_path / "MAP.SVG"
    argv = ["translate", transformer_run, sentence, "--attention-plot", svg]
    assert cli([*argv, "--layer", "0", "--head", "1"]) == 0
    text = svg.read_text(encoding="utf-8")
    assert text.startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
    assert "layer 0, head 1" in text  # the title says which attention
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MAP.SVG", "map.png"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "options", "fragments"),
    [
        ("transformer", ["--layer", "1"], ["layer 1 does not exist; the decoder has 1 layers"]),
        ("transformer", ["--head", "2"], ["head 2 does not exist; each layer has 2 heads"]),
        ("attention", ["--layer", "0"], ["an RNN attention model has one attention"]),
        ("attention", ["--ensemble", "SELF"], ["need one model, not an ensemble of 2"]),
    ],
)
def test_an_attention_the_run_lacks_is_one_line_and_writes_nothing(
    which, options, fragments, attention_run, transformer_run, tmp_path, capsys
):
    run = {"attention": attention_run, "transformer": transformer_run}[which]
    options = [run if option == "SELF" else option for option in options]
    output = tmp_path / "map.png"
    code = cli(["translate", run, SENTENCES[0], "--attention-plot", output, *options])
    assert_error(capsys, code, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_lstm_run_is_refused_in_one_line(tmp_path, capsys):
    code = cli(["translate", GOLDEN, "Ein Hund.", "--attention-plot", tmp_path / "map.png"])
    assert_error(
        capsys,
        code,
        f"{GOLDEN} has no attention (model.type=lstm); use model.type=attention or transformer",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (
            ["a", "b", "--attention-plot", "map.png"],
            ["draws one sentence; give exactly one (got 2)"],
        ),
        (["a", "--attention-plot", "map.jpg"], ["map.jpg", "ending in .png or .svg"]),
        (["a", "--layer", "0"], ["--layer and --head choose what --attention-plot draws"]),
        (["a", "--head", "0"], ["--layer and --head choose what --attention-plot draws"]),
    ],
)
def test_plot_options_are_checked_before_the_model_loads(arguments, fragments, tmp_path, capsys):
    missing = tmp_path / "no-such-run"  # never read: the options are refused first
    arguments = [tmp_path / a if a.startswith("map.") else a for a in arguments]
    assert_error(capsys, cli(["translate", missing, *arguments]), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_it_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    code = cli(["translate", GOLDEN, "Ein Hund.", "--attention-plot", tmp_path / "map.png"])
    assert_error(capsys, code, "plotting needs matplotlib", "pip install 'seq2seq[plot]'")


@pytest.mark.slow
def test_an_empty_sentence_and_a_failed_write_leave_the_old_figure(
    attention_run, tmp_path, capsys, monkeypatch
):
    output = tmp_path / "map.png"
    output.write_bytes(b"the previous figure")
    code = cli(["translate", attention_run, " ", "--attention-plot", output])
    assert_error(capsys, code, "the sentence has no tokens, so no attention to draw")
    from matplotlib.figure import Figure

    def failing(self, handle, format):
        handle.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", failing)
    code = cli(["translate", attention_run, SENTENCES[0], "--attention-plot", output])
    assert_error(capsys, code, f"cannot write {output}: No space left on device")
    assert output.read_bytes() == b"the previous figure"
    assert list(tmp_path.iterdir()) == [output]


# The Python API.


def readme_attention_example() -> str:
    """The code block of docs/api.md that reads an attention map."""
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    return next(block for block in blocks if ".attention(" in block)


@pytest.mark.slow
def test_the_readme_attention_example_runs(attention_run, capsys):
    code = readme_attention_example()
    assert 'seq2seq.load("runs/attention")' in code
    namespace: dict = {"seq2seq": seq2seq}  # imported by the section's first block
    exec(code.replace('"runs/attention"', repr(str(attention_run))), namespace)
    found = namespace["found"]
    assert isinstance(found, seq2seq.AttentionMap)
    assert found.translation == seq2seq.load(attention_run, "cpu").translate("Ein Hund rennt.")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == found.source_tokens
    assert [line.split()[0] for line in printed[1:]] == found.target_tokens
    assert [float(w) for w in printed[1].split()[1:]] == pytest.approx(found.weights[0], abs=0.01)


@pytest.mark.slow
def test_the_api_chooses_heads_and_refuses_models_without_one_attention(transformer_run):
    model = seq2seq.load(transformer_run, device="cpu")
    default = model.attention(SENTENCES)
    heads = [model.attention(SENTENCES, layer=-1, head=h) for h in (0, 1)]
    for i, found in enumerate(default):
        assert found.translation == model.translate(SENTENCES[i])
        mean = (torch.tensor(heads[0][i].weights) + torch.tensor(heads[1][i].weights)) / 2
        assert torch.allclose(torch.tensor(found.weights), mean, atol=1e-6)
        assert not torch.allclose(mean, torch.tensor(heads[0][i].weights), atol=1e-3)
        assert heads[0][i].source_tokens == found.source_tokens
    alone = model.attention(SENTENCES[0])  # a string gives one map
    assert (alone.source_tokens, alone.target_tokens) == (
        default[0].source_tokens,
        default[0].target_tokens,
    )
    assert torch.allclose(torch.tensor(alone.weights), torch.tensor(default[0].weights), atol=1e-5)
    with pytest.raises(Seq2SeqError, match=re.escape("head 2 does not exist; each layer has 2")):
        model.attention("Ein Hund.", head=2)
    with pytest.raises(Seq2SeqError, match=re.escape("layer must be a whole number or None")):
        model.attention("Ein Hund.", layer=0.5)
    with pytest.raises(Seq2SeqError, match="not an ensemble of 2; give one run"):
        seq2seq.load([transformer_run, transformer_run], device="cpu").attention("Ein Hund.")


def test_the_api_refuses_an_lstm_in_one_line():
    with pytest.raises(Seq2SeqError) as error:
        seq2seq.load(GOLDEN, device="cpu").attention("Ein Hund rennt.")
    assert str(error.value) == (
        f"{GOLDEN} has no attention (model.type=lstm); use model.type=attention or transformer"
    )
