"""How one synthetic person swipes, and on which device: the per-user style and its ranges.

The generator's users differ in device (keyboard size and aspect, key size, sampling rate) and
in swiping style (speed, precision, landing bias, sloppy endings...). This module owns those
parameters: `UserStyle` holds one user's, `sample_user_style` draws them (domain randomization,
distributed like real people where the real table says so), `TRAIN_RANGES` / `SHIFTED_RANGES`
bound the training and the shifted (robustness) populations, and `tidy_style` is the
noise-free swiper for sanity checks. How a style turns into a trace is `fl_app.synthetic.motion`.

Calibrated against the real table of REAL_SWIPES.md (not in this repository: shared beside it,
``../shared/REAL_SWIPES.md``; embedded as `fl_app.synthetic.stats.REAL_STATS`) with ~200 users x
20 swipes over the 10k lexicon: medians and quartiles of start/end offsets and distances, ms per
letter, path-length ratio, speed and the per-person spreads match the real table (see
`fl_app.synthetic.stats.compare_table`).

Distances are in key widths (kw = keyboard.key_width) in both axes. Randomness only from the
`np.random.Generator` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fl_app.decoder.keyboard import NAMED_LAYOUTS, Keyboard, keyboard_from_spec, named_keyboard

# --------------------------------------------------------------------------------------------
# Ranges of the per-user style parameters. "train" users are drawn inside TRAIN_RANGES (the
# distributions inside are in `sample_user_style`); "shifted" users draw the parameters named in
# SHIFTED_RANGES from intervals outside them (a robustness test set). Distances in kw.
# --------------------------------------------------------------------------------------------
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "ms_per_letter": (95.0, 900.0),  # per-user median; split log-normal, real p5..p95 128..527
    "kb_width": (320.0, 1440.0),  # px: CSS-px phones, high-dpi phones, tablets
    "kb_aspect": (1.5, 2.3),  # keyboard width / height
    "sample_interval_ms": (7.5, 18.0),  # 60 Hz mostly; 90-120 Hz native keyboards
    "alpha": (0.03, 0.16),  # Bi & Zhai relative precision (x key size)
    "abs_precision_mm": (0.6, 2.0),  # Bi & Zhai absolute precision of the finger
    "end_scatter_kw": (0.03, 0.42),  # extra isotropic scatter of the last point
    "overshoot_sd_kw": (0.05, 0.45),  # over/undershoot spread along the last movement
    "sloppy_end_prob": (0.0, 0.15),  # chance of a far-off ending (> ~1 kw)
    "offset_y_kw": (-0.2, 0.4),  # landing bias, y grows downwards
    "offset_x_kw": (-0.2, 0.2),
    "corner_cut": (-0.1, 0.1),  # > 0 cuts corners, < 0 exaggerates them
    "bow_mean": (-0.2, 0.2),  # strokes arc (sideways offset / chord length)
    "wander_prob": (0.0, 0.2),
    "jitter_kw": (0.0, 0.15),  # smooth low-frequency jitter amplitude
    "dwell_ms": (0.0, 250.0),  # median pause at touch-down
}

SHIFTED_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "ms_per_letter": ((45.0, 90.0),),  # faster than any training user
    "kb_width": ((200.0, 300.0), (1600.0, 2560.0)),
    "kb_aspect": ((1.1, 1.42), (2.45, 3.6)),  # tall keyboards; landscape
    "sample_interval_ms": ((3.5, 6.5), (21.0, 34.0)),  # 240 Hz digitisers; slow event loops
    "alpha": ((0.18, 0.26),),  # larger spread
    "abs_precision_mm": ((2.2, 3.2),),
    "end_scatter_kw": ((0.45, 0.6),),  # sloppier endings
    "overshoot_sd_kw": ((0.5, 0.7),),
    "sloppy_end_prob": ((0.18, 0.3),),
}

# Device classes of the training users: (probability, width range px, physical key width mm).
# The real table's keyboards are CSS px 360..413 wide; other apps report physical px.
DEVICE_CLASSES: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    "phone_css": (0.62, (320.0, 430.0), (5.2, 7.2)),
    "phone_px": (0.25, (700.0, 1440.0), (5.2, 7.4)),
    "tablet": (0.13, (600.0, 1400.0), (8.0, 16.0)),
}
# Sampling rates of the training users: (probability, nominal interval ms).
SAMPLING_CLASSES: tuple[tuple[float, float], ...] = (
    (0.72, 1000.0 / 60.0),
    (0.10, 1000.0 / 90.0),
    (0.12, 1000.0 / 120.0),
    (0.06, 10.0),
)
MS_PER_LETTER_MEDIAN = 210.0  # per-user median: split log-normal over users (slow tail longer)
MS_PER_LETTER_LOG_SD = (0.33, 0.49)  # below / above the median
REAL_ASPECT_MEDIAN = 1.72


@dataclass(frozen=True)
class UserStyle:
    """How one synthetic person swipes, and on which device. Distances in key widths (kw)."""

    # device
    layout: str = "qwerty-en"
    kb_width: float = 375.0  # px
    kb_aspect: float = 1.72  # width / height
    key_mm: float = 6.2  # physical key width: converts Bi & Zhai's absolute precision
    row_offsets: tuple[float, ...] | None = None  # explicit stagger (None: the layout's own)
    sample_interval_ms: float = 1000.0 / 60.0
    sample_jitter: float = 0.05  # sd of an interval, fraction of the interval
    missed_frame_prob: float = 0.02
    event_driven: bool = True  # no events while the finger is still (web touchmove)
    round_px: bool = True
    round_ms: bool = True
    # timing
    ms_per_letter: float = 238.0
    speed_log_sd: float = 0.3  # swipe-to-swipe variation of a user's speed
    fitts_c0: float = 0.6  # segment time ~ c0 + distance ** beta (distance in kw)
    fitts_beta: float = 0.6
    double_letter_pause: float = 0.4  # extra relative time at a repeated letter
    dwell_ms: float = 60.0
    # accuracy
    offset_x_kw: float = 0.0  # landing bias
    offset_y_kw: float = 0.10
    end_offset_dx_kw: float = 0.03  # extra bias of the ending
    end_offset_dy_kw: float = 0.05
    abs_precision_mm: float = 1.2
    alpha: float = 0.08
    mid_noise_scale: float = 1.6  # via-points in the middle are looser than the start
    corner_cut: float = 0.03
    turn_slowdown: float = 1.0  # speed at a via-point ~ ((1 + cos turn) / 2) ** this
    bow_mean: float = 0.0  # strokes arc: sideways offset of a segment's middle / its length
    bow_sd: float = 0.1
    overshoot_mean_kw: float = 0.05
    overshoot_sd_kw: float = 0.25
    end_scatter_kw: float = 0.15
    sloppy_end_prob: float = 0.05
    end_hook_prob: float = 0.3  # chance of a lift-off tail ...
    end_hook_kw: float = 0.2  # ... and its length scale
    wander_prob: float = 0.05
    jitter_kw: float = 0.05
    jitter_hz: float = 1.5
    touch_noise_kw: float = 0.01
    regime: str = "train"
    shifted: tuple[str, ...] = ()

    @property
    def kb_height(self) -> float:
        return self.kb_width / self.kb_aspect

    def sigma_kw(self, key_w: float = 1.0, key_h: float = 1.0) -> np.ndarray:
        """Bi & Zhai spread (x, y) in kw for a key of key_w x key_h kw."""
        a = self.abs_precision_mm / self.key_mm
        return np.sqrt(a * a + (self.alpha * np.array([key_w, key_h])) ** 2)

    def keyboard(self) -> Keyboard:
        """The user's device keyboard (named layout, or explicit keys for a custom stagger)."""
        w, h = round(self.kb_width), round(self.kb_height)
        if self.row_offsets is None:
            return named_keyboard(self.layout, w, h)
        spec_def = NAMED_LAYOUTS[self.layout]
        kw, kh = w / spec_def["keys_per_row"], h / 4.0
        keys = [
            {"label": ch, "x": (off + col) * kw, "y": row_i * kh, "w": kw, "h": kh}
            for row_i, (row, off) in enumerate(zip(spec_def["rows"], self.row_offsets, strict=True))
            for col, ch in enumerate(row)
        ]
        return keyboard_from_spec(
            {"width": w, "height": h, "keys": keys, "language": spec_def["language"]}
        )


