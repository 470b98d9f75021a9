"""Trace augmentation: the same word swiped a little differently, for training on few real
swipes without learning their exact shapes.

Each transform is something a different person, phone or moment would change: where on the key
the finger lands (a shift), how large and how slanted the gesture is drawn (scale, shear, a
small rotation), hand tremor (smooth noise), tempo (a global and an uneven time warp), the
digitizer's rate (resampling), and sloppy touch-down / lift-off (a few points cut or added at
the ends). All in key units, so a 360 px phone and a 1,440 px tablet get the same treatment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fl_app.decoder.keyboard import Keyboard


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each transform (0 turns it off); distances in key units."""

    prob: float = 0.8  # share of samples augmented at all
    shift: float = 0.15  # sd of a whole-trace shift
    scale: float = 0.08  # sd of log scale per axis, about the trace's centre
    rotate_deg: float = 4.0  # sd of a rotation
    shear: float = 0.06  # sd of an x-shear by y (slanted rows of motion)
    noise: float = 0.04  # amplitude of smooth low-frequency noise
    tempo: float = 0.25  # sd of log duration scale
    warp: float = 0.15  # amplitude of an uneven time warp (share of duration)
    resample_ms: tuple[float, float] = (8.0, 20.0)  # new sampling interval range
    resample_prob: float = 0.5
    trim_prob: float = 0.3  # chance to cut up to 8% of points at either end
    trim_max: float = 0.08

    def to_dict(self) -> dict:
        return asdict(self)


def augment_points(
    points: np.ndarray, keyboard: Keyboard, config: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """A new (n', 3) trace in px for `keyboard`; `points` is left untouched."""
    if rng.random() >= config.prob or len(points) < 2:
        return points
    size = keyboard.key_size
    xy = points[:, :2] / size
    t = points[:, 2] - points[0, 2]
    xy = _geometry(xy, config, rng)
    if config.noise > 0:
        xy = xy + _smooth_noise(len(xy), config.noise, rng)
    t = _time(t, config, rng)
    out = np.column_stack([xy * size, t])
    if config.resample_prob > 0 and rng.random() < config.resample_prob and t[-1] > 0:
        out = _resample(out, rng.uniform(*config.resample_ms))
    if config.trim_prob > 0 and len(out) > 6 and rng.random() < config.trim_prob:
        out = _trim(out, config.trim_max, rng)
    out[:, 2] -= out[0, 2]
    return out


def _geometry(xy: np.ndarray, c: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    centre = xy.mean(0)
    rel = xy - centre
    angle = np.deg2rad(rng.normal(0.0, c.rotate_deg))
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    shear = np.array([[1.0, rng.normal(0.0, c.shear)], [0.0, 1.0]])
    scale = np.exp(rng.normal(0.0, c.scale, size=2))
    rel = (rel @ (rot @ shear).T) * scale
    return centre + rel + rng.normal(0.0, c.shift, size=2)


def _smooth_noise(n: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A few random knots, linearly interpolated: tremor, not per-point sensor noise."""
    knots = max(2, n // 12)
    values = rng.normal(0.0, amplitude, size=(knots, 2))
    grid = np.linspace(0.0, knots - 1, n)
    return np.column_stack([np.interp(grid, np.arange(knots), values[:, k]) for k in (0, 1)])


def _time(t: np.ndarray, c: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    duration = float(t[-1])
    if duration <= 0:
        return t
    u = t / duration
    if c.warp > 0:  # a monotone warp u -> u + a sin(pi u) (a, below 1/pi, keeps it monotone)
        a = float(np.clip(rng.normal(0.0, c.warp), -0.3, 0.3))
        u = u + a * np.sin(np.pi * u) / np.pi
    return u * duration * float(np.exp(rng.normal(0.0, c.tempo)))


def _resample(points: np.ndarray, interval: float) -> np.ndarray:
    t = points[:, 2]
    grid = np.arange(t[0], t[-1] + 1e-9, interval)
    if len(grid) < 2:
        return points
    tt = t + np.arange(len(t)) * 1e-6  # strictly increasing for interpolation
    return np.column_stack(
        [np.interp(grid, tt, points[:, 0]), np.interp(grid, tt, points[:, 1]), grid]
    )


def _trim(points: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    n = len(points)
    head = int(rng.integers(0, max(1, int(n * share)) + 1))
    tail = int(rng.integers(0, max(1, int(n * share)) + 1))
    kept = points[head : n - tail]
    return kept if len(kept) >= 4 else points
