"""GET /api/v1/stats: counts, the model and its metrics, reloads, the personalization job."""

from __future__ import annotations

from fastapi import APIRouter

from ...schemas import Stats, SwipeCounts
from ..deps import ServicesDep
from .common import finite
from .model import model_status

router = APIRouter(prefix="/api/v1", tags=["stats"])


@router.get("/stats", response_model=Stats)
def stats(services: ServicesDep) -> Stats:
    counts = services.swipes.stats()
    job = services.personalizer.latest()
    return Stats(
        swipes=SwipeCounts.model_validate(counts),
        predictions_served=services.predictor.served,
        swipes_stored_since_start=services.ingest.stored,
        model=model_status(services),
        personalization=finite(job.to_dict()) if job else None,
        personal_words=services.words.count(),
    )
