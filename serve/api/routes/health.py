"""Liveness, readiness and Prometheus metrics (unversioned paths, as probes expect)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...errors import model_not_loaded
from ...schemas import Health, Ready
from ..deps import ServicesDep
from .common import errors

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses=errors(503))
async def ready(services: ServicesDep) -> Ready:
    """Ready: a model is loaded (503 MODEL_NOT_LOADED otherwise)."""
    served = services.manager.current
    if served is None:
        raise model_not_loaded()
    return Ready(ready=True, model_version=served.version)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
