"""The server's limits, timeouts and origin rules, one field per `seq2seq serve` option. Kept
apart from the server so the CLI can build its options from them without importing FastAPI.

Every number has a range, checked when the settings are made: a client must never be able to
hold the server through a value its operator mistyped (`--max-wait-ms 1e9` would make every
request wait 11 days, and SIGTERM wait for them)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

from seq2seq.errors import ParameterError

# As Starlette's TrustedHostMiddleware reads them: a name, `*.` and a name, or an address (an
# IPv6 one in brackets, as a Host header carries it).
HOST = re.compile(r"(\*\.)?[A-Za-z0-9.-]+|\*|\[[0-9A-Fa-f:.]+\]")
ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def _option(default, help: str, least=None, most=None):
    return field(default=default, metadata={"help": help, "least": least, "most": most})


@dataclass(frozen=True)
class ServerSettings:
    """Limits on everything a client controls, how requests are batched and queued, and whom
    the server answers."""

    max_body_bytes: int = _option(1 << 20, "larger request bodies get 413", 1, 1 << 30)
    max_sentences: int = _option(64, "sentences per request", 1, 100_000)
    max_characters: int = _option(1000, "characters per sentence", 1, 1_000_000)
    max_beam_size: int = _option(12, "largest beam a request may ask for", 1, 1000)
    max_attention_cells: int = _option(
        20_000, "attention weights (source x output tokens) in one response; more get 413", 1, 10**8
    )
    max_batch_sentences: int = _option(64, "sentences decoded together at most", 1, 100_000)
    max_wait_ms: float = _option(5.0, "how long a request waits for others to batch with", 0, 1000)
    max_queue_sentences: int = _option(
        256,
        "sentences one client may have waiting for a model; its request beyond gets 503",
        1,
        10**7,
    )
    request_timeout_s: float = _option(
        30.0, "a request not answered by then gets 503 and its work is dropped", 0.1, 3600
    )
    header_timeout_s: float = _option(
        10.0, "a connection whose request headers have not all come by then is closed", 0.1, 3600
    )
    body_timeout_s: float = _option(
        30.0, "a request whose body has not all come by then gets 408", 0.1, 3600
    )
    keep_alive_s: int = _option(5, "an idle kept-alive connection is closed after it", 1, 3600)
    shutdown_grace_s: float = _option(
        10.0, "on SIGTERM or Ctrl-C, how long requests in flight may take to finish", 0, 3600
    )
    allowed_hosts: tuple[str, ...] = _option(
        (), "a Host header the server answers (repeat it; default: the bound address, localhost)"
    )
    cors_origin: tuple[str, ...] = _option(
        (), "an origin whose pages may call the API from a browser (repeat it; default: none)"
    )
    log_text: bool = _option(False, "log the texts it translates (never logged otherwise)")

    def __post_init__(self):
        for item in numeric_fields():
            value = getattr(self, item.name)
            least, most = item.metadata["least"], item.metadata["most"]
            if not math.isfinite(value) or not least <= value <= most:
                raise ParameterError(
                    item.name, f"{{parameter}} must be between {least} and {most} (got {value})"
                )
        for name, pattern, what, examples in _FORMS:
            for value in getattr(self, name):
                if not pattern.fullmatch(value):
                    raise ParameterError(
                        name,
                        f"{{parameter}} {_braced(value)} is not {what}; give one such as "
                        f"{examples}",
                    )

    def limits(self) -> dict:
        """What `GET /models` tells a client: the numbers that bound its requests."""
        names = ("max_body_bytes", "max_sentences", "max_characters", "max_beam_size")
        names += ("max_attention_cells", "max_batch_sentences", "max_wait_ms")
        names += ("max_queue_sentences", "request_timeout_s")
        return {name: getattr(self, name) for name in names}


# The option holding names, the form each name must have, and what the error says of it.
_FORMS = (
    ("allowed_hosts", HOST, "a host name or address",
     "example.org, *.example.org, 192.168.1.5 or [::1], without a port"),
    ("cors_origin", ORIGIN, "an origin",
     "https://example.org or http://localhost:3000, without a path"),
)  # fmt: skip


def _braced(value: str) -> str:
    """`value` quoted, its braces doubled for the error's template."""
    return repr(value).replace("{", "{{").replace("}", "}}")


def numeric_fields():
    return [item for item in fields(ServerSettings) if item.type in ("int", "float")]
