"""The HTTP face: `POST /translate`, `GET /health`, `GET /models` and the web page at `GET /`.

Requests are read and checked (`request`), queued to their model's batcher (`decoding`), and
answered (`answers`). Every refusal is a 4xx with a one-line JSON `{"error": ...}`; a request
the server cannot take now (a full queue, its deadline passed, a shutdown) is a 503.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from seq2seq.server.answers import http_error, translation_body, unavailable, validation_error
from seq2seq.server.batcher import QueueFull, Refusal, ShuttingDown
from seq2seq.server.body_limit import BodyLimit
from seq2seq.server.decoding import HungUp, answer, model_batcher
from seq2seq.server.in_flight import CLIENT_CLOSED, Follow, InFlight
from seq2seq.server.origin import add_origin_rules
from seq2seq.server.registry import ServedModel
from seq2seq.server.request import read_request
from seq2seq.server.settings import ServerSettings

log = logging.getLogger(__name__)


def build_app(
    models: dict[str, ServedModel],
    settings: ServerSettings = ServerSettings(),
    host: str = "127.0.0.1",
):
    batchers = {name: model_batcher(served, settings) for name, served in models.items()}

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
    in_flight = InFlight()
    app.add_middleware(Follow, in_flight=in_flight)  # added last, it sees every request first
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(ValidationError)(validation_error)
    app.state.settings = settings
    app.state.in_flight = in_flight
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
        request, served, decode_settings = await read_request(raw, models, default, settings)
        if settings.log_text:
            log.info(
                "translate with %s: %s", served.name, json.dumps(request.text, ensure_ascii=False)
            )
        key = (decode_settings, next(requests) if request.attention else None)
        client = raw.client.host if raw.client else None  # its share of the queue is its own
        submitted = batchers[served.name].submit(key, request.text, client)
        try:
            found = await answer(submitted, raw.receive, settings.request_timeout_s)
        except HungUp:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it; Follow logs it
        except (QueueFull, TimeoutError, ShuttingDown, Refusal) as error:
            return unavailable(error, served.name, settings)
        except Exception:  # the batcher has logged it
            error = {"error": "decoding failed; the server's log says why"}
            return JSONResponse(error, status_code=500)
        return translation_body(request, served.name, found)

    return app
