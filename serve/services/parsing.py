"""Swipes from request bodies, validated by fl_app's own checks, with keyboards cached.

Validation is ``fl_app.decoder.swipe``'s (``points_array``, ``validate_points``, ``validate_word``,
``keyboard_from_spec``: what ``parse_swipe`` runs), so a bad swipe gets the same specific
SwipeError code here as in the store. Keyboards are cached by their JSON spec: a keyboard sends
the same geometry with every swipe, and a reused ``Keyboard`` keeps its computed properties
(key centres, layout key, geometry id) that features, templates and the store use.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from fl_app.decoder.errors import SwipeError
from fl_app.decoder.keyboard import Keyboard, keyboard_from_spec
from fl_app.decoder.swipe import Swipe, points_array, validate_points, validate_word

from ..errors import ApiError, invalid_swipe

KEYBOARD_CACHE = 64


class SwipeParser:
    """Used on the event loop only (no locking)."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self._keyboards: OrderedDict[str, Keyboard] = OrderedDict()

    def keyboard(self, spec: dict[str, Any]) -> Keyboard:
        if spec.get("keys") is None:  # a named layout: a cheap key
            key = repr(sorted(spec.items()))
        else:
            key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        kb = self._keyboards.get(key)
        if kb is None:
            kb = keyboard_from_spec(spec)  # raises a SwipeError subclass: not cached
            self._keyboards[key] = kb
            if len(self._keyboards) > KEYBOARD_CACHE:
                self._keyboards.popitem(last=False)
        return kb

    def parse(self, data: dict[str, Any], *, require_word: bool, index: int | None = None) -> Swipe:
        """The contract dict -> Swipe; errors become 422 INVALID_SWIPE with the SwipeError code."""
        try:
            keyboard = self.keyboard(data["keyboard"])
            points = points_array(data["points"])
            validate_points(points, keyboard, self.max_points)
            word = data.get("word")
            if word is not None or require_word:
                word = validate_word(word, keyboard)
            return Swipe(points, keyboard, word)
        except SwipeError as exc:
            if index is not None:
                exc.index = index  # type: ignore[attr-defined]
                exc.args = (f"swipes[{index}]: {exc}",)
            raise invalid_swipe(exc) from None
        except (ValueError, TypeError, OverflowError, KeyError):
            raise ApiError(
                "INVALID_SWIPE", "the swipe cannot be read", reason="INVALID_SWIPE", index=index
            ) from None
