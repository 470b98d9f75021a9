"""What routes need, injected: the services, the settings, the token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from ..core.auth import ApiToken
from ..core.config import Settings
from ..errors import ApiError
from ..services import Services

_bearer = HTTPBearer(
    auto_error=False, description="SWIPEFL_API_TOKEN, else the device's api-token file"
)


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop per request (and a GIL hand-off against the decode thread) for a getattr.


async def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:  # only before the lifespan has started
        raise ApiError("STORE_UNAVAILABLE", "the sidecar is starting", headers={"Retry-After": "1"})
    return services


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def unauthorized() -> ApiError:
    return ApiError(
        "UNAUTHORIZED", "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
    )


async def require_token(request: Request, _: Annotated[object, Depends(_bearer)]) -> None:
    """Predictions, writes and admin endpoints: ``Authorization: Bearer <token>`` (the
    ``_bearer`` dependency only documents the scheme in OpenAPI)."""
    token: ApiToken | None = request.app.state.token
    if token is None:  # only before the lifespan has started
        raise ApiError("STORE_UNAVAILABLE", "the sidecar is starting", headers={"Retry-After": "1"})
    if not token.allows(request.headers.get("authorization")):
        raise unauthorized()


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Depends(require_token)
