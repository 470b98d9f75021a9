"""What routes need, injected: the services, the settings, the token check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core.config import Settings
from ..errors import ApiError
from ..services import Services

_bearer = HTTPBearer(auto_error=False, description="SWIPEFL_API_TOKEN, when one is set")


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop per request (and a GIL hand-off against the decode thread) for a getattr.


async def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:  # only before the lifespan has started
        raise ApiError("STORE_UNAVAILABLE", "the sidecar is starting", headers={"Retry-After": "1"})
    return services


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Writes and admin endpoints: a bearer token equal to SWIPEFL_API_TOKEN, when it is set."""
    token = settings.token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not hmac.compare_digest(given.encode(), token.encode())
    ):
        raise ApiError(
            "UNAUTHORIZED",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Depends(require_token)
