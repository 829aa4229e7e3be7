"""Properties over arbitrary input, checked with hypothesis: tokenizing any Unicode text never
crashes nor lets a control character into a token (surrogates aside: no UTF-8 input
decodes to them, and spaCy cannot encode them); vocabularies round-trip what they know and
map the rest to <unk>; bucketing covers every example exactly once; and translating any list
of lines with the golden checkpoint gives exactly one clean output line per input line."""

from __future__ import annotations

import random
import unicodedata
from collections import Counter

import pytest
import torch
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq import checkpoint
from seq2seq.data.batching import bucket_batches, sorted_batches
from seq2seq.data.examples import Example
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, UNK, Vocab
from seq2seq.decode import DecodeSettings
from seq2seq.translate import Translator

GOLDEN = ROOT / "tests" / "data" / "golden"

# Text that leans on what breaks line-oriented tools: controls, line and paragraph separators,
# zero-width and bidi characters, combining marks, besides any other (non-surrogate) character.
# Surrogates are left out: no UTF-8 input decodes to them.
AWKWARD = (
    "\x00\x07\x08\t\x0b\x0c\r\x1b\x1c\x1d\x1e\x7f\x85\xa0"
    "\u2028\u2029\u200b\u200d\u200f\u202e\ufeff\u0301 \n"
)
CHARACTERS = st.characters(codec="utf-8")
TEXT = st.text(st.one_of(CHARACTERS, st.sampled_from(AWKWARD)), max_size=60)


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


# Tokenizer.

TOKENIZERS = [Tokenizer("de"), Tokenizer("en", lowercase=False)]


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_tokens_are_never_empty_and_hold_no_control_character(text):
    for tokenizer in TOKENIZERS:
        for token in tokenizer(text):
            assert token and not has_control(token), (text, token)
            # Whitespace (a double space, U+2028 ...) is a token of its own, never glued to text.
            assert token.isspace() or not any(c.isspace() for c in token), (text, token)


@settings(max_examples=40, deadline=None)
@given(st.lists(TEXT, max_size=6))
def test_tokenizing_many_texts_is_tokenizing_each(texts):
    tokenizer = TOKENIZERS[0]
    assert tokenizer.tokenize_many(texts) == [tokenizer(text) for text in texts]


@settings(max_examples=60, deadline=None)
@given(TEXT)
def test_nfc_and_nfd_text_give_the_same_tokens(text):
    tokenizer = TOKENIZERS[0]
    nfc, nfd = (unicodedata.normalize(form, text) for form in ("NFC", "NFD"))
    assert tokenizer(nfd) == tokenizer(nfc)


# Vocabulary.

WORD = st.text(min_size=1, max_size=6).filter(lambda token: token not in SPECIALS)


@settings(max_examples=100, deadline=None)
@given(st.lists(WORD, unique=True, max_size=30), st.lists(WORD, max_size=30))
def test_vocab_round_trips_known_tokens_and_maps_the_rest_to_unk(known, sentence):
    vocab = Vocab([*SPECIALS, *known])
    ids = vocab.ids(sentence)
    assert all(0 <= i < len(vocab) for i in ids)
    assert vocab.tokens(ids) == [token if token in known else UNK for token in sentence]
    assert vocab.tokens([vocab.sos, *vocab.ids(known), vocab.eos, *ids]) == known


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.one_of(WORD, st.sampled_from(SPECIALS)), max_size=8), max_size=12),
    st.integers(1, 3),
)
def test_a_built_vocabulary_holds_each_token_seen_min_freq_times_once(sentences, min_freq):
    vocab = Vocab.build(sentences, min_freq=min_freq)
    counts = Counter(token for sentence in sentences for token in sentence)
    assert vocab.itos[: len(SPECIALS)] == list(SPECIALS)
    kept = {t for t, n in counts.items() if n >= min_freq and t not in SPECIALS}
    assert sorted(vocab.itos[len(SPECIALS) :]) == sorted(kept)


# Batching.


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), max_size=300),
    st.integers(1, 400),
    st.sampled_from(["sentences", "tokens"]),
    st.integers(0, 2**32 - 1),
)
def test_batches_cover_every_example_exactly_once(lengths, size, unit, seed):
    examples = [Example([2] * s, [2] * t) for s, t in lengths]
    for batches in (
        bucket_batches(examples, size=size, unit=unit, rng=random.Random(seed)),
        sorted_batches(examples, size=size, unit=unit),
    ):
        assert sorted(i for batch in batches for i in batch) == list(range(len(examples)))
        for batch in batches:
            longest = max(max(len(examples[i].src), len(examples[i].tgt)) for i in batch)
            cost = len(batch) if unit == "sentences" else longest * len(batch)
            assert len(batch) and (cost <= size or len(batch) == 1)


# Translation with the golden checkpoint: a line is a line, so no '\n' inside one.

LINES = st.lists(
    st.text(st.one_of(CHARACTERS, st.sampled_from(AWKWARD[:-1])), max_size=50).map(
        lambda line: line.replace("\n", "")
    ),
    max_size=6,
)


@pytest.fixture(scope="module")
def golden():
    return checkpoint.load(GOLDEN)


def assert_clean(lines: list[str], outputs: list[str]) -> None:
    assert len(outputs) == len(lines)
    for line, output in zip(lines, outputs, strict=True):
        assert "\n" not in output and "\r" not in output, (line, output)
        if not line.strip():
            assert output == ""


@settings(max_examples=100, deadline=None)
@given(LINES)
def test_translate_gives_one_clean_line_per_input_line(golden, lines):
    translator = Translator(golden, torch.device("cpu"))
    outputs = translator.translate(lines)
    assert_clean(lines, outputs)
    # Each line's translation is its own, whatever the other lines of the batch.
    assert outputs == [translator.translate([line])[0] for line in lines]


@settings(max_examples=60, deadline=None)
@given(LINES)
def test_n_best_gives_n_clean_hypotheses_per_input_line(golden, lines):
    translator = Translator(golden, torch.device("cpu"), DecodeSettings(beam_size=3, n_best=2))
    nbest = translator.nbest(lines)
    assert [len(hypotheses) for hypotheses in nbest] == [2] * len(lines)
    for position in range(2):
        assert_clean(lines, [hypotheses[position][0] for hypotheses in nbest])
