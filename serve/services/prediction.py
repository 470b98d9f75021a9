"""The answer to one prediction request, in one place for both ways a request arrives.

``POST /api/v1/predict`` reaches this service through the FastAPI route and, far more often,
through ``serve.predict_shortcut`` (the same answer without FastAPI's per-request machinery).
Here a swipe is parsed, checked against the served model and its language, and decoded by the
``Predictor`` (the decode threads); the caller only turns the result, or the ``ApiError`` raised
here, into a response.
"""

from __future__ import annotations

from typing import Any

from ..errors import ApiError, model_not_loaded
from .model_manager import ModelManager
from .parsing import SwipeParser
from .predictor import Predictor

MODEL_VERSION_HEADER = "X-Model-Version"
PUNCTUATION = ".,;:!?\"'()[]"


def previous_word(text: str | None) -> str | None:
    """The last word of the text before the cursor, as the word-pair table spells it (lower
    case, without the punctuation around it); None when there is none."""
    words = text.split() if text is not None else []
    word = words[-1].strip(PUNCTUATION).lower() if words else ""
    return word or None


class PredictionService:
    """A swipe dict without a word -> the response body and headers (errors raise ApiError)."""

    def __init__(
        self, parser: SwipeParser, manager: ModelManager, predictor: Predictor, *, max_k: int
    ) -> None:
        self.parser = parser
        self.manager = manager
        self.predictor = predictor
        self.max_k = max_k

    async def answer(
        self, swipe_dict: dict[str, Any], k: int, previous: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Top-``k`` candidates (at most ``max_k``) and the version of the model that decoded;
        ``previous``, the word before the cursor, lets the word-pair prior rank them too."""
        swipe = self.parser.parse(swipe_dict, require_word=False)
        served = self.manager.current
        if served is None:
            raise model_not_loaded()
        if swipe.keyboard.language != served.language:
            raise ApiError(
                "INVALID_SWIPE",
                f"the model decodes language {served.language!r}, the keyboard is "
                f"{swipe.keyboard.language!r}",
                reason="UNSUPPORTED_LANGUAGE",
            )
        candidates, used = await self.predictor.predict(
            swipe, min(k, self.max_k), previous_word(previous)
        )
        payload = {
            "candidates": [{"word": w, "score": s} for w, s in candidates],
            "model_version": used.version,
        }
        return payload, {MODEL_VERSION_HEADER: used.header}
