"""GET /api/v1/model (what is served) and POST /api/v1/model/reload (check the release now)."""

from __future__ import annotations

from dataclasses import asdict

from anyio import to_thread
from fastapi import APIRouter

from ...schemas import ModelStatus, ReloadResult
from ...services import Services
from ..deps import ServicesDep, TokenDep
from .common import errors, finite

router = APIRouter(prefix="/api/v1/model", tags=["model"])


def model_status(services: Services) -> ModelStatus:
    m = services.manager
    served = m.current
    return ModelStatus(
        loaded=served is not None,
        version=served.version if served else None,
        metrics=finite(served.metrics) if served else {},
        loaded_at=served.loaded_at if served else None,
        last_reload_at=m.last_reload_at,
        last_check_at=m.last_check_at,
        last_check=asdict(m.last_check) if m.last_check else None,
        last_refused=m.last_refused,
        refused_releases=m.refusals.entries(),
        reloads=m.reloads,
        refused=m.refused,
    )


@router.get("", response_model=ModelStatus)
async def get_model(services: ServicesDep) -> ModelStatus:
    return model_status(services)


@router.post(
    "/reload", response_model=ReloadResult, dependencies=[TokenDep], responses=errors(401, 415)
)
async def reload_model(services: ServicesDep) -> ReloadResult:
    """Check the release pointer now; a refused release is retried too."""
    result = await to_thread.run_sync(services.manager.check, True)
    served = services.manager.current
    return ReloadResult(**asdict(result), model_version=served.version if served else None)
