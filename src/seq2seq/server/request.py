"""Reading a translation request: JSON only, strictly typed, each key once, within every
limit of the server; its decoding settings checked by the function the CLI and the Python API
use. Every refusal raises an HTTPException (a 4xx with a one-line message) or pydantic's
ValidationError (answered by `answers.validation_error`)."""

from __future__ import annotations

import json

from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from seq2seq.analysis.attention_maps import attention_refusal
from seq2seq.decode import DecodeSettings, checked_settings
from seq2seq.errors import Seq2SeqError
from seq2seq.server.registry import ServedModel
from seq2seq.server.settings import ServerSettings

# The request's names for the decoding settings, for checked_settings' messages.
FIELDS = {name: name for name in ("beam_size", "n_best", "min_length", "max_length", "alpha")}


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: list[str]
    beam_size: int = 5
    n_best: int | None = None  # given: the n-best lists come back too
    model: str | None = None  # default: the first model
    attention: bool = False
    min_length: int = 0
    max_length: int | None = None
    alpha: float = Field(default=0.0, allow_inf_nan=False)


async def read_request(
    raw: Request, models: dict[str, ServedModel], default: str, settings: ServerSettings
) -> tuple[TranslateRequest, ServedModel, DecodeSettings]:
    """The request, the model it asks for, and how to decode it."""
    require_json(raw)
    body = await raw.body()
    request = TranslateRequest.model_validate_json(body)
    refuse_duplicate_keys(body)
    served = check(request, models, default, settings)
    return request, served, decode_settings(request, served)


def require_json(raw: Request) -> None:
    """A browser sends a cross-site `text/plain` or form POST without asking first; a JSON one
    only after a CORS preflight, which this server answers only for --cors-origin."""
    kind = raw.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(
            415,
            f"the body must be sent as Content-Type: application/json (got {kind or 'none'})",
        )


def refuse_duplicate_keys(body: bytes) -> None:
    def pairs(items):
        keys = [key for key, _ in items]
        for key in keys:
            if keys.count(key) > 1:
                refuse(f"the key {key!r} appears twice in one object; give each key once")
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)


def decode_settings(request: TranslateRequest, served: ServedModel) -> DecodeSettings:
    """The request's settings, checked as the command line checks its options, then against
    the model (what an export cannot honour), before anything is queued."""
    try:
        settings = checked_settings(
            FIELDS,
            beam_size=request.beam_size,
            n_best=request.n_best or 1,
            min_length=request.min_length,
            max_length=request.max_length,
            alpha=request.alpha,
        )
        served.decoder(settings)
    except Seq2SeqError as error:
        refuse(str(error))
    return settings


def check(
    request: TranslateRequest,
    models: dict[str, ServedModel],
    default: str,
    settings: ServerSettings,
) -> ServedModel:
    """The model asked for, once the request is within every limit; else a 422 naming it."""
    name = default if request.model is None else request.model
    if name not in models:
        refuse(f"unknown model {name!r}; this server has {', '.join(map(repr, models))}")
    if len(request.text) > settings.max_sentences:
        refuse(
            f"text has {len(request.text)} sentences; this server takes at most "
            f"{settings.max_sentences} per request"
        )
    for i, line in enumerate(request.text):
        if len(line) > settings.max_characters:
            refuse(
                f"text[{i}] has {len(line)} characters; this server takes at most "
                f"{settings.max_characters} per sentence"
            )
    if not 1 <= request.beam_size <= settings.max_beam_size:
        refuse(
            f"beam_size must be between 1 and {settings.max_beam_size} (got {request.beam_size})"
        )
    if request.n_best is not None and not 1 <= request.n_best <= request.beam_size:
        refuse(f"n_best must be between 1 and beam_size={request.beam_size} (got {request.n_best})")
    if request.attention and not models[name].attention:
        refuse(
            f"model {name!r} has no attention: {attention_refusal(models[name].translator.ckpt)}"
        )
    return models[name]


def refuse(message: str):
    raise HTTPException(422, message)
