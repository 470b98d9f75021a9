"""Keyboard geometry: named layouts scaled to any size, or explicit key hitboxes.

Everything downstream (features, templates, the generator) works in *key units*:
x divided by the median letter-key width, y by the median letter-key height. That makes a
320 px and a 1440 px keyboard, or a flat and a tall one, look alike to the decoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from fl_app.decoder.errors import (
    InvalidKeyboardError,
    KeyboardSizeError,
    KeyOutsideKeyboardError,
    KeyTooLargeError,
    KeyTooSmallError,
    TooManyKeysError,
    UnknownLayoutError,
)

# Geometry bounds of the swipe contract (`validate_keyboard`). Phone, tablet and watch keyboards
# lie well inside them; what lies outside is a mistake or an attack. Together with the points'
# bound (one keyboard size around it) they keep every feature finite: a key is at least 1/64 of
# the keyboard, so a point is at most 128 key units from the origin.
MIN_KEYBOARD_PX = 32.0
MAX_KEYBOARD_PX = 16384.0
MAX_KEYS = 256
MIN_KEY_SHARE = 1.0 / 64  # of the keyboard's width (key width) or height (key height)

# Row strings and the x offset of each row in key widths (phone keyboards stagger rows).
NAMED_LAYOUTS: dict[str, dict[str, Any]] = {
    "qwerty-en": {
        "language": "en",
        "rows": ["qwertyuiop", "asdfghjkl", "zxcvbnm"],
        "offsets": [0.0, 0.5, 1.5],
        "keys_per_row": 10,
    },
    "jcuken-ru": {
        "language": "ru",
        "rows": ["йцукенгшщзх", "фывапролджэ", "ячсмитьбю"],
        "offsets": [0.0, 0.0, 1.0],
        "keys_per_row": 11,
    },
}

LANGUAGE_ALPHABETS: dict[str, str] = {
    "en": "abcdefghijklmnopqrstuvwxyz",
    "ru": "абвгдежзийклмнопрстуфхцчшщыьэюя",
}


@dataclass(frozen=True)
class Key:
    """One key's hitbox in px, relative to the keyboard's top-left corner."""

    label: str
    x: float
    y: float
    w: float
    h: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


@dataclass(frozen=True)
class Keyboard:
    """A keyboard of a given size with its letter keys.

    `alphabet` is the sorted set of letters the keyboard can type; `letter_centres[i]` is the
    centre (px) of `alphabet[i]`.
    """

    width: float
    height: float
    keys: tuple[Key, ...]
    language: str = "en"
    layout: str | None = None
    spec: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def letter_keys(self) -> dict[str, Key]:
        out: dict[str, Key] = {}
        for key in self.keys:
            label = key.label.lower()
            if len(label) == 1 and label.isalpha() and label not in out:
                out[label] = key
        return out

    @cached_property
    def alphabet(self) -> str:
        return "".join(sorted(self.letter_keys))

    @cached_property
    def letter_index(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.alphabet)}

    @cached_property
    def letter_centres(self) -> np.ndarray:
        """(n_letters, 2) key centres in px, in alphabet order."""
        return np.array([self.letter_keys[ch].centre for ch in self.alphabet], dtype=np.float64)

    @cached_property
    def key_width(self) -> float:
        return float(np.median([k.w for k in self.letter_keys.values()]))

    @cached_property
    def key_height(self) -> float:
        return float(np.median([k.h for k in self.letter_keys.values()]))

    @property
    def key_size(self) -> np.ndarray:
        return np.array([self.key_width, self.key_height])

    def to_key_units(self, xy: np.ndarray) -> np.ndarray:
        """Pixels -> key units (x / key width, y / key height)."""
        return np.asarray(xy, dtype=np.float64)[..., :2] / self.key_size

    @cached_property
    def letter_centres_ku(self) -> np.ndarray:
        return self.to_key_units(self.letter_centres)

    def word_centres(self, word: str) -> np.ndarray:
        """Key centres (px) of a word's letters, in order."""
        idx = self.letter_index
        return self.letter_centres[[idx[ch] for ch in word]]

    def can_type(self, word: str) -> bool:
        return bool(word) and all(ch in self.letter_index for ch in word)

    def nearest_letters(self, xy: np.ndarray) -> str:
        """The letter whose key centre is nearest each point (key-unit distance)."""
        pts = self.to_key_units(np.atleast_2d(xy))
        d = ((pts[:, None, :] - self.letter_centres_ku[None, :, :]) ** 2).sum(-1)
        return "".join(self.alphabet[i] for i in d.argmin(1))

    @cached_property
    def geometry_id(self) -> str:
        """A short hash of the geometry: caches (templates, features) key on it."""
        blob = json.dumps(
            [self.width, self.height, [(k.label, k.x, k.y, k.w, k.h) for k in self.keys]],
            sort_keys=True,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @cached_property
    def layout_key(self) -> str:
        """Identifies the key arrangement in key units: named layouts of any size share one."""
        blob = self.alphabet + np.round(self.letter_centres_ku, 3).tobytes().hex()
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def to_spec(self) -> dict[str, Any]:
        """The JSON form this keyboard was built from (what the store and API keep)."""
        return dict(self.spec)

    @cached_property
    def geometry_error(self) -> InvalidKeyboardError | None:
        """Why this keyboard is outside the contract's bounds (None: it is inside); computed
        once per keyboard, so validating every swipe of a cached keyboard costs nothing."""
        return _geometry_error(self)


def validate_keyboard(keyboard: Keyboard) -> None:
    """Refuse geometry outside the contract's bounds, each problem with its own error.

    Building a keyboard (`keyboard_from_spec`) does not judge it, so rows stored by an older
    version still load; every new swipe is judged here (`swipe.validate_points` calls it).
    """
    if keyboard.geometry_error is not None:
        raise keyboard.geometry_error


def _geometry_error(kb: Keyboard) -> InvalidKeyboardError | None:
    width, height = kb.width, kb.height
    for name, size in (("width", width), ("height", height)):
        if not MIN_KEYBOARD_PX <= size <= MAX_KEYBOARD_PX:
            return KeyboardSizeError(
                f"keyboard {name} {size:g} px is outside [{MIN_KEYBOARD_PX:g}, "
                f"{MAX_KEYBOARD_PX:g}] px"
            )
    if len(kb.keys) > MAX_KEYS:
        return TooManyKeysError(f"a keyboard may have at most {MAX_KEYS} keys, got {len(kb.keys)}")
    for key in kb.keys:
        if key.w < width * MIN_KEY_SHARE or key.h < height * MIN_KEY_SHARE:
            return KeyTooSmallError(
                f"key {key.label!r} ({key.w:g} x {key.h:g} px) is smaller than 1/"
                f"{round(1 / MIN_KEY_SHARE)} of the keyboard's width or height"
            )
        if key.w > width or key.h > height:
            return KeyTooLargeError(
                f"key {key.label!r} ({key.w:g} x {key.h:g} px) is larger than the keyboard "
                f"({width:g} x {height:g} px)"
            )
        cx, cy = key.centre
        if not (0.0 <= cx <= width and 0.0 <= cy <= height):
            return KeyOutsideKeyboardError(
                f"key {key.label!r} has its centre ({cx:g}, {cy:g}) off the keyboard "
                f"({width:g} x {height:g} px)"
            )
    return None


def named_keyboard(
    layout: str, width: float, height: float, key_height: float | None = None
) -> Keyboard:
    """A named layout scaled to width x height px.

    Letter keys are width / keys_per_row wide; the letter rows sit at the top, each
    `key_height` tall (default height / 4: the fourth row is the space-bar row).
    """
    if layout not in NAMED_LAYOUTS:
        raise UnknownLayoutError(f"unknown layout {layout!r}; known: {sorted(NAMED_LAYOUTS)}")
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise InvalidKeyboardError("keyboard width and height must be positive numbers")
    spec_def = NAMED_LAYOUTS[layout]
    kw = width / spec_def["keys_per_row"]
    kh = height / 4.0 if key_height is None else float(key_height)
    if not (np.isfinite(kh) and kh > 0):
        raise InvalidKeyboardError("key_height must be a positive number")
    keys = []
    for row_i, (row, off) in enumerate(zip(spec_def["rows"], spec_def["offsets"])):
        for col, ch in enumerate(row):
            keys.append(Key(ch, (off + col) * kw, row_i * kh, kw, kh))
    spec: dict[str, Any] = {"layout": layout, "width": width, "height": height}
    if key_height is not None:
        spec["key_height"] = key_height
    return Keyboard(
        float(width), float(height), tuple(keys), spec_def["language"], layout, spec=spec
    )


def keyboard_from_spec(spec: dict[str, Any]) -> Keyboard:
    """Build a keyboard from its JSON form: a named layout or explicit key hitboxes.

    Malformed specs are refused; geometry bounds are the swipe contract's (`validate_keyboard`).
    """
    if not isinstance(spec, dict):
        raise InvalidKeyboardError("keyboard must be an object")
    try:
        width, height = float(spec["width"]), float(spec["height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidKeyboardError("keyboard needs numeric width and height") from exc
    if spec.get("keys") is not None:
        return _explicit_keyboard(spec, width, height)
    layout = spec.get("layout")
    if not isinstance(layout, str):
        raise InvalidKeyboardError("keyboard needs a layout name or explicit keys")
    return named_keyboard(layout, width, height, spec.get("key_height"))


def _explicit_keyboard(spec: dict[str, Any], width: float, height: float) -> Keyboard:
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise InvalidKeyboardError("keyboard width and height must be positive numbers")
    language = spec.get("language", "en")
    if language not in LANGUAGE_ALPHABETS:
        raise UnknownLayoutError(f"unknown keyboard language {language!r}")
    keys = []
    for raw in spec["keys"]:
        try:
            key = Key(
                str(raw["label"]),
                float(raw["x"]),
                float(raw["y"]),
                float(raw["w"]),
                float(raw["h"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidKeyboardError("each key needs label, x, y, w, h") from exc
        if not all(np.isfinite([key.x, key.y, key.w, key.h])) or key.w <= 0 or key.h <= 0:
            raise InvalidKeyboardError(f"key {key.label!r} has a bad hitbox")
        keys.append(key)
    kb = Keyboard(width, height, tuple(keys), language, None, spec=dict(spec))
    if len(kb.letter_keys) < 2:
        raise InvalidKeyboardError("explicit keyboard has fewer than two letter keys")
    return kb
