"""All routers of the sidecar, in one place."""

from __future__ import annotations

from fastapi import APIRouter

from .routes import health, lexicon, model, predict, stats, swipes, train

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(predict.router)
api_router.include_router(swipes.router)
api_router.include_router(stats.router)
api_router.include_router(model.router)
api_router.include_router(train.router)
api_router.include_router(lexicon.router)
