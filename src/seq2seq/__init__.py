"""Seq2seq: sequence to sequence learning with LSTMs (Sutskever, Vinyals and Le, 2014).

`seq2seq.load(path)` gives a `seq2seq.Model` to translate, list n-best translations, score and
read attention maps with (see seq2seq.api). They are imported on first use, so `import seq2seq`
stays cheap and does not load PyTorch.
"""

__version__ = "0.1.0"
__all__ = ["AttentionMap", "Hypothesis", "Model", "Seq2SeqError", "load"]


def __getattr__(name: str):
    if name in ("AttentionMap", "Hypothesis", "Model", "load"):
        from seq2seq import api

        return getattr(api, name)
    if name == "Seq2SeqError":
        from seq2seq.errors import Seq2SeqError

        return Seq2SeqError
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
