"""Errors a user can cause. The CLI prints their message as one line, never a traceback."""


class Seq2SeqError(Exception):
    """Base class: the message names the problem and the fix."""


class DataError(Seq2SeqError):
    """A corpus file is missing, unreadable, misaligned or not UTF-8."""


class CheckpointError(Seq2SeqError):
    """A checkpoint is missing, from elsewhere, or does not fit the data or other models."""


class TrainingInterrupted(Seq2SeqError):
    """Stopped by a signal after saving a resumable checkpoint."""


class TrainingDiverged(Seq2SeqError):
    """Training cannot go on: the loss keeps being non-finite, or memory runs out."""
