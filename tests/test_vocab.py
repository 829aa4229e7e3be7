"""Vocabularies, the Multi30k vocabulary sizes of the tutorial, and the token cache."""

from __future__ import annotations

import gzip

import pytest
import reference_pipeline as reference

from seq2seq.config import DataConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, Vocab


def test_specials_come_first_in_a_fixed_order():
    vocab = Vocab.build([["b", "a"]], min_freq=1)
    assert SPECIALS == ("<unk>", "<pad>", "<sos>", "<eos>")
    assert vocab.itos[:4] == list(SPECIALS)
    assert (vocab.unk, vocab.pad, vocab.sos, vocab.eos) == (0, 1, 2, 3)
    assert [vocab.stoi[s] for s in SPECIALS] == [0, 1, 2, 3]
    assert len(Vocab.build([])) == 4


SENTENCES = [["a", "b", "a", "c"], ["a", "b", "d"], ["e"]]  # a:3 b:2 c:1 d:1 e:1


@pytest.mark.parametrize(
    "min_freq, kept", [(1, ["a", "b", "c", "d", "e"]), (2, ["a", "b"]), (3, ["a"]), (4, [])]
)
def test_min_freq_keeps_tokens_seen_often_enough(min_freq, kept):
    assert Vocab.build(SENTENCES, min_freq=min_freq).itos[4:] == kept


@pytest.mark.parametrize("max_size, kept", [(5, ["a"]), (6, ["a", "b"]), (100, ["a", "b"])])
def test_max_size_counts_the_specials(max_size, kept):
    vocab = Vocab.build(SENTENCES, min_freq=2, max_size=max_size)
    assert vocab.itos[4:] == kept
    assert len(vocab) == min(max_size, 6)


def test_tokens_sort_by_frequency_then_alphabetically():
    sentences = [["zebra", "yak", "mole", "ant", "bee"], ["zebra", "yak", "mole"], ["mole"]]
    assert Vocab.build(sentences, min_freq=1).itos[4:] == ["mole", "yak", "zebra", "ant", "bee"]


def test_specials_in_the_text_are_not_listed_twice():
    vocab = Vocab.build([["<eos>", "<unk>", "a"], ["<eos>", "a"]], min_freq=1)
    assert vocab.itos == [*SPECIALS, "a"]


def test_unknown_tokens_map_to_unk():
    vocab = Vocab.build([["a", "b", "a", "b"]])
    assert vocab.ids(["b", "zebra", "a", ""]) == [5, 0, 4, 0]


def test_decode_stops_at_eos_and_drops_sos_and_pad():
    vocab = Vocab.build([["a", "b"]], min_freq=1)  # a=4, b=5
    assert vocab.tokens([2, 4, 1, 5, 3, 4, 5]) == ["a", "b"]
    assert vocab.tokens([2, 5, 0, 4]) == ["b", "<unk>", "a"]
    assert vocab.tokens([3, 4]) == []
    assert vocab.tokens(vocab.ids(["b", "a"])) == ["b", "a"]


def test_vocab_refuses_a_list_without_the_specials_first():
    with pytest.raises(ValueError, match="must start with"):
        Vocab(["a", "<unk>", "<pad>", "<sos>", "<eos>"])
    with pytest.raises(ValueError, match="must start with"):
        Vocab(["<pad>", "<unk>", "<sos>", "<eos>", "a"])
    with pytest.raises(ValueError, match="must start with"):
        Vocab(["<unk>", "<pad>", "<sos>"])


def test_vocab_refuses_duplicates():
    with pytest.raises(ValueError, match="twice"):
        Vocab([*SPECIALS, "a", "b", "a"])
    with pytest.raises(ValueError, match="twice"):
        Vocab([*SPECIALS, "<unk>"])


def test_vocabs_compare_by_their_tokens():
    assert Vocab([*SPECIALS, "a", "b"]) == Vocab.build([["a", "a", "b", "b"]])
    assert Vocab([*SPECIALS, "a", "b"]) != Vocab([*SPECIALS, "b", "a"])


# Multi30k with the tutorial's settings.


