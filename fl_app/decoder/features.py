"""Per-frame trajectory features, computed with the geometry the swipe came with.

A trace is resampled uniformly in time (so 8 ms and 17 ms touch sampling look alike), then
expressed in key units (so keyboards of any size and aspect look alike). Each frame gets its
position, its motion, and a soft assignment to every letter key of *this* keyboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_app.decoder.keyboard import Keyboard

FRAME_MS = 15.0
MIN_FRAMES = 32
MAX_FRAMES = 96
KEY_SIGMA = 0.55  # key units: width of the soft key assignment


@dataclass(frozen=True)
class FeatureSpec:
    """What the model's input layer depends on: stored in every checkpoint manifest."""

    alphabet: str
    frame_ms: float = FRAME_MS
    min_frames: int = MIN_FRAMES
    max_frames: int = MAX_FRAMES
    key_sigma: float = KEY_SIGMA

    @property
    def n_features(self) -> int:
        # x, y, dx, dy, speed, progress, start flag, end flag + one soft weight per letter
        return 8 + len(self.alphabet)


def resample_in_time(points: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(n, 3) points -> (m, 2) positions at uniform times, m within [min_frames, max_frames]."""
    t = points[:, 2] - points[0, 2]
    duration = float(t[-1])
    m = int(np.clip(round(duration / spec.frame_ms) + 1, spec.min_frames, spec.max_frames))
    if duration <= 0:
        # All points at one instant: spread them evenly over the frames instead.
        t = np.linspace(0.0, 1.0, len(points))
        duration = 1.0
    else:
        # Make t strictly increasing so interpolation is defined for repeated timestamps.
        t = t + np.arange(len(t)) * 1e-6
    grid = np.linspace(0.0, t[-1], m)
    return np.stack([np.interp(grid, t, points[:, 0]), np.interp(grid, t, points[:, 1])], axis=1)


def swipe_features(points: np.ndarray, keyboard: Keyboard, spec: FeatureSpec) -> np.ndarray:
    """(n, 3) raw points over `keyboard` -> (frames, n_features) float32 features."""
    xy = keyboard.to_key_units(resample_in_time(points, spec))
    m = len(xy)
    d = np.diff(xy, axis=0, prepend=xy[:1])
    speed = np.linalg.norm(d, axis=1, keepdims=True)
    progress = np.linspace(0.0, 1.0, m)[:, None]
    flags = np.zeros((m, 2))
    flags[0, 0] = 1.0
    flags[-1, 1] = 1.0
    centres = _alphabet_centres(keyboard, spec.alphabet)
    dx = xy[:, 0, None] - centres[None, :, 0]  # per axis: a sum over a length-2 axis is slow
    dy = xy[:, 1, None] - centres[None, :, 1]
    dist2 = dx * dx + dy * dy
    soft = np.exp(-dist2 / (2 * spec.key_sigma**2))
    # Positions are centred on the keyboard's letter area so offsets do not dominate.
    centre = centres.mean(0)
    feats = np.concatenate(
        [(xy - centre) / 3.0, d * 4.0, speed * 4.0, progress, flags, soft], axis=1
    )
    return feats.astype(np.float32)


def _alphabet_centres(keyboard: Keyboard, alphabet: str) -> np.ndarray:
    """Key-unit centres in the model's alphabet order; letters the keyboard lacks sit far away."""
    if keyboard.alphabet == alphabet:
        return keyboard.letter_centres_ku
    out = np.full((len(alphabet), 2), 1e3)
    idx = keyboard.letter_index
    for i, ch in enumerate(alphabet):
        if ch in idx:
            out[i] = keyboard.letter_centres_ku[idx[ch]]
    return out


def collapse_repeats(word: str) -> str:
    """'hello' -> 'helo': a swipe cannot show a doubled letter, so labels drop repeats."""
    return "".join(ch for i, ch in enumerate(word) if i == 0 or ch != word[i - 1])


def encode_word(word: str, alphabet: str) -> list[int]:
    """CTC target: indices 1..len(alphabet) of the collapsed word (0 is the blank)."""
    idx = {ch: i + 1 for i, ch in enumerate(alphabet)}
    return [idx[ch] for ch in collapse_repeats(word)]
