"""The swipe record (the project's contract, see docs/formats.md) and its validation.

The store, the sidecar and the decoder all accept swipes through `parse_swipe`, so a bad
swipe gets the same distinct error everywhere.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_app.decoder.errors import (
    DecreasingTimeError,
    DurationTooLongError,
    MissingWordError,
    NonFiniteError,
    OutOfBoundsError,
    SwipeError,
    TooFewPointsError,
    TooManyPointsError,
    WordOutsideAlphabetError,
)
from fl_app.decoder.keyboard import Keyboard, keyboard_from_spec, validate_keyboard

log = logging.getLogger(__name__)

DEFAULT_MAX_POINTS = 2000
MAX_DURATION_MS = 120_000.0  # the longest of 74,295 real swipes took 42 s; two minutes is no swipe


@dataclass
class Swipe:
    """A trace over a keyboard; `points` is (n, 3): x px, y px, t ms from touch-down."""

    points: np.ndarray
    keyboard: Keyboard
    word: str | None = None

    @property
    def duration_ms(self) -> float:
        return float(self.points[-1, 2] - self.points[0, 2])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "points": [{"x": float(x), "y": float(y), "t": float(t)} for x, y, t in self.points],
            "keyboard": self.keyboard.to_spec(),
        }
        if self.word is not None:
            out["word"] = self.word
        return out


def points_array(points: Any) -> np.ndarray:
    """[{x, y, t}, ...] or [[x, y, t], ...] -> float (n, 3) array; shape errors are SwipeErrors."""
    try:
        if points and isinstance(points[0], dict):
            arr = np.array([[p["x"], p["y"], p["t"]] for p in points], dtype=np.float64)
        else:
            arr = np.asarray(points, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise SwipeError("points must be a list of {x, y, t} numbers") from exc
    if arr.ndim != 2 or arr.shape[1] != 3:
        if arr.size == 0:
            return np.zeros((0, 3))
        raise SwipeError("points must be a list of {x, y, t} numbers")
    return arr


def validate_points(points: np.ndarray, keyboard: Keyboard, max_points: int) -> None:
    """Refuse traces no keyboard could produce, over keyboards outside the geometry bounds;
    each failure has its own error class."""
    validate_keyboard(keyboard)
    if len(points) < 2:
        raise TooFewPointsError(f"a swipe needs at least 2 points, got {len(points)}")
    if len(points) > max_points:
        raise TooManyPointsError(f"a swipe may have at most {max_points} points, got {len(points)}")
    if not np.isfinite(points).all():
        raise NonFiniteError("points must be finite numbers")
    with np.errstate(over="ignore"):  # t from -1e308 to 1e308 lasts inf ms: refused below
        steps, duration = np.diff(points[:, 2]), points[-1, 2] - points[0, 2]
    if (steps < 0).any():
        raise DecreasingTimeError("t must be non-decreasing")
    if not duration <= MAX_DURATION_MS:
        raise DurationTooLongError(f"a swipe may last at most {MAX_DURATION_MS:g} ms")
    x, y = points[:, 0], points[:, 1]
    w, h = keyboard.width, keyboard.height
    if (x < -w).any() or (x > 2 * w).any() or (y < -h).any() or (y > 2 * h).any():
        raise OutOfBoundsError("points lie more than one keyboard size outside the keyboard")


def validate_word(word: Any, keyboard: Keyboard) -> str:
    if not isinstance(word, str) or not word:
        raise MissingWordError("a labelled swipe needs a non-empty word")
    if not keyboard.can_type(word):
        raise WordOutsideAlphabetError("word must be lower-case letters of the keyboard's alphabet")
    return word


def contract_swipes(swipes: Iterable[Swipe]) -> list[Swipe]:
    """The stored swipes that today's contract accepts. Rows written by an older version over
    keyboards the contract now refuses (keys 1e-300 px wide, say) make non-finite features;
    they stay in the store but are never trained or evaluated on (the ClientApp's rounds, the
    sidecar's personalization)."""
    usable, refused = [], Counter[str]()
    for swipe in swipes:
        try:
            validate_points(swipe.points, swipe.keyboard, max(2, len(swipe.points)))
            validate_word(swipe.word, swipe.keyboard)
        except SwipeError as exc:
            refused[exc.code] += 1
            continue
        usable.append(swipe)
    if refused:
        log.warning("skipped stored swipes that today's contract refuses: %s", dict(refused))
    return usable


def parse_swipe(
    data: dict[str, Any], *, require_word: bool = False, max_points: int = DEFAULT_MAX_POINTS
) -> Swipe:
    """Validate a swipe dict (the JSON contract) and build a Swipe."""
    if not isinstance(data, dict):
        raise SwipeError("a swipe must be an object")
    keyboard = keyboard_from_spec(data.get("keyboard"))
    points = points_array(data.get("points") or [])
    validate_points(points, keyboard, max_points)
    word = data.get("word")
    if word is not None or require_word:
        word = validate_word(word, keyboard)
    return Swipe(points, keyboard, word)


def make_swipe(
    points: np.ndarray,
    keyboard: Keyboard,
    word: str | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> Swipe:
    """Validate an in-memory trace (the generator's output, say) and build a Swipe."""
    points = np.asarray(points, dtype=np.float64)
    validate_points(points, keyboard, max_points)
    if word is not None:
        validate_word(word, keyboard)
    return Swipe(points, keyboard, word)
