"""Pure ASGI middleware: the body-size limit (413) and request metrics + request logs."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response
from .services.metrics import Metrics

log = logging.getLogger("serve.http")

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes | None:
    """The whole request body, or None when the client disconnects first; BodyTooLarge as soon
    as more than ``max_bytes`` have arrived."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app a body already read, then the connection's own."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 PAYLOAD_TOO_LARGE before any parsing.

    A declared Content-Length over the limit is refused at once; otherwise the body is read
    (at most ``max_bytes`` + 1 bytes) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
        try:
            body = await read_body(receive, self.max_bytes)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)
            return
        if body is not None:  # None: the client went away
            await self.app(scope, replay_body(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        err = ApiError("PAYLOAD_TOO_LARGE", f"the body exceeds {self.max_bytes} bytes")
        await error_response(err)(scope, receive, send)


class RequestMetricsMiddleware:
    """Latency histogram per (method, route template, status); a JSON log line per request.

    Routes are labelled by their template (``/api/v1/train/{job_id}``), unmatched paths as
    ``unmatched``: label values never carry request data.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - t0
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            code = status["code"]
            self.metrics.request_latency.labels(scope["method"], template, str(code)).observe(
                elapsed
            )
            if self.access_log or code >= 400:
                level = logging.WARNING if code >= 500 and code != 503 else logging.INFO
                log.log(
                    level,
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": template,
                        "status": code,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
