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


class DurationTooLongError(SwipeError):
    code = "DURATION_TOO_LONG"


# Keyboard geometry bounds (`keyboard.validate_keyboard`): keyboards whose features would not
# be finite, or that no phone or tablet has. Subclasses of InvalidKeyboardError, so a caller
# that handles a malformed keyboard handles these too; each has its own code.


class KeyboardSizeError(InvalidKeyboardError):
    code = "KEYBOARD_SIZE_OUT_OF_RANGE"


class TooManyKeysError(InvalidKeyboardError):
    code = "TOO_MANY_KEYS"


class KeyTooSmallError(InvalidKeyboardError):
    code = "KEY_TOO_SMALL"


class KeyTooLargeError(InvalidKeyboardError):
    code = "KEY_TOO_LARGE"


class KeyOutsideKeyboardError(InvalidKeyboardError):
    code = "KEY_OUTSIDE_KEYBOARD"
