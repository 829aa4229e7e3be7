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
        """Text from tokens: first undo the splits spaCy makes inside words (`t - shirt`,
        `is n't`), which Moses rules do not know, then let Moses place punctuation."""
        words: list[str] = []
        for token in tokens:
            if not token.strip():
                continue
            if words and (token.lower() == "n't" or _hyphen_pending(words)):
                words[-1] += token
            elif token == "-" and words and words[-1][-1:].isalnum():
                words[-1] += token  # joined to the next word too, if one follows
            else:
                words.append(token)
        return self._detokenizer.detokenize(words)


def _hyphen_pending(words: list[str]) -> bool:
    """The previous word ends in a hyphen that spaCy split from inside a word."""
    return len(words[-1]) > 1 and words[-1].endswith("-") and words[-1][-2].isalnum()


def _clean(text: str) -> str:
    """NFC-normalise and turn control characters into spaces, so they never become tokens."""
    # Lone surrogates (possible from Python callers, never from UTF-8 files) would crash spaCy.
    text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
