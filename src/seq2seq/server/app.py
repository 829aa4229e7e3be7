"""The HTTP face: `POST /translate`, `GET /health`, `GET /models` and the web page at `GET /`.

Requests are parsed and validated here (pydantic types, then the server's limits), queued to
their model's batcher, and answered. Every refusal is a 4xx with a one-line JSON `{"error": ...}`;
a request the server cannot take now (a full queue, its deadline passed, a shutdown) is a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from importlib import resources

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from seq2seq.analysis.attention_maps import attention_maps
from seq2seq.decode import DecodeSettings, checked_settings
from seq2seq.errors import Seq2SeqError
from seq2seq.server.batcher import Batcher, QueueFull, Refusal, ShuttingDown
from seq2seq.server.origin import add_origin_rules
from seq2seq.server.registry import ServedModel
from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)

ROUTES = "GET /, GET /health, GET /models, POST /translate"
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


class HungUp(Exception):
    """The client closed its connection before its answer was ready."""


def build_app(
    models: dict[str, ServedModel],
    settings: ServerSettings = ServerSettings(),
    host: str = "127.0.0.1",
):
    batchers = {name: _batcher(served, settings) for name, served in models.items()}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    # No /docs, whose page loads its scripts from a CDN, nor /openapi.json: the docs describe
    # the API. No trailing-slash redirects, whose Location would repeat the client's Host.
    app = FastAPI(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_origin_rules(app, host, settings)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(ValidationError)(_validation_error)
    app.state.settings = settings
    app.state.abort = lambda: [batcher.abort() for batcher in batchers.values()]
    page = resources.files("seq2seq.server").joinpath("index.html").read_text(encoding="utf-8")
    default = next(iter(models))
    requests = itertools.count()  # tells attention requests apart: each is decoded alone

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict:
        counts = {"batches": 0, "sentences": 0, "queued": 0, "refused": 0}
        for batcher in batchers.values():
            for name in counts:
                counts[name] += getattr(batcher, name)
        return {"status": "ok", **counts}

    @app.get("/models")
    async def list_models() -> dict:
        return {
            "models": [model.describe() for model in models.values()],
            "default": default,
            "limits": settings.limits(),
        }

    @app.post("/translate")
    async def translate(raw: Request):
        _require_json(raw)
        body = await raw.body()
        request = TranslateRequest.model_validate_json(body)
        _refuse_duplicate_keys(body)
        served = _check(request, models, default, settings)
        decode_settings = _decode_settings(request)
        if settings.log_text:
            log.info(
                "translate with %s: %s", served.name, json.dumps(request.text, ensure_ascii=False)
            )
        key = (decode_settings, next(requests) if request.attention else None)
        submitted = batchers[served.name].submit(key, request.text)
        try:
            found = await _answer(submitted, raw.receive, settings.request_timeout_s)
        except HungUp:
            return Response(status_code=499)  # nobody reads it; the access log says so
        except (QueueFull, TimeoutError, ShuttingDown, Refusal) as error:
            return _unavailable(error, served.name, settings)
        except Exception:  # the batcher has logged it
            error = {"error": "decoding failed; the server's log says why"}
            return JSONResponse(error, status_code=500)
        return _body(request, served.name, found)

    return app


def _batcher(served: ServedModel, settings: ServerSettings) -> Batcher:
    def decode(key: tuple[DecodeSettings, int | None], lines: list[str]):
        """Per line: the n-best list, whether the line was cut to the model's length limit,
        and the best translation's attention map when asked for."""
        decode_settings, attention = key
        translator = served.decoder(decode_settings)
        limit = translator.ckpt.config.data.max_length
        lengths = [len(t) for t in translator.src_tokenizer.tokenize_many(lines)]
        nbest = translator.nbest(lines)
        truncated = [length > limit for length in lengths]
        if attention is None:
            return list(zip(nbest, truncated, [None] * len(lines), strict=True))
        # A map has a row per output token (and <eos>) and a column per source token (and
        # <eos>): counted before any is drawn, so an oversized request costs no memory.
        cells = sum(
            (min(length, limit) + 1) * (len(hyps[0][1].tokens) + 1)
            for length, hyps in zip(lengths, nbest, strict=True)
            if length
        )
        if cells > settings.max_attention_cells:
            raise Refusal(
                413,
                f"the attention maps would hold {cells} weights; this server sends at most "
                f"{settings.max_attention_cells} in one response: ask for fewer or shorter "
                f"sentences, or without attention",
            )
        maps = attention_maps(translator, lines, [hyps[0] for hyps in nbest])
        return list(zip(nbest, truncated, maps, strict=True))

    return Batcher(
        decode,
        name=served.name,
        max_sentences=settings.max_batch_sentences,
        max_wait=settings.max_wait_ms / 1000,
        max_queued=settings.max_queue_sentences,
    )


