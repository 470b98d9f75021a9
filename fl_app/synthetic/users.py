"""Synthetic gesture-typing users: a per-user style, realistic traces and a non-IID vocabulary.

The traces are the decoder's training data and must look like *real* phone swipes (see
`fl_app.synthetic.stats.REAL_STATS` for the measured target), over many keyboard sizes, so the
generator favours realism and diversity (domain randomization) over tidiness.

Motion model (Quinn & Zhai 2018, "A cost function of gesture typing"): the finger follows a
minimum-jerk trajectory through noisy via-points near the key centres of the word's letters
(repeated letters are one via-point). With the via-point times fixed, the minimum-jerk path is
a C4 piecewise quintic that starts and ends at rest; segment times grow with distance
(Fitts-like) and are scaled to the user's speed. Via-point noise follows Bi & Zhai's dual
Gaussian ("FFitts law"): sigma^2 = absolute precision^2 + (alpha * key size)^2, so a larger key
gets a larger spread (looser in the middle of a word than at its start). On top: a user's
landing bias (people land below the key centre), corner cutting, a slowdown in sharp turns (so
reversals are cusps or small loops, not wide swings), strokes that arc sideways, sloppy
endings (overshoot / undershoot along the last movement, heavy-tailed scatter, lift-off
tails), occasional wandering traces, smooth low-frequency jitter, a dwell at touch-down, and
the device's sampling (interval, jitter, missed frames, integer px / ms, no events while
still).

Calibrated against REAL_SWIPES.md with ~200 users x 20 swipes over the 10k lexicon: medians and
quartiles of start/end offsets and distances, ms per letter, path-length ratio, speed and the
per-person spreads match the real table (see `fl_app.synthetic.stats.compare_table`).

Everything is in key widths (kw = keyboard.key_width) in both axes (a key width is a physical
length on the user's screen), converted to px at the end. Randomness only from the
`np.random.Generator` passed in: the same seed gives the same swipes, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fl_app.decoder.keyboard import NAMED_LAYOUTS, Keyboard, keyboard_from_spec, named_keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.swipe import DEFAULT_MAX_POINTS, Swipe, make_swipe

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
# Word choice: p(word) ~ freq ** temperature (real swipes' word lengths match about 0.8).
VOCAB_TEMPERATURE_RANGE = (0.75, 1.0)
VOCAB_NOISE_LOG_SD = 0.7  # per-user interest in each word (log-normal multiplier)
SPECIAL_WORDS_RANGE = (5, 30)  # user-specific rare words (names, hobbies)
SPECIAL_MASS_RANGE = (0.08, 0.3)  # their share of the user's words
SPECIAL_FROM_RARE_FRACTION = 0.7  # drawn from the rarer 70% of the candidate words

LANGUAGE_LAYOUT = {"en": "qwerty-en", "ru": "jcuken-ru"}
# Geometry-model constant: the mean relative segment time per letter of English words, so
# `ms_per_letter` means what it says on average.
_GEOM_PER_LETTER_REF = 2.05
_GEOM_EXPONENT = 1.0  # how much a word's geometry (distance) sets its duration
_MAX_BULGE_KW = 0.6  # a stroke's sideways arc stays within this
_MAX_POINTS = 1500  # stay well inside the contract's DEFAULT_MAX_POINTS


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


# --------------------------------------------------------------------------------------------
# Minimum-jerk trajectory through via-points
# --------------------------------------------------------------------------------------------
def min_jerk_coefficients(
    knots: np.ndarray, points: np.ndarray, damping: np.ndarray | None = None
) -> np.ndarray:
    """Minimum-jerk path through `points` (m+1, d) at times `knots` (m+1,), at rest at both ends.

    That path is a C4 piecewise quintic (Flash & Hogan): each segment's quintic is fixed by
    position, velocity and acceleration at its ends, and the interior velocities and
    accelerations make jerk and snap continuous (a 2(m-1) linear system). `damping` (m-1,)
    optionally scales the interior velocities and accelerations (the finger slows down in
    sharp turns instead of looping round them; the path stays C2). Returns (m, 6, d)
    polynomial coefficients in the segment's local time (t - knots[j]).
    """
    h = np.diff(knots)
    m = len(h)
    d = points.shape[1]
    dp = np.diff(points, axis=0)  # (m, d)
    v = np.zeros((m + 1, d))
    a = np.zeros((m + 1, d))
    if m > 1:
        k = m - 1
        hl, hr = h[:-1], h[1:]
        dl, dr = dp[:-1], dp[1:]
        big_a = np.zeros((2 * k, 2 * k))
        i = np.arange(k)
        rj, rs = 2 * i, 2 * i + 1  # jerk / snap rows of node i+1
        cv, ca = 2 * i, 2 * i + 1
        big_a[rj, cv] = 36.0 / hr**2 - 36.0 / hl**2
        big_a[rj, ca] = 9.0 / hl + 9.0 / hr
        big_a[rs, cv] = -192.0 / hl**3 - 192.0 / hr**3
        big_a[rs, ca] = 36.0 / hl**2 - 36.0 / hr**2
        p, q = i[1:], i[:-1]  # node p's left neighbour q = p-1
        big_a[rj[p], cv[q]] = -24.0 / hl[p] ** 2
        big_a[rj[p], ca[q]] = -3.0 / hl[p]
        big_a[rs[p], cv[q]] = -168.0 / hl[p] ** 3
        big_a[rs[p], ca[q]] = -24.0 / hl[p] ** 2
        big_a[rj[q], cv[p]] = 24.0 / hr[q] ** 2
        big_a[rj[q], ca[p]] = -3.0 / hr[q]
        big_a[rs[q], cv[p]] = -168.0 / hr[q] ** 3
        big_a[rs[q], ca[p]] = 24.0 / hr[q] ** 2
        rhs = np.empty((2 * k, d))
        rhs[0::2] = 60.0 * dr / hr[:, None] ** 3 - 60.0 * dl / hl[:, None] ** 3
        rhs[1::2] = -360.0 * dl / hl[:, None] ** 4 - 360.0 * dr / hr[:, None] ** 4
        sol = np.linalg.solve(big_a, rhs)
        v[1:-1] = sol[0::2]
        a[1:-1] = sol[1::2]
        if damping is not None:
            v[1:-1] *= damping[:, None]
            a[1:-1] *= damping[:, None]
    hh = h[:, None]
    v0, v1, a0, a1 = v[:-1], v[1:], a[:-1], a[1:]
    coef = np.empty((m, 6, d))
    coef[:, 0] = points[:-1]
    coef[:, 1] = v0
    coef[:, 2] = a0 / 2.0
    coef[:, 3] = (20.0 * dp - (8.0 * v1 + 12.0 * v0) * hh - (3.0 * a0 - a1) * hh**2) / (2 * hh**3)
    coef[:, 4] = (-30.0 * dp + (14.0 * v1 + 16.0 * v0) * hh + (3.0 * a0 - 2.0 * a1) * hh**2) / (
        2 * hh**4
    )
    coef[:, 5] = (12.0 * dp - 6.0 * (v1 + v0) * hh - (a0 - a1) * hh**2) / (2 * hh**5)
    return coef


def eval_piecewise(
    knots: np.ndarray, coef: np.ndarray, t: np.ndarray, j: np.ndarray | None = None
) -> np.ndarray:
    """Evaluate piecewise polynomials (m, deg+1, d) at times t (n,) -> (n, d); `j` is each
    time's segment if already known."""
    if j is None:
        j = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
    tau = (t - knots[j])[:, None]
    c = coef[j]
    out = c[:, -1]
    for k in range(coef.shape[1] - 2, -1, -1):
        out = out * tau + c[:, k]
    return out


