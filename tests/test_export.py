"""CTranslate2 exports (export/): the exported model decodes as our PyTorch model does, for
both norm placements and both embedding settings, and every command takes an export as a run.

The models are tiny Transformers trained in-process for a few seconds to reverse sequences of
made-up words, then saved as real checkpoints: reversing needs attention and positions, so a
wrong position table or a wrong attention layout shows in the output."""

from __future__ import annotations

import functools
import json
import math
import random
import sys

import pytest
import torch
from conftest import assert_error, cli

import seq2seq
from seq2seq import checkpoint, loader
from seq2seq.config import Config, DataConfig, RecurrentConfig, TransformerConfig
from seq2seq.data.examples import Example
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, Vocab, model_sizes
from seq2seq.evaluate import evaluate_examples
from seq2seq.export.convert import export_run
from seq2seq.models import build_model
from seq2seq.models.transformer import sinusoids

pytest.importorskip("ctranslate2")

WORDS = [f"w{i}" for i in range(24)]
SHIPPED = "post-norm, tied and shared"  # the shipped configs' placement and embeddings
VARIANTS = {
    SHIPPED: {"pre_norm": False, "tie_embeddings": True},
    "pre-norm, separate embeddings": {"pre_norm": True, "tie_embeddings": False},
    "post-norm, separate embeddings": {"pre_norm": False, "tie_embeddings": False},
    "pre-norm, tied and shared": {"pre_norm": True, "tie_embeddings": True},
}


def sentences(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.choices(WORDS, k=rng.randint(2, 9)) for _ in range(count)]


def reversing_example(words: list[str], src: Vocab, tgt: Vocab) -> Example:
    return Example([src.sos, *src.ids(words), src.eos], [tgt.sos, *tgt.ids(words[::-1]), tgt.eos])


