"""`seq2seq analysis` (the paper's Figure 3): word ranks, equal-size groups that never split a
key, BLEU per group, and the command end to end."""

from __future__ import annotations

import json

import pytest
from conftest import assert_error, cli
from helpers import write_split

from seq2seq.analysis.buckets import (
    analyse,
    bucket_bleu,
    frequency_ranks,
    groups_by,
    mean_rank,
    words,
)
from seq2seq.errors import Seq2SeqError


def test_words_are_lowercased_word_runs_and_punctuation():
    assert words("Ein Hund, der rennt.") == ["ein", "hund", ",", "der", "rennt", "."]


def test_ranks_follow_counts_and_unseen_words_rank_last():
    ranks = frequency_ranks(["a a a b b c", "a b"])
    assert ranks == {"a": 1, "b": 2, "c": 3}
    assert mean_rank("a c", ranks) == 2.0
    assert mean_rank("a zebra", ranks) == (1 + 4) / 2  # 3 words seen: an unseen one ranks 4th
    assert mean_rank("", ranks) == 0.0


def test_groups_are_about_equal_and_never_split_equal_keys():
    keys = [5, 1, 1, 2, 3, 3, 3, 4, 9]
    groups = groups_by(keys, 3)
    assert sum(len(group) for group in groups) == len(keys)
    boundaries = [max(keys[i] for i in group) for group in groups]
    assert boundaries == sorted(boundaries)
    for first, second in zip(groups, groups[1:], strict=False):
        assert max(keys[i] for i in first) < min(keys[i] for i in second)
    assert [sorted(keys[i] for i in group) for group in groups] == [[1, 1, 2], [3, 3, 3], [4, 5, 9]]
    assert groups_by([7, 7, 7, 7], 4) == [[0, 1, 2, 3]]  # one key: one group


def test_more_groups_than_sentences_gives_one_per_sentence():
    assert groups_by([3, 1, 2], 10) == [[1], [2], [0]]


def test_zero_groups_are_refused():
    with pytest.raises(Seq2SeqError, match=r"--groups must be at least 1 \(0\)"):
        groups_by([1.0], 0)


def test_only_the_group_holding_a_wrong_translation_loses_bleu():
    references = ["a man rides a red bike down the road ."] * 3 + [
        "two dogs play in the deep snow near a tree ."
    ] * 3
    hypotheses = list(references)
    hypotheses[4] = "a cat sleeps ."
    keys = [1, 1, 1, 2, 2, 2]
    short, long = bucket_bleu(keys, hypotheses, references, count=2, lowercase=True)
    assert (short.key, short.sentences, short.bleu) == (1, 3, pytest.approx(100.0))
    assert (long.key, long.sentences) == (2, 3) and long.bleu < 90.0


def test_analyse_buckets_by_source_length_and_rank():
    sources = ["a", "a b", "a b c", "c c c c"]
    targets = ["one", "one two", "one two three", "four four four four"]
    result = analyse("run", sources, targets, targets, ["a a a b b c"], groups=2, lowercase=True)
    assert [bucket.key for bucket in result.length] == [2.0, 4.0]
    assert [bucket.sentences for bucket in result.rank] == [2, 2]
    assert [bucket.key for bucket in result.rank] == [1.5, 3.0]


@pytest.mark.slow
def test_analysis_of_a_trained_run_draws_both_curves(tiny_run, tmp_path, capsys):
    split = tmp_path / "data"
    write_split(split, "val", 0, 60)
    output = tmp_path / "figure3.png"
    argv = ["analysis", tiny_run, tiny_run, "--split", str(split / "val"), "--groups", "4"]
    argv += ["--output", output, "--max-length", "8", "--device", "cpu", "--json"]
    assert cli(argv) == 0
    printed = capsys.readouterr()
    results = json.loads(printed.out)  # the JSON alone: "wrote ..." goes to stderr
    assert printed.err.splitlines()[-1] == f"wrote {output}"
    assert len(results) == 2 and results[0]["length"] == results[1]["length"]
    for field in ("length", "rank"):
        buckets = results[0][field]
        assert 2 <= len(buckets) <= 4
        assert sum(bucket["sentences"] for bucket in buckets) == 60
        assert all(0.0 <= bucket["bleu"] <= 100.0 for bucket in buckets)
        keys = [bucket["key"] for bucket in buckets]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_group_count_is_one_line(tiny_run, capsys):
    assert cli(["analysis", tiny_run, "--groups", "0"]) == 2
    assert_error(capsys, 2, "--groups must be at least 1 (0)")


def test_an_unknown_figure_format_is_refused_before_decoding(tiny_run, tmp_path, capsys):
    assert cli(["analysis", tiny_run, "--output", tmp_path / "figure.bmp"]) == 2
    assert_error(capsys, 2, "figure.bmp")
