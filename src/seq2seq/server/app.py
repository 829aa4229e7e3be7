"""The HTTP face: `POST /translate`, `GET /health`, `GET /models` and the web page at `GET /`.

Requests are parsed and validated here (pydantic types, then the server's limits), queued to
the batcher, and answered. Every refusal is a 4xx with a one-line JSON `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from importlib import resources

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from seq2seq.analysis.attention_maps import attention_maps
from seq2seq.decode import DecodeSettings
from seq2seq.server.batcher import Batcher
from seq2seq.server.registry import ServedModel
from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)

ROUTES = "GET /, GET /health, GET /models, POST /translate"


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: list[str]
    beam_size: int = 5
    n_best: int | None = None  # given: the n-best lists come back too
    model: str | None = None  # default: the first model
    attention: bool = False


def build_app(models: dict[str, ServedModel], settings: ServerSettings = ServerSettings()):
    def decode(key: tuple[str, DecodeSettings, bool], lines: list[str]):
        """Per line, the n-best list and, when asked for, the best translation's attention."""
        name, decode_settings, attention = key
        translator = models[name].decoder(decode_settings)
        nbest = translator.nbest(lines)
        if not attention:
            return [(hypotheses, None) for hypotheses in nbest]
        best = [hypotheses[0] for hypotheses in nbest]
        return list(zip(nbest, attention_maps(translator, lines, best), strict=True))

    batcher = Batcher(
        decode, max_sentences=settings.max_batch_sentences, max_wait=settings.max_wait_ms / 1000
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    # No /docs, whose page loads its scripts from a CDN, nor /openapi.json: the README is the
    # API's description.
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(ValidationError)(_validation_error)
    page = resources.files("seq2seq.server").joinpath("index.html").read_text(encoding="utf-8")
    default = next(iter(models))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "batches": batcher.batches, "sentences": batcher.sentences}

    @app.get("/models")
    async def list_models() -> dict:
        return {
            "models": [model.describe() for model in models.values()],
            "default": default,
            "limits": settings.limits(),
        }

    @app.post("/translate")
    async def translate(raw: Request):
        # Parsed here rather than by FastAPI, which reads JSON only when the Content-Type says
        # so: `curl -d` sends a form type, and a body is JSON here whatever its type claims.
        request = TranslateRequest.model_validate_json(await raw.body())
        served = _check(request, models, default, settings)
        n_best = request.n_best or 1
        decode_settings = DecodeSettings(beam_size=request.beam_size, n_best=n_best)
        if settings.log_text:
            log.info(
                "translate with %s: %s", served.name, json.dumps(request.text, ensure_ascii=False)
            )
        key = (served.name, decode_settings, request.attention)
        try:
            found = await batcher.submit(key, request.text)
        except Exception:  # the batcher has logged it
            error = {"error": "decoding failed; the server's log says why"}
            return JSONResponse(error, status_code=500)
        nbest = [hypotheses for hypotheses, _ in found]
        body: dict = {"model": served.name, "translations": [h[0][0] for h in nbest]}
        if request.n_best is not None:
            body["nbest"] = [
                [{"translation": t, "log_prob": h.log_prob, "score": h.score} for t, h in hyps]
                for hyps in nbest
            ]
        if request.attention:
            body["attention"] = [
                {
                    "source_tokens": found_map.source_tokens,
                    "target_tokens": found_map.target_tokens,
                    "weights": found_map.weights,
                }
                for _, found_map in found
            ]
        return body

    return app


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
        await JSONResponse(error, status_code=413)(scope, receive, send)
