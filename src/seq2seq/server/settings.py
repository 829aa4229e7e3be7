"""The server's limits and batching, one field per `seq2seq serve` option. Kept apart from the
server so the CLI can build its options from them without importing FastAPI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from seq2seq.errors import Seq2SeqError


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServerSettings:
    """Limits on everything a client controls, and how requests are batched."""

    max_body_bytes: int = _option(1 << 20, "larger request bodies get 413")
    max_sentences: int = _option(64, "sentences per request")
    max_characters: int = _option(1000, "characters per sentence")
    max_beam_size: int = _option(12, "largest beam a request may ask for")
    max_batch_sentences: int = _option(64, "sentences decoded together at most")
    max_wait_ms: float = _option(5.0, "how long a request waits for others to batch with")
    log_text: bool = _option(False, "log the texts it translates (never logged otherwise)")

    def __post_init__(self):
        for item in fields(self):
            value, least = getattr(self, item.name), 0 if item.name == "max_wait_ms" else 1
            if item.type != "bool" and value < least:
                raise Seq2SeqError(f"{option(item.name)} must be at least {least} (got {value})")

    def limits(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self) if item.type != "bool"}


def option(name: str) -> str:
    return "--" + name.replace("_", "-")