_TIDY = dict(
    abs_precision_mm=0.0,
    alpha=0.0,
    offset_x_kw=0.0,
    offset_y_kw=0.0,
    end_offset_dx_kw=0.0,
    end_offset_dy_kw=0.0,
    corner_cut=0.0,
    turn_slowdown=0.0,
    bow_mean=0.0,
    bow_sd=0.0,
    overshoot_mean_kw=0.0,
    overshoot_sd_kw=0.0,
    end_scatter_kw=0.0,
    sloppy_end_prob=0.0,
    end_hook_prob=0.0,
    wander_prob=0.0,
    jitter_kw=0.0,
    touch_noise_kw=0.0,
    round_px=False,
    event_driven=False,
)


def tidy_style(**overrides) -> UserStyle:
    """A noise-free swiper: a smooth minimum-jerk trace through the key centres, no sloppiness.

    For decoding sanity checks and tests (a single trace that must decode), never for training.
    """
    return UserStyle(**{**_TIDY, **overrides})


# --------------------------------------------------------------------------------------------
# Sampling users
# --------------------------------------------------------------------------------------------
def _clip(x: float, rng_: tuple[float, float]) -> float:
    return float(min(max(x, rng_[0]), rng_[1]))


def _lognormal(rng: np.random.Generator, median: float, log_sd: float) -> float:
    return float(median * math.exp(log_sd * rng.standard_normal()))


