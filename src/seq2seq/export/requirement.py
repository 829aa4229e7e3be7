"""The one import of the optional `ctranslate2` package, with the one-line fix when missing."""

from __future__ import annotations

from seq2seq.errors import Seq2SeqError


def ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise Seq2SeqError(
            "CTranslate2 exports need the ctranslate2 package; pip install -e '.[fast]'"
        ) from None
    return ctranslate2
