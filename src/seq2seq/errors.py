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


class ParameterError(Seq2SeqError):
    """A bad value of one parameter of a library function. The library names the parameter
    as written in Python (`last`, `attention_plot`); each face spells it its own way: the
    command line as an option (`--last`), the Python API as is."""

    def __init__(self, parameter: str, template: str):
        """`template` holds `{parameter}` where the parameter's name goes."""
        self.parameter, self.template = parameter, template
        super().__init__(template.format(parameter=parameter))

    def spelled(self, name: str) -> str:
        return self.template.format(parameter=name)
