"""How a synthetic finger moves: one word's trace from a user's style, sampled like a device.

The traces are the decoder's training data and must look like *real* phone swipes (see
`fl_app.synthetic.stats.REAL_STATS` for the measured target), over many keyboard sizes, so the
generator favours realism and diversity (domain randomization) over tidiness. This module turns
a word, a keyboard and a `fl_app.synthetic.style.UserStyle` into a trace (`generate_trace`) or
a labelled Swipe (`generate_swipe`); who swipes which words is `fl_app.synthetic.users`.

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

Instead of the style's via-point noise, a trace can replay where one real person put their
finger (`fl_app.synthetic.habits`: the start, the end and the corners of their swipes, turned
onto this word's movements); timing, stroke shape and sampling stay the style's.

Everything is in key widths (kw = keyboard.key_width) in both axes (a key width is a physical
length on the user's screen), converted to px at the end. Randomness only from the
`np.random.Generator` passed in: the same seed gives the same swipes, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.swipe import DEFAULT_MAX_POINTS, Swipe, make_swipe
from fl_app.synthetic.habits import PersonHabits, movement_frames
from fl_app.synthetic.style import UserStyle

# Geometry-model constant: the mean relative segment time per letter of English words, so
# `ms_per_letter` means what it says on average.
_GEOM_PER_LETTER_REF = 2.05
_GEOM_EXPONENT = 1.0  # how much a word's geometry (distance) sets its duration
_MAX_BULGE_KW = 0.6  # a stroke's sideways arc stays within this
_MAX_POINTS = 1500  # stay well inside the contract's DEFAULT_MAX_POINTS
REPLAY_SCATTER_KW = 0.05  # scatter on a replayed real offset


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


def _parametric_via(
    centres: np.ndarray,
    n_double: np.ndarray,
    style: UserStyle,
    kh_kw: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Via-points from the style's parameters: Bi & Zhai scatter, landing bias, corner cutting,
    over/undershoot, sloppy endings and lift-off tails (which add a via-point)."""
    m1 = len(centres)
    sig = style.sigma_kw(1.0, kh_kw)
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
    return via, n_double


def _replayed_via(
    centres: np.ndarray, habits: PersonHabits, rng: np.random.Generator
) -> np.ndarray:
    """Via-points where one real person put their finger: the start and end of one of their
    swipes and their corner offsets, each turned onto this word's movements (see
    `fl_app.synthetic.habits`), plus a little scatter so no offset repeats exactly."""
    start, end, corners = habits.draw(len(centres) - 2, rng)
    frames = movement_frames(centres)
    via = centres + REPLAY_SCATTER_KW * rng.standard_normal(centres.shape)
    via[0] += start
    via[1:-1] += np.einsum("kc,kcd->kd", corners, frames[:-1])
    via[-1] += end @ frames[-1]
    return via


def generate_trace(
    word: str,
    keyboard: Keyboard,
    style: UserStyle,
    rng: np.random.Generator,
    habits: PersonHabits | None = None,
) -> np.ndarray:
    """A synthetic trace of `word` on `keyboard`: (n, 3) float array of x px, y px, t ms.

    With `habits`, the via-points replay a real person's offsets instead of the style's
    (`_replayed_via`); timing, stroke shape and sampling still come from the style."""
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

    # --- via-points -------------------------------------------------------------------------
    if habits is None:
        via, n_double = _parametric_via(centres, n_double, style, kh_kw, rng)
    else:
        via = _replayed_via(centres, habits, rng)
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
    word: str,
    keyboard: Keyboard,
    style: UserStyle,
    rng: np.random.Generator,
    habits: PersonHabits | None = None,
) -> Swipe:
    """A validated, labelled synthetic Swipe."""
    return make_swipe(
        generate_trace(word, keyboard, style, rng, habits), keyboard, word, DEFAULT_MAX_POINTS
    )
