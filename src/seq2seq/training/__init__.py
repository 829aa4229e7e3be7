"""Training: the loop (loop.py) and its parts, one job per module."""

from seq2seq.training.loop import Trainer, train

__all__ = ["Trainer", "train"]
