"""POST /api/v1/predict: a swipe without a word -> top-k candidates and the model version.

Requests normally reach `answer` through `serve.predict_shortcut` (same answers, without
FastAPI's per-request machinery); the route below is what OpenAPI documents and what answers
whatever the shortcut hands on (a body that fails the schema, another content type).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...core.config import Settings
from ...errors import ApiError, model_not_loaded
from ...schemas import PredictRequest, PredictResponse
from ...services import Services
from ..deps import ServicesDep, SettingsDep
from .common import errors

router = APIRouter(prefix="/api/v1", tags=["predict"])

PATH = "/api/v1/predict"


async def answer(
    body: PredictRequest, services: Services, settings: Settings
) -> tuple[dict[str, Any], dict[str, str]]:
    """The response body and headers for a valid request; errors raise ApiError."""
    swipe = services.parser.parse(body.to_contract(), require_word=False)
    served = services.manager.current
    if served is None:
        raise model_not_loaded()
    if swipe.keyboard.language != served.language:
        raise ApiError(
            "INVALID_SWIPE",
            f"the model decodes language {served.language!r}, the keyboard is "
            f"{swipe.keyboard.language!r}",
            reason="UNSUPPORTED_LANGUAGE",
        )
    candidates, used = await services.predictor.predict(swipe, min(body.k, settings.max_k))
    payload = {
        "candidates": [{"word": w, "score": s} for w, s in candidates],
        "model_version": used.version,
    }
    return payload, {"X-Model-Version": used.header}


@router.post(
    PATH.removeprefix("/api/v1"),
    response_model=PredictResponse,
    responses={
        **errors(413, 422, 503),
        200: {
            "headers": {
                "X-Model-Version": {
                    "description": "<run>/<round>[+personal]",
                    "schema": {"type": "string"},
                }
            }
        },
    },
)
async def predict(
    body: PredictRequest, services: ServicesDep, settings: SettingsDep
) -> JSONResponse:
    payload, headers = await answer(body, services, settings)
    return JSONResponse(payload, headers=headers)