@pytest.mark.slow
def test_multi30k_vocabularies_have_the_tutorial_sizes(multi30k_dir):
    config = DataConfig(dir=str(multi30k_dir))
    assert (config.lowercase, config.min_freq, config.max_size) == (True, 2, None)
    train = reference.load_split(config, "train")
    assert len(train.src_tokens) == len(train.tgt_tokens) == 29000
    assert train.src_text[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    src_vocab, tgt_vocab = reference.build_vocabs(config, train)
    assert (len(src_vocab), len(tgt_vocab)) == (7853, 5893)
    assert src_vocab.itos[4:9] == [".", "ein", "einem", "in", "eine"]
    assert tgt_vocab.itos[4:9] == ["a", ".", "in", "the", "on"]


@pytest.mark.slow
def test_multi30k_second_load_is_served_from_the_cache(multi30k_dir, monkeypatch):
    config = DataConfig(dir=str(multi30k_dir))
    first = reference.load_split(config, "train")
    monkeypatch.setattr(Tokenizer, "tokenize_many", _refuse)
    second = reference.load_split(config, "train")
    assert second == first


def test_train_limit_builds_the_vocabulary_from_the_first_pairs(tmp_path):
    _write_corpus(tmp_path, ["eins zwei", "eins zwei", "drei drei"], ["one two", "one", "three"])
    config = DataConfig(corpus="files", dir=str(tmp_path), train_limit=2)
    src_vocab, tgt_vocab = reference.build_vocabs(config, reference.load_split(config, "train"))
    assert src_vocab.itos[4:] == ["eins", "zwei"]
    assert tgt_vocab.itos[4:] == ["one"]


# The token cache, on a corpus small enough to tokenize in milliseconds.

SRC = ["Ein Hund läuft.", "Zwei Katzen schlafen.", "Ein Mann liest."]
TGT = ["A dog runs.", "Two cats sleep.", "A man reads."]


def _write_corpus(directory, src, tgt, prefix="train"):
    (directory / f"{prefix}.de").write_text("".join(f"{line}\n" for line in src), encoding="utf-8")
    (directory / f"{prefix}.en").write_text("".join(f"{line}\n" for line in tgt), encoding="utf-8")


def _refuse(self, texts, batch_size=1000):
    raise AssertionError("tokenized again instead of reading the cache")


@pytest.fixture
def small_corpus(tmp_path, monkeypatch):
    """A corpus in tmp_path/data and a private cache in tmp_path/cache, which it returns."""
    (tmp_path / "data").mkdir()
    _write_corpus(tmp_path / "data", SRC, TGT)
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _count_tokenize_calls(monkeypatch) -> list[int]:
    calls = []
    original = Tokenizer.tokenize_many

    def counting(self, texts, batch_size=1000):
        calls.append(len(texts))
        return original(self, texts, batch_size)

    monkeypatch.setattr(Tokenizer, "tokenize_many", counting)
    return calls


def test_second_load_is_served_from_the_cache(small_corpus, tmp_path, monkeypatch):
    config = DataConfig(corpus="files", dir=str(tmp_path / "data"))
    first = reference.load_split(config, "train")
    assert first.tgt_tokens[0] == ["a", "dog", "runs", "."]
    assert len(list((small_corpus / "tokens").glob("*.json.gz"))) == 2
    monkeypatch.setattr(Tokenizer, "tokenize_many", _refuse)
    assert reference.load_split(config, "train") == first


def test_the_cache_tells_tokenizer_settings_apart(small_corpus, tmp_path):
    lowercased = reference.load_split(
        DataConfig(corpus="files", dir=str(tmp_path / "data")), "train"
    )
    cased = reference.load_split(
        DataConfig(corpus="files", dir=str(tmp_path / "data"), lowercase=False), "train"
    )
    assert lowercased.src_tokens[0] == ["ein", "hund", "läuft", "."]
    assert cased.src_tokens[0] == ["Ein", "Hund", "läuft", "."]


def test_the_cache_follows_changes_to_the_file(small_corpus, tmp_path):
    config = DataConfig(corpus="files", dir=str(tmp_path / "data"))
    reference.load_split(config, "train")
    _write_corpus(tmp_path / "data", ["Ein Vogel singt.", *SRC[1:]], TGT)
    assert reference.load_split(config, "train").src_tokens[0] == ["ein", "vogel", "singt", "."]


def _garbage(data: bytes) -> bytes:
    return b"this is not gzip"


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _wrong_length(data: bytes) -> bytes:
    return gzip.compress(b'[["only", "one"]]')


def _not_json(data: bytes) -> bytes:
    return gzip.compress(b"[[")


@pytest.mark.parametrize("damage", [_garbage, _truncated, _wrong_length, _not_json])
def test_a_damaged_cache_file_is_rebuilt(small_corpus, tmp_path, monkeypatch, damage):
    config = DataConfig(corpus="files", dir=str(tmp_path / "data"))
    first = reference.load_split(config, "train")
    cache_files = sorted((small_corpus / "tokens").glob("*.json.gz"))
    assert len(cache_files) == 2
    for path in cache_files:
        path.write_bytes(damage(path.read_bytes()))

    calls = _count_tokenize_calls(monkeypatch)
    assert reference.load_split(config, "train") == first
    assert calls == [3, 3]  # both sides tokenized again

    calls.clear()
    assert reference.load_split(config, "train") == first
    assert calls == []  # and the rebuilt entries serve the next run
    assert sorted((small_corpus / "tokens").iterdir()) == cache_files  # no temporary files left
