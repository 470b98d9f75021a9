"""POST /api/v1/swipes (labelled swipes, 202 after commit) and DELETE /api/v1/swipes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query

from ...errors import ApiError
from ...schemas import Deleted, SwipeBatch, SwipesAccepted, SwipesBody
from ..deps import ServicesDep, SettingsDep, TokenDep
from .common import errors

router = APIRouter(prefix="/api/v1", tags=["swipes"], dependencies=[TokenDep])


@router.post(
    "/swipes",
    status_code=202,
    response_model=SwipesAccepted,
    responses=errors(401, 409, 413, 422, 503, 507),
)
async def store_swipes(
    body: SwipesBody,
    services: ServicesDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="a retried request with the same key and body returns the same ids and"
            " stores nothing twice; the same key with another body gets 409",
        ),
    ] = None,
) -> SwipesAccepted:
    """One labelled swipe or ``{"swipes": [...]}``; answered once they are committed."""
    batch = isinstance(body, SwipeBatch)
    items = body.swipes if batch else [body]
    if len(items) > settings.max_batch:
        raise ApiError(
            "PAYLOAD_TOO_LARGE",
            f"at most {settings.max_batch} swipes per request",
            reason="BATCH_TOO_LARGE",
        )
    parser = services.parser
    swipes = [
        parser.parse(item.to_contract(), require_word=True, index=i if batch else None)
        for i, item in enumerate(items)
    ]
    ids = await services.ingest.submit(swipes, idempotency_key, batch=batch)
    return SwipesAccepted(ids=ids)


@router.delete("/swipes", response_model=Deleted, responses=errors(401, 422))
def delete_swipes(
    services: ServicesDep,
    older_than: Annotated[
        datetime | None,
        Query(description="delete only swipes stored before this time (ISO 8601); default all"),
    ] = None,
) -> Deleted:
    swipes = services.swipes
    n = swipes.delete_all() if older_than is None else swipes.delete_older_than(older_than)
    return Deleted(deleted=n)
