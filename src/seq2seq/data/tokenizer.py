"""Tokenizers: spaCy words with Moses-style detokenization, or SentencePiece subword pieces.

`spacy.blank(lang)` holds the same tokenizer rules as the tutorial's `de_core_news_sm` and
`en_core_web_sm` pipelines, without downloading a model. Whitespace tokens (spaCy's token for a
double space or a tab) are kept, as the tutorial keeps them; this is what makes its vocabulary
sizes come out exactly (docs/text.md).

A SentencePiece tokenizer needs its model, which its vocabulary carries (training it is
data/subword.py's business). `tokenizer_for` is the one place that picks the tokenizer a
config asks for.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
import unicodedata
from typing import Literal

import sentencepiece

from seq2seq.config import DataConfig
from seq2seq.data.vocab import Vocab


def tokenizer_for(
    data: DataConfig, side: Literal["src", "tgt"], vocab: Vocab | None = None
) -> Tokenizer | SentencePieceTokenizer:
    """The tokenizer of one side of a config. SentencePiece needs `vocab`, the side's
    vocabulary (a checkpoint's, or one trained on the training split), for its model."""
    lang = data.src_lang if side == "src" else data.tgt_lang
    if data.tokenizer == "spacy":
        return Tokenizer(lang, lowercase=data.lowercase)
    if vocab is None or vocab.subword_model is None:
        raise ValueError(f"a SentencePiece tokenizer needs the {side} vocabulary of its model")
    return SentencePieceTokenizer(
        lang, vocab.subword_model, lowercase=data.lowercase, pretokenize=data.sp_pretokenize
    )


@functools.lru_cache(maxsize=8)
def _moses_detokenizer(lang: str):
    from sacremoses import MosesDetokenizer  # imported when first needed: its import is slow

    return MosesDetokenizer(lang=lang)


def spacy_version() -> str:
    """spaCy's version, without importing it (slow): SentencePiece runs never need it."""
    return importlib.metadata.version("spacy")


@functools.lru_cache(maxsize=8)
def _spacy_tokenizer(lang: str):
    import spacy

    try:
        return spacy.blank(lang).tokenizer
    except (ImportError, KeyError, ValueError):
        # No rules for this language: spaCy's language-neutral tokenizer still splits sensibly.
        return spacy.blank("xx").tokenizer


class Tokenizer:
    """Splits text into word tokens, optionally lowercased, and joins tokens back into text."""

    def __init__(self, lang: str, *, lowercase: bool = True):
        self.lang = lang
        self.lowercase = lowercase
        self._spacy = _spacy_tokenizer(lang)

    @property
    def cache_key(self) -> str:
        """Everything the tokens of a text depend on, for the token cache."""
        return f"{self.lang}|{self.lowercase}|{spacy_version()}"

    def __call__(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: list[str], batch_size: int = 1000) -> list[list[str]]:
        """Tokens of each text; a text without any but whitespace and control characters has
        none (spaCy would give it one whitespace token)."""
        out = []
        cleaned = [_clean(t) for t in texts]
        # A Doc's text is its tokens' texts joined again, as costly as tokenizing: ask the input.
        docs = self._spacy.pipe(cleaned, batch_size=batch_size)
        for text, doc in zip(cleaned, docs, strict=True):
            tokens = [token.text for token in doc] if text.strip() else []
            out.append([t.lower() for t in tokens] if self.lowercase else tokens)
        return out

    def join(self, tokens: list[str]) -> str:
        """The tokens as text without detokenization rules: joined by spaces."""
        return " ".join(tokens)

    def detokenize(self, tokens: list[str]) -> str:
        """Text from tokens: first undo the splits spaCy makes inside words, then let Moses
        place punctuation with its rules for this language.

        spaCy splits some words at a hyphen or an apostrophe (English `t - shirt`, `is n't`;
        French `qu' est -ce`, `d’ œil`; Czech `černo - bílý`), which Moses rules do not know.
        Only the tokens are seen here, not the spaces between them, so a split is undone when
        this language's tokenizer makes exactly that split of the joined text: `t - shirt`
        becomes `t-shirt` in English, where spaCy splits `t-shirt`, but `man - woman` stays
        spaced in German, where spaCy never splits a hyphenated word, and a German suspended
        hyphen (`Obst- und Gemüse`) is kept as written. In English, French and Czech a dash
        with spaces around it (`man - woman`) gives the same tokens as a hyphenated word and
        is joined; on Multi30k's training text such a token is almost always a hyphen inside a
        word (the counts: docs/text.md, Detokenization)."""
        words: list[str] = []
        tokens = [token for token in tokens if token.strip()]
        i = 0
        while i < len(tokens):
            token = tokens[i]
            after = tokens[i + 1] if i + 1 < len(tokens) else ""
            if words and token == "-" and after and self._splits_hyphen(tokens[i - 1], after):
                words[-1] += token + after
                i += 2
                continue
            if words and _joinable(tokens[i - 1], token) and self._splits(tokens[i - 1], token):
                words[-1] += token
            else:
                words.append(token)
            i += 1
        # A final "." or "," is set apart: sacremoses' Czech decimal rule reads the sentence's
        # last two tokens instead of the current ones and would glue every number to the word
        # before it in a sentence ending "93 ." ("číslo93."). Both always attach to the left.
        if words and words[-1] in (".", ","):
            return self._moses(words[:-1]) + words[-1]
        return self._moses(words)

    def _moses(self, words: list[str]) -> str:
        # Tokens are raw text, never XML-escaped: "&amp;" in a reference stays "&amp;".
        return _moses_detokenizer(self.lang).detokenize(words, unescape=False)

    def _splits(self, left: str, right: str) -> bool:
        """Whether this language's tokenizer splits `left + right` into exactly these two."""
        return _tokens(self.lang, left + right) == (left, right)

    def _splits_hyphen(self, left: str, right: str) -> bool:
        """Whether this language's tokenizer splits `left-right` after `left` and its hyphen
        (what follows may split further: French `chef - d' œuvre`)."""
        return left[-1:].isalnum() and _tokens(self.lang, f"{left}-{right}")[:2] == (left, "-")


class SentencePieceTokenizer:
    """Cuts text into SentencePiece pieces and decodes pieces back into text.

    SentencePiece reads the text NFC-normalised, with control characters as spaces and
    lowercased if `lowercase` (see `sentencepiece_input`); it normalises nothing more itself (its
    `identity` rule) but spaces: runs of spaces become one, and leading and trailing spaces go.
    Decoding the pieces of a text gives back exactly the text it read, so detokenization is
    exact by construction. With `pretokenize` it reads spaCy's tokens joined by spaces instead,
    and its decoded output is detokenized by Moses rules, as the spaCy tokenizer's is."""

    def __init__(
        self, lang: str, model: bytes, *, lowercase: bool = True, pretokenize: bool = False
    ):
        self.lang = lang
        self.lowercase = lowercase
        self.model = model
        self.pretokenizer = Tokenizer(lang, lowercase=lowercase) if pretokenize else None
        self._processor = processor(model)

    @property
    def cache_key(self) -> str:
        words = self.pretokenizer.cache_key if self.pretokenizer else "raw"
        digest = hashlib.sha256(self.model).hexdigest()[:32]
        return f"sentencepiece|{digest}|{self.lowercase}|{words}|{sentencepiece.__version__}"

    def __call__(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        words = self.pretokenizer.tokenize_many(texts) if self.pretokenizer else None
        return self.encode(sentencepiece_input(texts, lowercase=self.lowercase, words=words))

    def ids_many(self, texts: list[str]) -> list[list[int]]:
        """The piece ids of each text: the indices of its pieces in the vocabulary."""
        words = self.pretokenizer.tokenize_many(texts) if self.pretokenizer else None
        prepared = sentencepiece_input(texts, lowercase=self.lowercase, words=words)
        return self._processor.encode(prepared, out_type=int)

    def encode(self, prepared: list[str]) -> list[list[str]]:
        """The pieces of text prepared by `sentencepiece_input`."""
        return self._processor.encode(prepared, out_type=str)

    def join(self, pieces: list[str]) -> str:
        """The text the pieces spell: with `pretokenize`, spaCy's tokens joined by spaces."""
        # By id: decoding piece strings would keep an unknown piece's "▁" as it is.
        return self._processor.decode([self._processor.piece_to_id(p) for p in pieces])

    def detokenize(self, pieces: list[str]) -> str:
        text = self.join(pieces)
        if self.pretokenizer:
            return self.pretokenizer.detokenize(text.split(" "))
        return text


def sentencepiece_input(
    texts: list[str], *, lowercase: bool, words: list[list[str]] | None = None
) -> list[str]:
    """What SentencePiece reads, when it is trained and when it cuts: spaCy's `words` of each
    text joined by spaces where given (`data.sp_pretokenize`), else each text NFC-normalised,
    with control characters as spaces, and lowercased if `lowercase`."""
    if words is not None:
        return [" ".join(tokens) for tokens in words]
    cleaned = (_clean(text) for text in texts)
    return [text.lower() for text in cleaned] if lowercase else list(cleaned)


@functools.lru_cache(maxsize=8)
def processor(model: bytes) -> sentencepiece.SentencePieceProcessor:
    """A SentencePiece model from its serialized bytes; ValueError if they are not one."""
    try:
        return sentencepiece.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, OSError, TypeError) as error:
        raise ValueError(f"not a SentencePiece model ({' '.join(str(error).split())})") from None


APOSTROPHES = ("'", "’")


def _joinable(left: str, right: str) -> bool:
    """Tokens that spaCy may have split from one word: an elision (`l' homme`), a clitic
    (`he 's`, `is n't`, `est -ce`). A quote or a dash standing alone is never one."""
    if left[-1:] in APOSTROPHES:
        return len(left) > 1 and left[-2].isalpha() and right[:1].isalpha()
    if not left[-1:].isalpha():
        return False
    if right[:1] in APOSTROPHES or right[:1] == "-":
        return right[1:2].isalpha()
    return right[:1] == "n" and right[1:2] in APOSTROPHES


@functools.lru_cache(maxsize=65536)
def _tokens(lang: str, text: str) -> tuple[str, ...]:
    return tuple(token.text for token in _spacy_tokenizer(lang)(text))


def _clean(text: str) -> str:
    """NFC-normalise and turn control characters into spaces, so they never become tokens."""
    if not text.isascii():  # ASCII is NFC already, and holds no surrogate
        # Lone surrogates (possible from Python callers, never from UTF-8 files) would crash spaCy.
        text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    return _CONTROLS.sub(" ", text)


# Unicode's control characters (category Cc) are exactly U+0000-U+001F and U+007F-U+009F. (A
# regular expression: much faster than str.translate on long corpora.)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
