"""An export's manifest: which run and checkpoint it came from, how it was quantized, and how
text must be prepared for it.

An export directory holds CTranslate2's files (`model.bin`, `config.json`, the vocabularies)
and ours beside them: this manifest, the run's `config.yaml` and `vocab.json`, and its
SentencePiece models if it has any. The manifest repeats the text settings so that someone
decoding the directory with CTranslate2 alone knows how to prepare the input: CTranslate2 adds
`<sos>` and `<eos>` around the source tokens itself, but the tokenizing, lowercasing and
reversing are the caller's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from seq2seq.errors import CheckpointError

NAME = "seq2seq-export.json"
FORMAT = "seq2seq-ctranslate2-export"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    checkpoint: str  # the checkpoint directory exported, as given to `seq2seq export`
    epoch: int | None
    step: int | None
    quantization: str
    ctranslate2_version: str
    # Rows of the exported position table: the longest source (with <sos> and <eos>) or
    # output (with its <sos>) the export can decode.
    position_rows: int
    text: dict  # tokenizer, languages, lowercase, reverse_source, SentencePiece files
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        (directory / NAME).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def is_export(path: str | Path) -> bool:
    return (Path(path) / NAME).is_file()


def read(directory: Path) -> Manifest:
    try:
        raw = json.loads((directory / NAME).read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"its format is {raw.get('format')!r}, not {FORMAT!r}")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"it has format version {raw.get('format_version')}, this seq2seq reads "
                f"{FORMAT_VERSION}; export the run again"
            )
        return Manifest(**raw)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{directory}/{NAME} is unusable: {error}") from None
