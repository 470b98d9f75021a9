"""POST /api/v1/predict: a swipe without a word -> top-k candidates and the model version."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...errors import ApiError, model_not_loaded
from ...schemas import PredictRequest, PredictResponse
from ..deps import ServicesDep, SettingsDep
from .common import errors

router = APIRouter(prefix="/api/v1", tags=["predict"])


@router.post(
    "/predict",
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
    return JSONResponse(
        {
            "candidates": [{"word": w, "score": s} for w, s in candidates],
            "model_version": used.version,
        },
        headers={"X-Model-Version": used.header},
    )
