"""A request body over the server's limit is refused with 413 before anything parses it."""

from __future__ import annotations

from fastapi.responses import JSONResponse


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
