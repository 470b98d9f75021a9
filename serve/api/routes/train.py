"""POST /api/v1/train (start personalization, 202) and GET /api/v1/train/{job_id}."""

from __future__ import annotations

from fastapi import APIRouter

from ...errors import ApiError
from ...schemas import TrainJob, TrainRequest
from ..deps import ServicesDep, TokenDep
from .common import errors, finite

router = APIRouter(prefix="/api/v1/train", tags=["personalization"])


@router.post(
    "",
    status_code=202,
    response_model=TrainJob,
    dependencies=[TokenDep],
    responses=errors(401, 409, 415, 422, 503),
)
def start_training(services: ServicesDep, body: TrainRequest | None = None) -> TrainJob:
    """Fine-tune the release on this device's swipes; swapped in only if it beats the release."""
    body = body or TrainRequest()
    job = services.personalizer.start(epochs=body.epochs, lr=body.lr)
    return TrainJob(**finite(job.to_dict()))


@router.get("/{job_id}", response_model=TrainJob, responses=errors(404))
def get_job(job_id: str, services: ServicesDep) -> TrainJob:
    job = services.personalizer.get(job_id)
    if job is None:
        raise ApiError("NOT_FOUND", "no such personalization job")
    return TrainJob(**finite(job.to_dict()))
