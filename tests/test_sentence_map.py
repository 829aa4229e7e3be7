"""`seq2seq sentence-map` (the paper's Figure 2): the probes, the sentence vectors, the PCA and
the command end to end."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import torch
from conftest import assert_error, cli

from seq2seq import checkpoint
from seq2seq.analysis.sentence_map import (
    parse_probes,
    project,
    read_probes,
    sentence_vectors,
    separation,
)
from seq2seq.data.examples import Example
from seq2seq.errors import Seq2SeqError
from seq2seq.models.ensemble import Ensemble

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
CPU = torch.device("cpu")


def test_groups_are_separated_by_blank_lines_and_comments_skipped():
    lines = ["# a comment", "", "Eins.", " Zwei. ", "", "", "Drei.", "# inside", "Vier.", ""]
    probes = parse_probes(lines, "probes.de")
    assert probes.sentences == ["Eins.", "Zwei.", "Drei.", "Vier."]
    assert probes.groups == [0, 0, 1, 1]


@pytest.mark.parametrize("lines", [[], ["# only a comment", ""], ["Ein Satz."]])
def test_fewer_than_two_sentences_are_refused(lines):
    with pytest.raises(Seq2SeqError, match=r"probes.de has fewer than 2 sentences \(\d\)"):
        parse_probes(lines, "probes.de")


def test_the_shipped_probes_mirror_the_paper():
    probes = read_probes(None)
    assert len(probes.sentences) == 12 and sorted(set(probes.groups)) == [0, 1, 2, 3]
    assert all(probes.groups.count(group) == 3 for group in range(4))
    # Each group says one thing in the active and in the passive voice ("von" marks the agent).
    for group in range(4):
        members = [s for s, g in zip(probes.sentences, probes.groups, strict=True) if g == group]
        assert sum(" von " in s for s in members) == 1, members
    # Groups come in pairs that swap who does what with the same words, as in the paper's
    # "John admires Mary" / "Mary admires John".
    first = [words(s) for s, g in zip(probes.sentences, probes.groups, strict=True) if g == 0]
    second = [words(s) for s, g in zip(probes.sentences, probes.groups, strict=True) if g == 1]
    assert {w - {"ein", "eine", "einen", "einem", "einer"} for w in map(frozenset, first)} == {
        w - {"ein", "eine", "einen", "einem", "einer"} for w in map(frozenset, second)
    }


def words(sentence: str) -> list[str]:
    return re.findall(r"\w+", sentence.lower())


def test_every_probe_word_is_common_in_multi30k(multi30k_dir):
    """A probe word the model reads as <unk> would make the sentences it tells apart equal:
    every word occurs at least twice (the tutorial's min_freq) in the training text."""
    with gzip.open(multi30k_dir / "train.de.gz", "rt", encoding="utf-8") as handle:
        counts: dict[str, int] = {}
        for line in handle:
            for word in words(line):
                counts[word] = counts.get(word, 0) + 1
    rare = {w for s in read_probes(None).sentences for w in words(s) if counts.get(w, 0) < 2}
    assert not rare


def test_pca_recovers_a_plane_up_to_rotation():
    torch.manual_seed(0)
    plane = torch.randn(6, 2) * torch.tensor([3.0, 1.0])  # (N, 2)
    basis, _ = torch.linalg.qr(torch.randn(8, 2))  # (H, 2) orthonormal columns
    vectors = plane @ basis.T + torch.randn(8)  # (N, H): the plane, moved off the origin
    points, share = project(vectors)
    assert torch.cdist(points, points).float() == pytest.approx(torch.cdist(plane, plane), abs=1e-4)
    assert share.sum().item() == pytest.approx(1.0)
    assert share[0] > share[1]
    # Each axis is signed so that its largest coordinate is positive: no flips between runs.
    largest = points.gather(0, points.abs().argmax(dim=0, keepdim=True))
    assert (largest > 0).all()
    flipped, _ = project(-vectors)
    assert flipped == pytest.approx(points)


def test_pca_of_points_on_a_line():
    vectors = torch.tensor([[0.0, 0.0, 1.0], [1.0, 2.0, 1.0], [3.0, 6.0, 1.0]])
    points, share = project(vectors)
    root5 = 5**0.5  # positions along (1, 2, 0) / root5 are 0, root5, 3 root5; their mean 4/3 root5
    assert points[:, 0].tolist() == pytest.approx([-4 / 3 * root5, -1 / 3 * root5, 5 / 3 * root5])
    assert points[:, 1].abs().max().item() == pytest.approx(0.0, abs=1e-9)
    assert share.tolist() == pytest.approx([1.0, 0.0])


def test_separation_is_mean_cosine_within_and_between_groups():
    vectors = torch.tensor([[1.0, 5.0], [1.0, 5.0], [-1.0, 5.0], [-1.0, 5.0]])
    assert separation(vectors, [0, 0, 1, 1]) == pytest.approx((1.0, -1.0))
    assert separation(vectors, [0, 1, 2, 3]) is None  # no two sentences share a group


@pytest.fixture(scope="module")
def golden():
    return checkpoint.load(GOLDEN)


def examples(ckpt, sentences: list[list[str]]) -> list[Example]:
    from seq2seq.data.examples import encode_source, encode_target

    data = ckpt.config.data
    return [
        Example(encode_source(s, ckpt.src_vocab, data), encode_target([], ckpt.tgt_vocab, data))
        for s in sentences
    ]


def test_vectors_are_the_top_layer_final_hidden_states_in_input_order(golden):
    tokens = [["ein", "mann", "."], ["zwei", "hunde", "spielen", "im", "schnee", "."], ["ja"]]
    batch = examples(golden, tokens)
    vectors = sentence_vectors(golden.model, batch, pad=golden.src_vocab.pad, device=CPU)
    assert vectors.shape == (3, golden.config.model.hidden_size)
    for example, vector in zip(batch, vectors, strict=True):
        src = torch.tensor([example.src])
        alone = golden.model.encode(src, torch.tensor([len(example.src)])).hidden[-1][0]
        # Padding in the batch changes nothing.
        torch.testing.assert_close(vector, alone.detach(), atol=1e-6, rtol=0)
    assert not torch.allclose(vectors[0], vectors[1])


def test_a_state_summary_is_preferred_and_a_state_without_one_refused(golden):
    class Summarised:
        def encode(self, src, src_lengths):
            return type("State", (), {"summary": lambda self: src.float() * 2})()

        def eval(self):
            pass

    batch = examples(golden, [["ja"]])
    found = sentence_vectors(Summarised(), batch, pad=golden.src_vocab.pad, device=CPU)
    assert found.tolist() == [[2.0 * i for i in batch[0].src]]
    ensemble = Ensemble([golden.model, golden.model])
    with pytest.raises(Seq2SeqError, match="EnsembleState.*sentence-map needs a single model"):
        sentence_vectors(ensemble, batch, pad=golden.src_vocab.pad, device=CPU)


@pytest.mark.slow
def test_sentence_map_of_a_trained_run(tiny_run, tmp_path, capsys):
    output = tmp_path / "map.svg"
    assert cli(["sentence-map", tiny_run, "--output", output, "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"mean cosine similarity: -?[01]\.\d{3} within groups, -?[01]\.\d{3} between groups",
        out[0],
    )
    assert out[1] == f"wrote {output}"
    svg = output.read_text()
    assert "<svg" in svg and "principal component 1" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.svg"]


def test_sentence_map_of_a_user_file_without_groups(tmp_path, capsys):
    sentences = tmp_path / "mine.de"
    sentences.write_text("Ein Mann.\nZwei Hunde.\nEine Frau.\n", encoding="utf-8")
    output = tmp_path / "map.png"
    assert cli(["sentence-map", GOLDEN, "--sentences", sentences, "--output", output]) == 0
    assert capsys.readouterr().out == f"wrote {output}\n"  # one group: nothing to separate
    assert output.read_bytes().startswith(b"\x89PNG")


def test_an_empty_sentences_file_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "empty.de").write_text("")
    argv = ["sentence-map", tmp_path / "no-run", "--sentences", tmp_path / "empty.de"]
    code = cli([*argv, "--output", tmp_path / "map.png"])
    assert_error(capsys, code, f"{tmp_path / 'empty.de'} has fewer than 2 sentences (0)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.de"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "map.pdf"], "cannot tell the figure format of map.pdf"),
        (["--output", "m.png", "--sentences", "missing.de"], "cannot read missing.de"),
        (["--output", "m.png", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_arguments(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_error(capsys, cli(["sentence-map", GOLDEN, *argv]), message)