async def _answer(submitted, receive, timeout: float):
    """The batcher's results, unless the client hangs up (HungUp) or `timeout` seconds pass
    (TimeoutError) first; either way the request is withdrawn from the queue."""

    async def hang_up():
        while (await receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(submitted), asyncio.ensure_future(hang_up())
    try:
        done, _ = await asyncio.wait(
            {work, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (work, watch):
            task.cancel()
    if work in done:
        return work.result()
    if watch in done:
        raise HungUp()
    raise TimeoutError()


def _unavailable(error: Exception, name: str, settings: ServerSettings) -> JSONResponse:
    if isinstance(error, Refusal):
        return JSONResponse({"error": str(error)}, status_code=error.status)
    if isinstance(error, QueueFull):
        message = f"model {name!r} has too many sentences waiting; try again in a moment"
        retry = error.retry_after
    elif isinstance(error, ShuttingDown):
        message, retry = "the server is shutting down; try again when it is back", 5
    else:
        message = f"not answered within this server's {settings.request_timeout_s} s; try again"
        retry = 1
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry)})


def _body(request: TranslateRequest, name: str, found) -> dict:
    body: dict = {"model": name, "translations": [hyps[0][0] for hyps, _, _ in found]}
    truncated = [i for i, (_, cut, _) in enumerate(found) if cut]
    if truncated:
        body["truncated"] = truncated
    if request.n_best is not None:
        body["nbest"] = [
            [{"translation": t, "log_prob": h.log_prob, "score": h.score} for t, h in hyps]
            for hyps, _, _ in found
        ]
    if request.attention:
        body["attention"] = [
            {
                "source_tokens": found_map.source_tokens,
                "target_tokens": found_map.target_tokens,
                "weights": found_map.weights,
            }
            for _, _, found_map in found
        ]
    return body


def _require_json(raw: Request) -> None:
    """A browser sends a cross-site `text/plain` or form POST without asking first; a JSON one
    only after a CORS preflight, which this server answers only for --cors-origin."""
    kind = raw.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(
            415,
            f"the body must be sent as Content-Type: application/json (got {kind or 'none'})",
        )


def _refuse_duplicate_keys(body: bytes) -> None:
    def pairs(items):
        keys = [key for key, _ in items]
        for key in keys:
            if keys.count(key) > 1:
                _refuse(f"the key {key!r} appears twice in one object; give each key once")
        return dict(items)

    json.loads(body, object_pairs_hook=pairs)


def _decode_settings(request: TranslateRequest) -> DecodeSettings:
    try:
        return checked_settings(
            FIELDS,
            beam_size=request.beam_size,
            n_best=request.n_best or 1,
            min_length=request.min_length,
            max_length=request.max_length,
            alpha=request.alpha,
        )
    except Seq2SeqError as error:
        _refuse(str(error))


def _check(
    request: TranslateRequest,
    models: dict[str, ServedModel],
    default: str,
    settings: ServerSettings,
) -> ServedModel:
    """The model asked for, once the request is within every limit; else a 422 naming it."""
    name = default if request.model is None else request.model
    if name not in models:
        _refuse(f"unknown model {name!r}; this server has {', '.join(map(repr, models))}")
    if len(request.text) > settings.max_sentences:
        _refuse(
            f"text has {len(request.text)} sentences; this server takes at most "
            f"{settings.max_sentences} per request"
        )
    for i, line in enumerate(request.text):
        if len(line) > settings.max_characters:
            _refuse(
                f"text[{i}] has {len(line)} characters; this server takes at most "
                f"{settings.max_characters} per sentence"
            )
    if not 1 <= request.beam_size <= settings.max_beam_size:
        _refuse(
            f"beam_size must be between 1 and {settings.max_beam_size} (got {request.beam_size})"
        )
    if request.n_best is not None and not 1 <= request.n_best <= request.beam_size:
        _refuse(
            f"n_best must be between 1 and beam_size={request.beam_size} (got {request.n_best})"
        )
    if request.attention and not models[name].attention:
        _refuse(
            f"model {name!r} has no attention; ask for attention only from one model of "
            f"model.type=attention or transformer, not an lstm or an ensemble"
        )
    return models[name]


def _refuse(message: str):
    raise HTTPException(422, message)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail
    if error.status_code == 404:
        message = f"no such path {request.url.path}; this server has {ROUTES}"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; this server has {ROUTES}"
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: ValidationError) -> JSONResponse:
    """One line, without echoing the input back: 400 for a body that is not JSON at all,
    422 for JSON of the wrong shape."""
    problems = error.errors(include_input=False, include_url=False)
    if problems[0]["type"] == "json_invalid":
        reason = problems[0]["ctx"]["error"]
        return JSONResponse({"error": f"the body is not valid JSON: {reason}"}, status_code=400)
    lines = []
    for problem in problems:
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]
        ).lstrip(".")
        lines.append(f"{where or 'the body'}: {problem['msg']}")
    return JSONResponse({"error": "; ".join(lines)}, status_code=422)


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is refused with 413 before anything parses it,
    whether its Content-Length says so or its chunks add up to it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        error = {"error": f"the request body is over this server's {self.max_bytes} bytes"}
        # The rest of the body is not read: the connection closes after the answer (lingering,
        # so that the client still reads the 413 while it sends).
        response = JSONResponse(error, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)
