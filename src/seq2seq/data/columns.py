"""Tab-separated corpora (`data.columns` set): one pair a line, its fields separated by tabs,
as in the Tatoeba exports that manythings.org publishes for Anki (`English<TAB>German`, and in
newer exports a third field, the pair's attribution). `data.columns` names each field; the
ones named by the source and target languages are read. There is no quoting: a sentence holds
no tab.
"""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.config import DataConfig
from seq2seq.errors import DataError


@dataclass(frozen=True)
class Columns:
    """What each field of a line holds (`data.columns`), and which are the source and target."""

    names: tuple[str, ...]
    src: int
    tgt: int

    @classmethod
    def of(cls, data: DataConfig) -> Columns | None:
        """The config's columns; None for two files of lines."""
        names = data.columns
        if names is None:
            return None
        return cls(names, names.index(data.src_lang), names.index(data.tgt_lang))

    def pairs(self, lines: list[str], source: str, first_line: int) -> tuple[list[str], list[str]]:
        """The source and target fields of each line; `source` and `first_line` name the file
        and the first line's number in the error for a line with another number of fields."""
        src, tgt = [], []
        for number, line in enumerate(lines, first_line):
            fields = line.split("\t")
            if len(fields) != len(self.names):
                raise DataError(
                    f"{source} line {number} has {_fields(len(fields))}, but data.columns "
                    f"names {len(self.names)} ({', '.join(self.names)}); set data.columns to "
                    f"name each of its columns, or mend the line"
                )
            src.append(fields[self.src])
            tgt.append(fields[self.tgt])
        return src, tgt


def _fields(count: int) -> str:
    return f"{count} tab-separated field{'s' * (count != 1)}"
