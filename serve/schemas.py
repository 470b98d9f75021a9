"""Request and response bodies of the sidecar API (the swipe format is docs/formats.md's).

The schemas check types and shapes; what makes a swipe *valid* (enough points, time order,
bounds, the word's alphabet) is checked by ``fl_app.decoder.swipe.parse_swipe``, the same code the
swipe store and the decoder use, and reported as ``INVALID_SWIPE`` with its specific ``reason``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag
from typing_extensions import TypedDict

# -- the swipe format --------------------------------------------------------------------------


class Point(TypedDict):
    """One touch sample. A TypedDict, not a model: a swipe has ~100 of them, and validating
    plain dicts is several times cheaper than building a model object per point."""

    x: Annotated[float, Field(description="px from the keyboard's left edge (may overshoot)")]
    y: Annotated[float, Field(description="px from the keyboard's top edge")]
    t: Annotated[float, Field(description="ms from touch-down, non-decreasing")]


class Key(BaseModel):
    label: str = Field(max_length=16)
    x: float
    y: float
    w: float
    h: float


class KeyboardSpec(BaseModel):
    """A named layout scaled to width x height, or explicit key hitboxes (which win)."""

    layout: str | None = Field(None, max_length=64, examples=["qwerty-en"])
    width: float = Field(examples=[375])
    height: float = Field(examples=[217])
    key_height: float | None = None
    language: str | None = Field(None, max_length=16)
    keys: list[Key] | None = Field(None, max_length=256)


class SwipeBase(BaseModel):
    points: list[Point]
    keyboard: KeyboardSpec

    def to_contract(self) -> dict[str, Any]:
        """The swipe dict of docs/formats.md, as ``parse_swipe`` reads it."""
        return {
            "points": [[p["x"], p["y"], p["t"]] for p in self.points],
            "keyboard": self.keyboard.model_dump(exclude_none=True),
        }


class PredictRequest(SwipeBase):
    k: int = Field(4, ge=1, le=8, description="number of candidates")
    previous: str | None = Field(
        None,
        max_length=256,
        description="the text before the cursor, as the keyboard has committed it (its last "
        "word counts): ranks candidates by how often they follow that word too (a word-pair "
        "prior, where the model's language ships one); absent or unknown: no effect",
        examples=["I want"],
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "points": [{"x": 247.0, "y": 1.0, "t": 0}, {"x": 245.0, "y": 8.0, "t": 29}],
                    "keyboard": {"layout": "qwerty-en", "width": 375, "height": 217},
                    "k": 4,
                    "previous": "I want",
                }
            ]
        }
    )


class SwipeIn(SwipeBase):
    """A labelled swipe: what the user swiped and the word they committed."""

    word: str = Field(max_length=64)

    def to_contract(self) -> dict[str, Any]:
        return {**super().to_contract(), "word": self.word}


class SwipeBatch(BaseModel):
    swipes: list[SwipeIn] = Field(min_length=1)


def _swipes_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "batch" if "swipes" in value else "one"
    return "batch" if isinstance(value, SwipeBatch) else "one"


# POST /api/v1/swipes takes one labelled swipe or {"swipes": [...]}; the discriminator picks
# the branch by the "swipes" key instead of trying both (faster, and clearer errors).
SwipesBody = Annotated[
    Annotated[SwipeIn, Tag("one")] | Annotated[SwipeBatch, Tag("batch")],
    Discriminator(_swipes_kind),
]


# -- answers -----------------------------------------------------------------------------------


class Candidate(BaseModel):
    word: str
    score: float


class ModelVersion(BaseModel):
    run_id: str
    round: int
    sha256: str = Field(description="sha256 of the release's tensors")
    personalized: bool
    personal_sha256: str | None = None
    base: bool = Field(
        default=False, description="the shipped base decoder (no release published yet)"
    )


class PredictResponse(BaseModel):
    candidates: list[Candidate]
    model_version: ModelVersion


class SwipesAccepted(BaseModel):
    ids: list[int]


class Deleted(BaseModel):
    deleted: int


class ErrorBody(BaseModel):
    code: str = Field(description="stable error code, e.g. INVALID_SWIPE")
    message: str
    reason: str | None = Field(None, description="INVALID_SWIPE: the swipe error's own code")
    index: int | None = Field(None, description="which swipe/word of a batch")
    job_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class SwipeCounts(BaseModel):
    total: int
    new_since_training: int
    train: int
    heldout: int
    trained: int = Field(
        description="rows a finished federated round used: the first that max_rows deletes"
    )
    max_rows: int | None = Field(description="SWIPEFL_RETENTION_MAX_ROWS (None: no limit)")


class ModelStatus(BaseModel):
    loaded: bool
    version: ModelVersion | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    loaded_at: float | None = None
    last_reload_at: float | None = None
    last_check_at: float | None = None
    last_check: dict[str, Any] | None = None
    last_refused: dict[str, Any] | None = None
    refused_releases: list[dict[str, Any]] = Field(
        default_factory=list,
        description="releases refused and not retried by the watcher, newest first (kept "
        "across restarts): run_id, round, sha256, reason, message, at",
    )
    reloads: int = 0
    refused: int = 0


class TrainJob(BaseModel):
    id: str
    state: str = Field(description="queued | running | succeeded | failed | cancelled")
    phase: str
    progress: float
    step: int
    total_steps: int
    loss: float | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    base: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class Stats(BaseModel):
    swipes: SwipeCounts
    predictions_served: int
    swipes_stored_since_start: int
    model: ModelStatus
    personalization: TrainJob | None = None
    personal_words: int


class ReloadResult(BaseModel):
    result: str = Field(description="loaded | unchanged | refused | no_release | unavailable")
    message: str
    reason: str | None = None
    model_version: ModelVersion | None = None


class TrainRequest(BaseModel):
    epochs: float | None = Field(None, gt=0, le=50)
    lr: float | None = Field(None, gt=0, le=1)


class WordsRequest(BaseModel):
    words: list[Annotated[str, StringConstraints(min_length=1, max_length=48)]] = Field(
        min_length=1, max_length=1000
    )
    language: str | None = Field(
        None, max_length=16, description="default: the served model's language"
    )
    freq: float | None = Field(None, gt=0, le=1, description="relative frequency (prior)")


class WordsAdded(BaseModel):
    language: str
    added: int
    total: int
    active: bool = Field(description="decodable now (the served model has this language)")


class WordsList(BaseModel):
    words: dict[str, list[str]]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    model_version: ModelVersion | None = None
