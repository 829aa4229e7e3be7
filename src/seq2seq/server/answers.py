"""The server's answers: a translation's JSON body, a 503 for a request it cannot take now,
and every other error as one line of JSON."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from seq2seq.server.batcher import QueueFull, Refusal, ShuttingDown
from seq2seq.server.request import TranslateRequest
from seq2seq.server.settings import ServerSettings

ROUTES = "GET /, GET /health, GET /models, POST /translate"


def unavailable(error: Exception, name: str, settings: ServerSettings) -> JSONResponse:
    """A 503 with Retry-After for a request the server cannot take now; a Refusal's own
    status for one beyond a limit found while decoding."""
    if isinstance(error, Refusal):
        return JSONResponse({"error": str(error)}, status_code=error.status)
    if isinstance(error, QueueFull):
        message = f"this client has too many sentences waiting for model {name!r}; try again soon"
        retry = error.retry_after
    elif isinstance(error, ShuttingDown):
        message, retry = "the server is shutting down; try again when it is back", 5
    else:
        message = f"not answered within this server's {settings.request_timeout_s} s; try again"
        retry = 1
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry)})


def translation_body(request: TranslateRequest, name: str, found) -> dict:
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


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail
    if error.status_code == 404:
        message = f"no such path {request.url.path}; this server has {ROUTES}"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; this server has {ROUTES}"
    return JSONResponse({"error": message}, status_code=error.status_code, headers=error.headers)


async def validation_error(request: Request, error: ValidationError) -> JSONResponse:
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
