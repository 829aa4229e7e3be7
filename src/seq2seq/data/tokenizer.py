"""Word tokenization with spaCy's rule-based tokenizers, and Moses-style detokenization.

`spacy.blank(lang)` holds the same tokenizer rules as the tutorial's `de_core_news_sm` and
`en_core_web_sm` pipelines, without downloading a model. Whitespace tokens (spaCy's token for a
double space or a tab) are kept, as the tutorial keeps them; this is what makes its vocabulary
sizes (7,853 de, 5,893 en) come out exactly.
"""

from __future__ import annotations

import functools
import unicodedata

import spacy
from sacremoses import MosesDetokenizer


@functools.lru_cache(maxsize=8)
def _spacy_tokenizer(lang: str):
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
        self._detokenizer = MosesDetokenizer(lang=lang)

    def __call__(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: list[str], batch_size: int = 1000) -> list[list[str]]:
        """Tokens of each text; a text without any but whitespace and control characters has
        none (spaCy would give it one whitespace token)."""
        out = []
        for doc in self._spacy.pipe((_clean(t) for t in texts), batch_size=batch_size):
            tokens = [token.text for token in doc] if doc.text.strip() else []
            out.append([t.lower() for t in tokens] if self.lowercase else tokens)
        return out

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
        is joined; on Multi30k's training text such a token is a hyphen inside a word 1,339
        times in 1,345 (English), 2,088 in 2,094 (French) and 340 in 343 (Czech)
        (`benchmarks/detok_roundtrip.py --splits train`)."""
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
        return self._detokenizer.detokenize(words, unescape=False)

    def _splits(self, left: str, right: str) -> bool:
        """Whether this language's tokenizer splits `left + right` into exactly these two."""
        return _tokens(self.lang, left + right) == (left, right)

    def _splits_hyphen(self, left: str, right: str) -> bool:
        """Whether this language's tokenizer splits `left-right` after `left` and its hyphen
        (what follows may split further: French `chef - d' œuvre`)."""
        return left[-1:].isalnum() and _tokens(self.lang, f"{left}-{right}")[:2] == (left, "-")


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
    # Lone surrogates (possible from Python callers, never from UTF-8 files) would crash spaCy.
    text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
