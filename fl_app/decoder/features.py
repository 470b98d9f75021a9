"""Per-frame trajectory features, computed with the geometry the swipe came with.

A trace is expressed in key units (so keyboards of any size and aspect look alike) and
resampled, uniformly in time (`resample="time"`: so 8 ms and 17 ms touch sampling look alike)
or uniformly along its path (`"path"`: so a slow and a fast hand drawing the same shape look
alike too). Each frame gets its position, its motion, and a soft assignment to every letter key
of *this* keyboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_app.decoder.keyboard import Keyboard

FRAME_MS = 15.0
MIN_FRAMES = 32
MAX_FRAMES = 96
KEY_SIGMA = 0.55  # key units: width of the soft key assignment
PATH_STEP_KU = 0.2  # key units between frames when resampling along the path
RESAMPLE_MODES = ("time", "path")


@dataclass(frozen=True)
class FeatureSpec:
    """What the model's input layer depends on: stored in every checkpoint manifest."""

    alphabet: str
    frame_ms: float = FRAME_MS
    min_frames: int = MIN_FRAMES
    max_frames: int = MAX_FRAMES
    key_sigma: float = KEY_SIGMA
    resample: str = "time"  # RESAMPLE_MODES
    path_step_ku: float = PATH_STEP_KU

    @property
    def n_features(self) -> int:
        # x, y, dx, dy, speed, progress, start flag, end flag + one soft weight per letter
        return 8 + len(self.alphabet)


def other_view(resample: str) -> str:
    """The other way of laying frames over a trace: a second view of the same swipe."""
    return "path" if resample == "time" else "time"


def resample_in_time(points: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(n, 3) points -> (m, 2) positions at uniform times, m within [min_frames, max_frames]."""
    return _resample_along(points[:, :2], points[:, 2] - points[0, 2], spec.frame_ms, spec)


def resample_along_path(xy: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(n, 2) key-unit positions -> (m, 2) positions `path_step_ku` apart along the path (the
    step grows for paths longer than max_frames steps), m within [min_frames, max_frames]."""
    return _resample_along(xy, path_lengths(xy), spec.path_step_ku, spec)


def path_lengths(xy: np.ndarray) -> np.ndarray:
    """Distance travelled up to each point of an (n, 2) path."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])


def frames_for(extent: float, step: float, spec: FeatureSpec) -> int:
    """Frames for a trace `extent` long (ms or key units) resampled every `step`."""
    return int(np.clip(round(extent / step) + 1, spec.min_frames, spec.max_frames))


def _resample_along(xy: np.ndarray, s: np.ndarray, step: float, spec: FeatureSpec) -> np.ndarray:
    """Positions at uniform values of the non-decreasing coordinate `s` (time or distance)."""
    extent = float(s[-1])
    m = frames_for(extent, step, spec)
    if extent <= 0:
        # All points at one instant (or place): spread them evenly over the frames instead.
        s = np.linspace(0.0, 1.0, len(xy))
    else:
        # Make s strictly increasing so interpolation is defined for repeated values.
        s = s + np.arange(len(s)) * 1e-6
    return positions_at(xy, s, np.linspace(0.0, s[-1], m))


def positions_at(xy: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(n, 2) positions of a path whose points sit at coordinates `s` (time or distance,
    non-decreasing) -> (len(grid), 2) positions at the coordinates `grid`, linearly between."""
    return np.stack([np.interp(grid, s, xy[:, 0]), np.interp(grid, s, xy[:, 1])], axis=1)


def resampled_key_units(points: np.ndarray, keyboard: Keyboard, spec: FeatureSpec) -> np.ndarray:
    """(n, 3) raw points -> (frames, 2) key-unit positions, resampled as the spec says."""
    if spec.resample == "path":
        return resample_along_path(keyboard.to_key_units(points[:, :2].astype(float)), spec)
    return keyboard.to_key_units(resample_in_time(points, spec))


def frame_count(points: np.ndarray, keyboard: Keyboard, spec: FeatureSpec) -> int:
    """Frames `swipe_features` makes of this trace."""
    if spec.resample == "path":
        xy = keyboard.to_key_units(points[:, :2].astype(float))
        return frames_for(float(path_lengths(xy)[-1]), spec.path_step_ku, spec)
    return frames_for(float(points[-1, 2] - points[0, 2]), spec.frame_ms, spec)


def swipe_features(points: np.ndarray, keyboard: Keyboard, spec: FeatureSpec) -> np.ndarray:
    """(n, 3) raw points over `keyboard` -> (frames, n_features) float32 features."""
    xy = resampled_key_units(points, keyboard, spec)
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