# --------------------------------------------------------------------------------------------
# One trace
# --------------------------------------------------------------------------------------------
def _unit(vec: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = math.hypot(vec[0], vec[1])
    if n < 1e-9:
        ang = rng.uniform(0, 2 * math.pi)
        return np.array([math.cos(ang), math.sin(ang)])
    return vec / n


def _sample_times(total_ms: float, style: UserStyle, rng: np.random.Generator) -> np.ndarray:
    dt = style.sample_interval_ms
    n = int(total_ms / dt * 1.15) + 8
    steps = dt * (1.0 + style.sample_jitter * rng.standard_normal(n))
    steps = np.maximum(steps, 0.25 * dt)
    steps = steps + dt * (rng.random(n) < style.missed_frame_prob)
    t = np.concatenate(([0.0], np.cumsum(steps)))
    t = t[t <= total_ms]
    if len(t) < 3:  # a very short swipe still gets a few events
        t = np.linspace(0.0, max(total_ms, 2.0 * dt), 3)
    return t


def generate_trace(
    word: str, keyboard: Keyboard, style: UserStyle, rng: np.random.Generator
) -> np.ndarray:
    """A synthetic trace of `word` on `keyboard`: (n, 3) float array of x px, y px, t ms."""
    if len(word) < 2:
        raise ValueError("swipes need words of two or more letters")
    if not keyboard.can_type(word):
        raise ValueError(f"keyboard cannot type {word!r}")
    kw = keyboard.key_width
    kh_kw = keyboard.key_height / kw
    # via letters: repeated letters are one via-point
    keep = [0] + [i for i in range(1, len(word)) if word[i] != word[i - 1]]
    n_double = np.diff(np.append(keep, len(word))) - 1  # repeats folded into each via-point
    centres = keyboard.word_centres(word)[keep] / kw  # (m+1, 2) in kw
    if len(centres) == 1:
        centres = np.vstack([centres, centres])
        n_double = np.array([0, len(word) - 1])
    m1 = len(centres)
    sig = style.sigma_kw(1.0, kh_kw)

    # --- via-points -------------------------------------------------------------------------
    noise = rng.standard_normal((m1, 2)) * sig
    via = centres + noise * style.mid_noise_scale
    bias = np.array([style.offset_x_kw, style.offset_y_kw])
    via[0] = centres[0] + bias + noise[0] * math.exp(0.3 * rng.standard_normal())
    if m1 > 2:  # corner cutting: interior via-points move towards their neighbours' chord
        # (a negative cut exaggerates the corner instead)
        cut = style.corner_cut * rng.uniform(0.3, 1.7)
        mid = 0.5 * (centres[:-2] + centres[2:])
        via[1:-1] += min(cut, 0.9) * (mid - centres[1:-1])
    direction = _unit(centres[-1] - centres[-2], rng)
    overshoot = style.overshoot_mean_kw + style.overshoot_sd_kw * rng.standard_normal()
    end = (
        centres[-1] + bias + np.array([style.end_offset_dx_kw, style.end_offset_dy_kw]) + noise[-1]
    )
    end += overshoot * direction + style.end_scatter_kw * rng.standard_normal(2)
    if rng.random() < style.sloppy_end_prob:  # far off: the finger lifts late or early
        far = rng.uniform(0.7, 1.8) * (1.0 if rng.random() < 0.65 else -1.0)
        end += far * direction + 0.35 * rng.standard_normal(2)
    via[-1] = end
    if rng.random() < style.end_hook_prob:  # lift-off tail: the last bit drifts into the end
        ang = 0.5 * math.pi + 1.0 * rng.standard_normal()  # mostly downwards, to the palm
        hook = abs(style.end_hook_kw * rng.standard_normal()) * np.array(
            [math.cos(ang), math.sin(ang)]
        )
        via = np.vstack([via[:-1], end - hook, end])
        n_double = np.append(n_double, 0)
    wander = rng.random() < style.wander_prob
    if wander:  # a hesitant, searching trace: a detour and a slower pace
        j = int(rng.integers(m1 - 1))
        along = _unit(via[j + 1] - via[j], rng)
        normal = np.array([-along[1], along[0]])
        detour = (
            0.5 * (via[j] + via[j + 1]) + rng.normal(0.0, 0.9, 2) + rng.normal(0.6, 0.4) * normal
        )
        via = np.insert(via, j + 1, detour, axis=0)
        n_double = np.insert(n_double, j + 1, 0)

    # --- timing -----------------------------------------------------------------------------
    chord = np.diff(via, axis=0)
    dist = np.hypot(chord[:, 0], chord[:, 1])
    seg = style.fitts_c0 + dist**style.fitts_beta
    pause = style.double_letter_pause * n_double
    seg += 0.5 * (pause[:-1] + pause[1:])
    geom = float(seg.sum()) / (len(word) * _GEOM_PER_LETTER_REF)
    total = style.ms_per_letter * len(word) * geom**_GEOM_EXPONENT
    total *= math.exp(style.speed_log_sd * rng.standard_normal())
    if wander:
        total *= rng.uniform(1.3, 2.5)
    dwell = style.dwell_ms * math.exp(0.6 * rng.standard_normal())
    total = min(total + dwell, _MAX_POINTS * style.sample_interval_ms * 0.8)
    motion = max(total - dwell, 0.6 * total)
    dwell = total - motion

    knots = np.concatenate(([0.0], np.cumsum(seg)))
    knots /= knots[-1]  # unit time: a well-conditioned system
    # strokes bow: each segment arcs sideways by bow * its length at its middle
    bow = (style.bow_mean + style.bow_sd * rng.standard_normal(len(dist))) * (dist > 0.25)
    bow = np.clip(
        bow, -_MAX_BULGE_KW / np.maximum(dist, 1e-9), _MAX_BULGE_KW / np.maximum(dist, 1e-9)
    )

    # --- path and sampling --------------------------------------------------------------------
    unit = chord / np.maximum(dist, 1e-9)[:, None]
    cos_turn = np.clip((unit[:-1] * unit[1:]).sum(axis=1), -1.0, 1.0)
    damping = (0.5 * (1.0 + cos_turn)) ** style.turn_slowdown  # 1 straight on, 0 reversal
    coef = min_jerk_coefficients(knots, via, damping)
    t = _sample_times(total, style, rng)
    s = np.clip((t - dwell) / motion, 0.0, 1.0)
    j = np.clip(np.searchsorted(knots, s, side="right") - 1, 0, len(knots) - 2)
    xy = eval_piecewise(knots, coef, s, j)
    u = (s - knots[j]) / (knots[j + 1] - knots[j])
    perp = np.column_stack([-chord[:, 1], chord[:, 0]]) * bow[:, None]  # |chord| * bow
    xy += perp[j] * (np.sin(np.pi * u) ** 2)[:, None]
    amp = style.jitter_kw * (2.5 if wander else 1.0)
    if amp > 0:
        freq = style.jitter_hz * rng.uniform(0.5, 1.8, (3, 2)) / 1000.0
        phase = rng.uniform(0, 2 * math.pi, (3, 2))
        tm = np.maximum(t - dwell, 0.0)
        wave = np.sin(2 * math.pi * freq[None] * tm[:, None, None] + phase[None]) - np.sin(phase)
        xy += amp * 0.6 * wave.sum(axis=1)
    xy += style.touch_noise_kw * rng.standard_normal(xy.shape)
    xy *= kw
    lim_lo = np.array([-0.8 * keyboard.width, -0.8 * keyboard.height])
    lim_hi = np.array([1.8 * keyboard.width, 1.8 * keyboard.height])
    xy = np.clip(xy, lim_lo, lim_hi)
    if style.round_px:
        xy = np.round(xy)
    if style.round_ms:
        t = np.round(t)
    out = np.column_stack([xy, t])
    if style.event_driven and len(out) > 2:  # no touchmove while the finger is still
        moved = np.any(xy[1:] != xy[:-1], axis=1) if style.round_px else np.ones(len(xy) - 1, bool)
        if not style.round_px:
            moved = np.hypot(*np.diff(xy, axis=0).T) > 0.3
        keep_pts = np.concatenate(([True], moved))
        keep_pts[-1] = True
        if keep_pts.sum() >= 2:
            out = out[keep_pts]
    return out


def generate_swipe(
    word: str, keyboard: Keyboard, style: UserStyle, rng: np.random.Generator
) -> Swipe:
    """A validated, labelled synthetic Swipe."""
    return make_swipe(
        generate_trace(word, keyboard, style, rng), keyboard, word, DEFAULT_MAX_POINTS
    )


# --------------------------------------------------------------------------------------------
# Users with their own vocabulary
# --------------------------------------------------------------------------------------------
@dataclass
class SyntheticUser:
    """One simulated person: a style, a device keyboard and a personal word distribution."""

    user_id: int
    seed: int
    style: UserStyle
    keyboard: Keyboard
    words: list[str]
    weights: np.ndarray  # p(word), sums to 1
    special_words: tuple[str, ...] = ()
    regime: str = "train"
    _cdf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.weights = self.weights / self.weights.sum()
        self._cdf = np.cumsum(self.weights)

    def sample_words(self, n: int, rng: np.random.Generator | None = None) -> list[str]:
        """n words from the user's distribution (default rng: derived from the user's seed)."""
        rng = np.random.default_rng([self.seed, 2]) if rng is None else rng
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        idx = np.minimum(idx, len(self.words) - 1)
        return [self.words[i] for i in idx]

    def swipes(self, n: int, stream: int = 0) -> list[Swipe]:
        """n labelled swipes; the same (seed, stream) gives identical swipes, bit for bit."""
        rng = np.random.default_rng([self.seed, 3, stream])
        words = self.sample_words(n, rng)
        return [generate_swipe(w, self.keyboard, self.style, rng) for w in words]


def _candidate_words(lexicon: Lexicon, layout: str, words: Sequence[str] | None) -> np.ndarray:
    letters = set("".join(NAMED_LAYOUTS[layout]["rows"]))
    allowed = None if words is None else set(words)
    idx = [
        i
        for i, w in enumerate(lexicon.words)
        if len(w) >= 2 and set(w) <= letters and (allowed is None or w in allowed)
    ]
    if not idx:
        raise ValueError("no candidate words: the lexicon and `words` leave nothing to swipe")
    return np.array(idx)


def make_user(
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: Sequence[str] | None = None,
    user_id: int | None = None,
) -> SyntheticUser:
    """A synthetic user drawn from `seed`: style, keyboard and non-IID vocabulary.

    The word distribution is Zipf-like, p ~ freq ** temperature (a per-user temperature),
    times a per-user log-normal interest in each word, mixed with a handful of the lexicon's
    rarer words at boosted weight (names, hobbies). `words` restricts the candidates (hold
    words out of training).
    """
    rng = np.random.default_rng([int(seed), 1])
    layout = LANGUAGE_LAYOUT.get(lexicon.language, "qwerty-en")
    style = sample_user_style(rng, regime, layout=layout)
    cand = _candidate_words(lexicon, layout, words)
    freqs = lexicon.freqs[cand]
    temp = rng.uniform(*VOCAB_TEMPERATURE_RANGE)
    w = np.exp(
        temp * np.log(np.maximum(freqs, 1e-12))
        + VOCAB_NOISE_LOG_SD * rng.standard_normal(len(cand))
    )
    w /= w.sum()
    order = np.argsort(-freqs, kind="stable")
    rare = order[int(len(order) * (1.0 - SPECIAL_FROM_RARE_FRACTION)) :]
    pool = rare if len(rare) else order
    k = min(int(rng.integers(SPECIAL_WORDS_RANGE[0], SPECIAL_WORDS_RANGE[1] + 1)), len(pool))
    special = rng.choice(pool, size=k, replace=False)
    mass = rng.uniform(*SPECIAL_MASS_RANGE)
    w = (1.0 - mass) * w
    w[special] += mass * rng.dirichlet(np.ones(k))
    return SyntheticUser(
        user_id=int(seed if user_id is None else user_id),
        seed=int(seed),
        style=style,
        keyboard=style.keyboard(),
        words=[lexicon.words[i] for i in cand],
        weights=w,
        special_words=tuple(lexicon.words[cand[i]] for i in special),
        regime=regime,
    )


def make_users(
    n: int,
    seed: int,
    lexicon: Lexicon,
    regime: str = "train",
    words: Sequence[str] | None = None,
) -> list[SyntheticUser]:
    """n users with ids 0..n-1 and seeds derived from `seed` (user i is the same for any n)."""
    return [
        make_user(
            int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]),
            lexicon,
            regime,
            words,
            user_id=i,
        )
        for i in range(n)
    ]
