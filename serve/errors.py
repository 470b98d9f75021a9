"""API errors: every error answer is JSON ``{"code", "message"}`` with a stable code.

Routes raise ``ApiError`` (or one of the helpers below); the handlers installed by
``install_error_handlers`` also turn FastAPI's own errors (schema validation, unknown routes,
wrong methods) and anything unexpected into the same shape. Messages never echo typed words
or traces back into the logs.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fl_app.decoder.errors import SwipeError

log = logging.getLogger("serve.errors")

# code -> HTTP status, the table docs/sidecar.md documents.
ERROR_STATUS: dict[str, int] = {
    "INVALID_REQUEST": 422,
    "INVALID_SWIPE": 422,
    "INVALID_WORD": 422,
    "UNAUTHORIZED": 401,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "TRAINING_IN_PROGRESS": 409,
    "NOT_ENOUGH_SWIPES": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "HOST_NOT_ALLOWED": 421,
    "MODEL_NOT_LOADED": 503,
    "OVERLOADED": 503,
    "STORE_UNAVAILABLE": 503,
    "STORE_FULL": 507,
    "INTERNAL": 500,
}


class ApiError(Exception):
    """An error answer: status from ``ERROR_STATUS[code]``; extra fields join the body."""

    def __init__(
        self, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERROR_STATUS[code]
        self.message = message
        self.headers = headers
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


def invalid_swipe(exc: SwipeError) -> ApiError:
    """422 INVALID_SWIPE; ``reason`` is the SwipeError's own code (TOO_FEW_POINTS, ...)."""
    return ApiError("INVALID_SWIPE", str(exc), reason=exc.code, index=getattr(exc, "index", None))


def model_not_loaded() -> ApiError:
    return ApiError("MODEL_NOT_LOADED", "no model is loaded yet", headers={"Retry-After": "5"})


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


_HTTP_CODES = {
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Keep loc/msg/type only: pydantic's `input` would echo the request body back.
    out = []
    for err in exc.errors()[:20]:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if first["loc"][:1] == ["body"] else first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        return error_response(ApiError("INVALID_REQUEST", message, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        code = _HTTP_CODES.get(status)
        if code is None:
            # FastAPI's 400 (a body it cannot decode) joins the other unreadable bodies: 422.
            code = "INVALID_REQUEST" if status < 500 else "INTERNAL"
            status = 422 if status == 400 else status
        body = {"code": code, "message": str(exc.detail)}
        return JSONResponse(body, status_code=status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request.url.path, exc)


def internal_error(path: str, exc: Exception) -> JSONResponse:
    """500 INTERNAL for a bug, logged with type and location only: exception messages may
    carry request data."""
    log.error("unhandled error", extra={"route": path, "error_type": type(exc).__name__})
    return error_response(ApiError("INTERNAL", "internal error"))
