"""Seq2seq: sequence to sequence learning with LSTMs (Sutskever, Vinyals and Le, 2014)."""

__version__ = "0.1.0"
