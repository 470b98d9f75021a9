"""Errors with stable codes: the store raises them, the sidecar maps them to HTTP 4xx."""

from __future__ import annotations


class SwipeError(ValueError):
    """A swipe (or its keyboard) that cannot be stored or decoded."""

    code = "INVALID_SWIPE"


class InvalidKeyboardError(SwipeError):
    code = "INVALID_KEYBOARD"


class UnknownLayoutError(SwipeError):
    code = "UNKNOWN_LAYOUT"


class NonFiniteError(SwipeError):
    code = "NON_FINITE"


class TooFewPointsError(SwipeError):
    code = "TOO_FEW_POINTS"


class TooManyPointsError(SwipeError):
    code = "TOO_MANY_POINTS"


class DecreasingTimeError(SwipeError):
    code = "DECREASING_TIME"


class OutOfBoundsError(SwipeError):
    code = "OUT_OF_BOUNDS"


class WordOutsideAlphabetError(SwipeError):
    code = "WORD_OUTSIDE_ALPHABET"


class MissingWordError(SwipeError):
    code = "MISSING_WORD"
