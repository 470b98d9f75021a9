"""POST /api/v1/predict: a swipe without a word -> top-k candidates and the model version.

It needs the token like the writes: its answers come from the personalized model and the
user's own words, which another app could otherwise probe (docs/sidecar.md, "The door").

The answer is ``services.prediction``'s. Requests normally reach it through
``serve.predict_shortcut`` (same answers, without FastAPI's per-request machinery), which labels
its requests with ``ROUTE``; the route below is what OpenAPI documents and what answers
whatever the shortcut hands on (a body that fails the schema, another content type).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ...schemas import PredictRequest, PredictResponse
from ...services.prediction import MODEL_VERSION_HEADER
from ..deps import ServicesDep, TokenDep
from .common import errors

router = APIRouter(prefix="/api/v1", tags=["predict"])

PATH = "/api/v1/predict"


@router.post(
    PATH.removeprefix(router.prefix),
    response_model=PredictResponse,
    dependencies=[TokenDep],
    responses={
        **errors(401, 413, 415, 422, 503),
        200: {
            "headers": {
                MODEL_VERSION_HEADER: {
                    "description": "<run>/<round>[+personal]",
                    "schema": {"type": "string"},
                }
            }
        },
    },
)
async def predict(body: PredictRequest, services: ServicesDep) -> JSONResponse:
    payload, headers = await services.prediction.answer(body.to_contract(), body.k, body.previous)
    return JSONResponse(payload, headers=headers)


# The declared route: the shortcut sets it as ``scope["route"]``, as FastAPI does, so request
# metrics label both ways of answering with the same route template.
ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH)