def train_reverser(path, *, pre_norm: bool, tie_embeddings: bool, steps: int = 150):
    """A 2 + 2 layer Transformer that reverses word sequences, saved at `path`. Tied embeddings
    come with a joint vocabulary (shared with the encoder); separate ones with two vocabularies
    (the target's in another order)."""
    torch.manual_seed(0)
    src_vocab = Vocab([*SPECIALS, *WORDS])
    tgt_vocab = src_vocab if tie_embeddings else Vocab([*SPECIALS, *WORDS[::-1]])
    model_config = TransformerConfig(
        d_model=32, heads=4, ff_size=64, encoder_layers=2, decoder_layers=2, dropout=0.0,
        pre_norm=pre_norm, tie_embeddings=tie_embeddings, share_embeddings=tie_embeddings,
    )  # fmt: skip
    data = DataConfig(reverse_source=False, joint_vocab=tie_embeddings)
    config = Config(name="reverser", data=data, model=model_config)
    model = build_model(model_config, **model_sizes(src_vocab, tgt_vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = [reversing_example(w, src_vocab, tgt_vocab) for w in sentences(32, step)]
        length = max(len(e.src) for e in batch)
        src = torch.tensor([e.src + [src_vocab.pad] * (length - len(e.src)) for e in batch])
        tgt = torch.tensor([e.tgt + [tgt_vocab.pad] * (length - len(e.tgt)) for e in batch])
        logits = model(src, torch.tensor([len(e.src) for e in batch]), tgt)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=tgt_vocab.pad
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint.save(path, model, config, (src_vocab, tgt_vocab), {"epoch": 1, "step": steps})
    return path


# The first variant is the shipped configs' (post-norm, tied); the others train in the slow set.
@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.slow] if number else [])
        for number, name in enumerate(VARIANTS)
    ],
)
def exported(request, trained, tmp_path_factory):
    """(run, its float32 export) for each architecture variant."""
    run = trained(request.param)
    return run, export_run(run, tmp_path_factory.mktemp("ct2") / "ct2", quantization="float32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The reverser of a variant, trained once for the module whichever fixture asks first."""
    directory = tmp_path_factory.mktemp("runs")

    @functools.cache
    def train(variant: str):
        return train_reverser(directory / str(len(list(directory.iterdir()))), **VARIANTS[variant])

    return train


@pytest.fixture(scope="module")
def reverser(trained, tmp_path_factory):
    """The shipped configs' variant, and its float32 and int8 exports, for the tests of the
    commands."""
    run, directory = trained(SHIPPED), tmp_path_factory.mktemp("reverser")
    exports = {q: export_run(run, directory / q, quantization=q) for q in ("float32", "int8")}
    return run, exports


TEXTS = [" ".join(words) for words in sentences(60, seed=10_000)]


def test_greedy_output_equals_pytorch_for_every_variant(exported):
    run, export = exported
    ours, theirs = seq2seq.load(run, device="cpu"), seq2seq.load(export, device="cpu")
    expected = [" ".join(text.split()[::-1]) for text in TEXTS]
    ours_out = ours.nbest(TEXTS, n=1, beam_size=1)
    theirs_out = theirs.nbest(TEXTS, n=1, beam_size=1)
    assert [h[0].text for h in theirs_out] == [h[0].text for h in ours_out]
    # The model learned the task, so the comparison is of real translations, not noise.
    assert sum(h[0].text == e for h, e in zip(ours_out, expected, strict=True)) >= 8
    for mine, other in zip(ours_out, theirs_out, strict=True):
        assert other[0].log_prob == pytest.approx(mine[0].log_prob, abs=1e-3)


def test_beam_and_nbest_map(reverser):
    """CTranslate2's beam search keeps its candidates otherwise than search.py's, so an n-best
    list may differ below the top; the best agrees, and a hypothesis both find has the same
    log-probability and score."""
    run, exports = reverser
    ours, theirs = seq2seq.load(run, device="cpu"), seq2seq.load(exports["float32"], device="cpu")
    options = {"n": 3, "beam_size": 4}
    found = list(zip(ours.nbest(TEXTS, **options), theirs.nbest(TEXTS, **options), strict=True))
    assert sum(mine[0].text == other[0].text for mine, other in found) >= 0.9 * len(TEXTS)
    shared = 0
    for mine, other in found:
        assert len(other) == 3
        by_text = {h.text: h for h in mine}
        for hypothesis in other:
            if hypothesis.text in by_text:
                shared += 1
                assert hypothesis.score == pytest.approx(by_text[hypothesis.text].score, abs=1e-3)
                expected = by_text[hypothesis.text].log_prob
                assert hypothesis.log_prob == pytest.approx(expected, abs=1e-3)
    assert shared >= 2 * len(TEXTS)


def test_workers_change_nothing_but_speed(reverser, monkeypatch):
    """On a CPU an export decodes with one worker per thread, each batch of one length limit
    queued at once; the n-best lists, their order and their scores are those of one worker."""
    _, exports = reverser
    options = {"n": 2, "beam_size": 3}
    found = {}
    for workers in (1, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda w=workers: w)
        model = seq2seq.load(exports["int8"], device="cpu")
        assert model.checkpoint.model.translator.num_translators == workers
        found[workers] = [
            [(h.text, round(h.log_prob, 4)) for h in nbest]
            for nbest in model.nbest(TEXTS, **options)
        ]
    assert found[3] == found[1]
    assert len({len(text.split()) for text in TEXTS}) > 3  # several limits, so several batches


def test_length_limits_map(reverser):
    """--max-length and --min-length mean what they mean for the run itself."""
    run, exports = reverser
    ours, theirs = seq2seq.load(run, device="cpu"), seq2seq.load(exports["float32"], device="cpu")
    for options in ({"max_length": 3}, {"min_length": 12}):
        assert theirs.translate(TEXTS[:20], **options) == ours.translate(TEXTS[:20], **options)
    assert all(len(t.split()) <= 3 for t in theirs.translate(TEXTS[:20], max_length=3))
    assert all(len(t.split()) >= 12 for t in theirs.translate(TEXTS[:20], min_length=12))


def test_empty_inputs_and_endings_map(reverser):
    """search.py's decisions hold for an export: an empty input ends at once, with the
    log-probability that scoring gives it, and `ended` says which translations the limit cut."""
    run, exports = reverser
    ours, theirs = seq2seq.load(run, device="cpu"), seq2seq.load(exports["float32"], device="cpu")
    lines = ["", *TEXTS[:10]]
    for options in ({"n": 1}, {"n": 1, "max_length": 3}):  # greedy: beam search differs
        mine, other = ours.nbest(lines, **options), theirs.nbest(lines, **options)
        assert [(h[0].text, h[0].ended) for h in other] == [(h[0].text, h[0].ended) for h in mine]
        log_probs = [h[0].log_prob for h in mine]
        assert [h[0].log_prob for h in other] == pytest.approx(log_probs, abs=1e-3)
        assert [len(h) for h in other] == [options["n"]] * len(lines)
    assert {h[0].ended for h in theirs.nbest(lines, n=1, max_length=3)} == {True, False}
    ends = theirs.nbest("", n=2)
    assert [(h.text, h.ended) for h in ends] == [("", True)] * 2
    assert [h.log_prob for h in ends] == pytest.approx([theirs.score("", "")] * 2, abs=1e-5)


def test_scores_and_loss_equal_pytorch(reverser):
    run, exports = reverser
    ours, theirs = (loader.load_ensemble([p]) for p in (run, exports["float32"]))
    references = [" ".join(text.split()[::-1]) for text in TEXTS]
    examples = [reversing_example(t.split(), ours.src_vocab, ours.tgt_vocab) for t in TEXTS]
    figures = [
        evaluate_examples(
            ckpt.model,
            examples,
            references,
            vocab=ckpt.tgt_vocab,
            tokenizer=Tokenizer("en"),
            device=torch.device("cpu"),
        )
        for ckpt in (ours, theirs)
    ]
    assert figures[1]["translations"] == figures[0]["translations"]
    assert figures[1]["bleu"] == figures[0]["bleu"]
    assert figures[1]["loss"] == pytest.approx(figures[0]["loss"], abs=1e-4)
    assert figures[1]["free_loss"] is None and figures[1]["free_ppl"] is None
    scores = [
        seq2seq.load(p, device="cpu").score(TEXTS, references) for p in (run, exports["float32"])
    ]
    assert scores[1] == pytest.approx(scores[0], abs=1e-3)


def test_export_holds_our_position_table_settings_and_manifest(reverser):
    run, exports = reverser
    export = exports["int8"]
    found = json.loads((export / "seq2seq-export.json").read_text())
    assert found["checkpoint"] == str(run / "best") or found["checkpoint"] == str(run)
    assert found["quantization"] == "int8" and found["epoch"] == 1
    assert found["text"]["reverse_source"] is False and found["text"]["tokenizer"] == "spacy"
    config = json.loads((export / "config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["add_source_eos"]) == (
        "<sos>",
        "<eos>",
        True,
    )
    for name in ("config.yaml", "vocab.json", "model.bin"):
        assert (export / name).is_file()
    assert (export / "model.bin").stat().st_size < (exports["float32"] / "model.bin").stat().st_size
    # Ours interleaves sin and cos; CTranslate2's own table would put the sines first.
    table = sinusoids(4, 32)
    assert table[1, 1] == pytest.approx(torch.cos(torch.tensor(1.0)))


def test_int8_export_keeps_most_of_what_was_learned(reverser):
    """A 32-wide model trained for seconds has slim margins, and int8 rounding costs it much
    (measured: a log-likelihood of -555 against float32's -381 on these pairs), but it keeps
    most of what the model learned: closer to float32 than to a guess."""
    run, exports = reverser
    references = [" ".join(text.split()[::-1]) for text in TEXTS]
    float32, int8 = (
        sum(seq2seq.load(exports[q], device="cpu").score(TEXTS, references))
        for q in ("float32", "int8")
    )
    guess = -sum(len(r.split()) + 1 for r in references) * math.log(len(SPECIALS) + len(WORDS))
    assert float32 > int8 > (float32 + guess) / 2


def test_commands_take_an_export(reverser, tmp_path, capsys):
    run, exports = reverser
    export = exports["float32"]
    outputs = []
    for model in (run, export):
        assert cli(["translate", model, "w1 w2 w3", "w4 w5", "--beam-size", "3"]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert len(outputs[1]) == 2 and outputs[1] == outputs[0]
    assert cli(["translate", export, "w1 w2 w3", "--beam-size", "3", "--n-best", "2"]) == 0
    assert [line.split(" ||| ")[0] for line in capsys.readouterr().out.splitlines()] == ["0", "0"]
    (tmp_path / "src").write_text("w1 w2\nw4 w5 w6\n")
    (tmp_path / "tgt").write_text("w2 w1\nw6 w5 w4\n")
    assert cli(["score", export, "--source", tmp_path / "src", "--target", tmp_path / "tgt"]) == 0
    from_export = [float(x) for x in capsys.readouterr().out.split()]
    assert cli(["score", run, "--source", tmp_path / "src", "--target", tmp_path / "tgt"]) == 0
    assert from_export == pytest.approx(
        [float(x) for x in capsys.readouterr().out.split()], abs=1e-3
    )


def test_server_loads_an_export(reverser):
    from seq2seq.server.registry import load_models, parse_specs

    run, exports = reverser
    models = load_models(parse_specs([f"fast={exports['int8']}"]), torch.device("cpu"))
    expected = seq2seq.load(exports["int8"], device="cpu").translate(TEXTS[:5])
    assert models["fast"].translator.translate(TEXTS[:5]) == expected
    assert models["fast"].attention is False


def test_refusals(reverser, tmp_path, capsys):
    run, exports = reverser
    export = exports["float32"]
    code = cli(["export", run, "--output", export])
    assert_error(capsys, code, "already exists")
    code = cli(["export", run, "--output", tmp_path / "x", "--quantization", "int4"])
    assert_error(capsys, code, "--quantization must be one of", "'int4'")
    code = cli(["translate", export, "w1", "--ensemble", run])
    assert_error(capsys, code, "decodes alone, not in an ensemble")
    code = cli(["translate", export, "w1", "--attention-plot", tmp_path / "a.svg"])
    assert_error(capsys, code, "CTranslate2 export", "no attention maps")
    code = cli(["export", export, "--output", tmp_path / "y"])
    assert_error(capsys, code, "is a CTranslate2 export", "give the run it came from")
    code = cli(["translate", export, "w1", "--beam-size", "2", "--alpha", "0.6"])
    assert_error(capsys, code, "--alpha 0.6 is GNMT's length penalty", "--alpha 0")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_recurrent_runs_are_refused(tmp_path, capsys):
    vocab = Vocab([*SPECIALS, *WORDS])
    config = Config(model=RecurrentConfig(embedding_size=8, hidden_size=8, num_layers=1))
    model = build_model(config.model, **model_sizes(vocab, vocab))
    checkpoint.save(tmp_path / "lstm", model, config, (vocab, vocab), {"epoch": 1})
    code = cli(["export", tmp_path / "lstm", "--output", tmp_path / "out"])
    assert_error(capsys, code, "model.type=lstm", "no recurrent decoder", "--quantize int8")
    assert not (tmp_path / "out").exists()


def test_missing_ctranslate2_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, "seq2seq.export.convert", raising=False)
    code = cli(["export", tmp_path, "--output", tmp_path / "out"])
    assert_error(capsys, code, "pip install -e '.[fast]'")
