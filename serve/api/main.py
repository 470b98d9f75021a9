"""All routers of the sidecar, in one place.

Every route may answer 421 HOST_NOT_ALLOWED and every state-changing one 415
UNSUPPORTED_MEDIA_TYPE (``serve.guards``, before routing): documented here for OpenAPI.
"""

from __future__ import annotations

from fastapi import APIRouter

from .routes import demo, health, lexicon, model, predict, stats, swipes, train
from .routes.common import errors

api_router = APIRouter(responses=errors(421))
api_router.include_router(health.router)
api_router.include_router(predict.router)
api_router.include_router(swipes.router, responses=errors(415))
api_router.include_router(stats.router)
api_router.include_router(model.router)
api_router.include_router(train.router)
api_router.include_router(lexicon.router)
api_router.include_router(demo.router)