def _outside(rng: np.random.Generator, name: str) -> float:
    intervals = SHIFTED_RANGES[name]
    lo, hi = intervals[int(rng.integers(len(intervals)))]
    return float(rng.uniform(lo, hi))


def sample_user_style(
    rng: np.random.Generator,
    regime: str = "train",
    layout: str = "qwerty-en",
    shifted: Iterable[str] | None = None,
) -> UserStyle:
    """Draw one user's style.

    regime "train": parameters inside TRAIN_RANGES, distributed like real people where the
    real table says so. regime "shifted": the parameters in `shifted` (default: all of
    SHIFTED_RANGES) are drawn outside the training ranges; the rest as for "train".
    """
    if regime not in ("train", "shifted"):
        raise ValueError(f"unknown regime {regime!r}; use 'train' or 'shifted'")
    r = TRAIN_RANGES
    # device
    names = list(DEVICE_CLASSES)
    probs = np.array([DEVICE_CLASSES[n][0] for n in names])
    device = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    _, width_range, mm_range = DEVICE_CLASSES[device]
    kb_width = float(rng.uniform(*width_range))
    if device == "phone_css" and rng.random() < 0.6:  # the common real CSS widths
        kb_width = float(rng.choice([360.0, 375.0, 390.0, 393.0, 411.0, 412.0, 414.0]))
    key_mm = float(rng.uniform(*mm_range))
    if rng.random() < 0.7:
        kb_aspect = _clip(
            REAL_ASPECT_MEDIAN * math.exp(0.07 * rng.standard_normal()), r["kb_aspect"]
        )
    else:
        kb_aspect = float(rng.uniform(*r["kb_aspect"]))
    row_offsets = None
    if layout == "qwerty-en" and rng.random() < 0.2:
        row_offsets = (0.0, float(rng.uniform(0.25, 0.65)), float(rng.uniform(1.2, 1.75)))
    elif layout != "qwerty-en" and rng.random() < 0.2:
        base = NAMED_LAYOUTS[layout]["offsets"]
        row_offsets = tuple(
            float(o + rng.uniform(-0.2, 0.2)) if i else 0.0 for i, o in enumerate(base)
        )
    sp = np.array([c[0] for c in SAMPLING_CLASSES])
    interval = SAMPLING_CLASSES[int(rng.choice(len(sp), p=sp / sp.sum()))][1]
    interval = _clip(interval * (1 + 0.01 * rng.standard_normal()), r["sample_interval_ms"])
    web = interval > 15.0 and rng.random() < 0.8
    # timing
    z = rng.standard_normal()
    log_sd = MS_PER_LETTER_LOG_SD[0] if z < 0 else MS_PER_LETTER_LOG_SD[1]
    ms_per_letter = _clip(MS_PER_LETTER_MEDIAN * math.exp(log_sd * z), r["ms_per_letter"])
    # accuracy
    offset_y = _clip(0.10 + 0.095 * rng.standard_normal(), r["offset_y_kw"])
    offset_x = _clip(0.07 * rng.standard_normal(), r["offset_x_kw"])
    abs_mm = _clip(_lognormal(rng, 1.15, 0.3), r["abs_precision_mm"])
    alpha = _clip(_lognormal(rng, 0.08, 0.3), r["alpha"])
    overshoot_sd = _clip(_lognormal(rng, 0.2, 0.55), r["overshoot_sd_kw"])
    end_scatter = _clip(_lognormal(rng, 0.13, 0.7), r["end_scatter_kw"])
    sloppy = _clip(float(rng.beta(1.2, 14.0)), r["sloppy_end_prob"])
    values = {
        "ms_per_letter": ms_per_letter,
        "kb_width": kb_width,
        "kb_aspect": kb_aspect,
        "sample_interval_ms": interval,
        "alpha": alpha,
        "abs_precision_mm": abs_mm,
        "end_scatter_kw": end_scatter,
        "overshoot_sd_kw": overshoot_sd,
        "sloppy_end_prob": sloppy,
    }
    shifted_names: tuple[str, ...] = ()
    if regime == "shifted":
        shifted_names = tuple(SHIFTED_RANGES) if shifted is None else tuple(shifted)
        for name in shifted_names:
            if name not in SHIFTED_RANGES:
                raise ValueError(f"{name!r} has no shifted range; known: {sorted(SHIFTED_RANGES)}")
            values[name] = _outside(rng, name)
        if "sample_interval_ms" in shifted_names:
            web = False
    return UserStyle(
        layout=layout,
        kb_width=values["kb_width"],
        kb_aspect=values["kb_aspect"],
        key_mm=key_mm,
        row_offsets=row_offsets,
        sample_interval_ms=values["sample_interval_ms"],
        sample_jitter=float(rng.uniform(0.02, 0.3)),
        missed_frame_prob=float(rng.uniform(0.0, 0.06)),
        event_driven=bool(rng.random() < (0.4 if web else 0.2)),
        round_px=bool(web or rng.random() < 0.5),
        round_ms=bool(web or rng.random() < 0.7),
        ms_per_letter=values["ms_per_letter"],
        speed_log_sd=float(rng.uniform(0.15, 0.3)),
        fitts_c0=float(rng.uniform(0.3, 1.0)),
        fitts_beta=float(rng.uniform(0.4, 0.8)),
        double_letter_pause=float(rng.uniform(0.0, 0.8)),
        dwell_ms=_clip(_lognormal(rng, 50.0, 0.7), r["dwell_ms"]),
        offset_x_kw=offset_x,
        offset_y_kw=offset_y,
        end_offset_dx_kw=float(0.05 + 0.08 * rng.standard_normal()),
        end_offset_dy_kw=float(0.05 + 0.06 * rng.standard_normal()),
        abs_precision_mm=values["abs_precision_mm"],
        alpha=values["alpha"],
        mid_noise_scale=float(rng.uniform(1.2, 2.0)),
        corner_cut=_clip(float(rng.uniform(-0.025, 0.075)), r["corner_cut"]),
        turn_slowdown=float(rng.uniform(0.6, 1.8)),
        bow_mean=_clip(0.08 * rng.standard_normal(), r["bow_mean"]),
        bow_sd=float(rng.uniform(0.07, 0.25)),
        overshoot_mean_kw=float(0.05 + 0.1 * rng.standard_normal()),
        overshoot_sd_kw=values["overshoot_sd_kw"],
        end_scatter_kw=values["end_scatter_kw"],
        sloppy_end_prob=values["sloppy_end_prob"],
        end_hook_prob=float(rng.uniform(0.1, 0.7)),
        end_hook_kw=float(rng.uniform(0.1, 0.35)),
        wander_prob=_clip(float(rng.beta(1.0, 9.0)), r["wander_prob"]),
        jitter_kw=_clip(_lognormal(rng, 0.05, 0.5), r["jitter_kw"]),
        jitter_hz=float(rng.uniform(0.8, 3.0)),
        touch_noise_kw=float(rng.uniform(0.0, 0.03)),
        regime=regime,
        shifted=shifted_names,
    )
