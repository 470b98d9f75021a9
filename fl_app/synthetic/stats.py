"""Statistics of labelled swipes, comparable with the measured real phone swipes.

`REAL_STATS` embeds the table of REAL_SWIPES.md (74,295 real swipes by 1,198 people, a mobile
web QWERTY keyboard), which is not in this repository but shared beside it
(``../shared/REAL_SWIPES.md``): the generator's calibration target. `compute_stats`
measures the same quantities on any labelled swipes (distances in key widths,
kw = keyboard.key_width, in both axes; offsets are trace point minus the key centre of the
first or last letter, y grows downwards), `compare_table` renders both side by side and
`within_real_iqr` checks medians against the real interquartile range.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from fl_app.decoder.swipe import Swipe

PERCENTILES = {"p5": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95}
STAT_KEYS = (*PERCENTILES, "mean")

# quantity -> label (and unit) as in REAL_SWIPES.md (beside the repository, ../shared/)
LABELS: dict[str, str] = {
    "points": "points per swipe",
    "duration_ms": "duration (ms)",
    "ms_per_letter": "ms per letter",
    "sampling_interval_ms": "sampling interval (ms, median per swipe)",
    "start_dist_kw": "start point distance from first key centre (kw)",
    "end_dist_kw": "end point distance from last key centre (kw)",
    "start_offset_x_kw": "start offset x (kw)",
    "start_offset_y_kw": "start offset y (kw)",
    "end_offset_x_kw": "end offset x (kw)",
    "end_offset_y_kw": "end offset y (kw)",
    "path_ratio": "path length / ideal key-centre path length",
    "speed_kw_s": "speed (kw per second)",
    "keyboard_width": "keyboard width (px)",
    "keyboard_height": "keyboard height (px)",
    "keyboard_aspect": "keyboard aspect (width / height)",
    "word_length": "word length (letters)",
}
# per-person medians (people with `min_swipes`+ swipes)
PERSON_QUANTITIES = (
    "ms_per_letter",
    "speed_kw_s",
    "end_dist_kw",
    "start_dist_kw",
    "path_ratio",
    "start_offset_y_kw",
)
for _q in PERSON_QUANTITIES:
    LABELS[f"person_{_q}"] = f"per-person median of {LABELS[_q]}"

# The quantities the generator is calibrated on: its median must lie inside the real
# interquartile range (bench/accuracy.py reports them, tests/test_synth.py holds them).
CALIBRATED = (
    "start_offset_x_kw",
    "start_offset_y_kw",
    "end_offset_x_kw",
    "end_offset_y_kw",
    "ms_per_letter",
    "path_ratio",
    "start_dist_kw",
    "end_dist_kw",
    "speed_kw_s",
)

_NAN = float("nan")


def _row(p5: float, p25: float, p50: float, p75: float, p95: float, mean: float = _NAN):
    return {"p5": p5, "p25": p25, "p50": p50, "p75": p75, "p95": p95, "mean": mean}


REAL_STATS: dict[str, dict[str, float]] = {
    "points": _row(16, 34, 61, 107, 224, 83),
    "duration_ms": _row(275, 604, 1100, 2020, 4710, 1620),
    "ms_per_letter": _row(106, 163, 230, 346, 646, 285),
    "sampling_interval_ms": _row(16, 17, 17, 17, 17, 17),
    "start_dist_kw": _row(0.07, 0.18, 0.28, 0.41, 0.66, 0.32),
    "end_dist_kw": _row(0.11, 0.26, 0.43, 0.68, 1.30, 0.54),
    "start_offset_x_kw": _row(-0.43, -0.15, 0.01, 0.15, 0.40, 0.00),
    "start_offset_y_kw": _row(-0.29, -0.05, 0.10, 0.25, 0.47, 0.10),
    "end_offset_x_kw": _row(-0.75, -0.24, 0.01, 0.28, 0.88, 0.04),
    "end_offset_y_kw": _row(-0.45, -0.07, 0.13, 0.35, 0.79, 0.15),
    "path_ratio": _row(0.90, 1.05, 1.13, 1.23, 1.53, 1.16),
    "speed_kw_s": _row(4.6, 8.4, 12.5, 17.4, 25.6, 13.7),
    "keyboard_width": _row(360, 360, 375, 411, 413),
    "keyboard_height": _row(183, 205, 220, 241, 256),
    "keyboard_aspect": _row(1.58, 1.64, 1.71, 1.83, 1.95, 1.76),
    "word_length": _row(2, 3, 5, 7, 10, 5.2),
    "person_ms_per_letter": _row(128, 175, 236, 334, 527),
    "person_speed_kw_s": _row(5.7, 8.9, 12.4, 16.6, 22.7),
    "person_end_dist_kw": _row(0.25, 0.35, 0.44, 0.54, 0.72),
    "person_start_dist_kw": _row(0.19, 0.24, 0.28, 0.33, 0.42),
    "person_path_ratio": _row(0.99, 1.08, 1.13, 1.18, 1.26),
    "person_start_offset_y_kw": _row(-0.05, 0.03, 0.10, 0.16, 0.26),
}


def ideal_path_kw(swipe: Swipe) -> float:
    """Length (kw) of the polyline through the word's key centres, repeated letters collapsed."""
    kb = swipe.keyboard
    word = swipe.word or ""
    collapsed = "".join(ch for i, ch in enumerate(word) if i == 0 or ch != word[i - 1])
    if len(collapsed) < 2:
        return 0.0
    c = kb.word_centres(collapsed)
    return float(np.hypot(*np.diff(c, axis=0).T).sum() / kb.key_width)


def swipe_quantities(swipe: Swipe) -> dict[str, float]:
    """The per-swipe quantities of the real table for one labelled swipe (NaN where undefined)."""
    if not swipe.word:
        raise ValueError("swipe statistics need labelled swipes")
    kb = swipe.keyboard
    kw = kb.key_width
    pts = np.asarray(swipe.points, dtype=np.float64)
    xy, t = pts[:, :2], pts[:, 2]
    duration = float(t[-1] - t[0])
    centres = kb.word_centres(swipe.word[0] + swipe.word[-1])
    start = (xy[0] - centres[0]) / kw
    end = (xy[-1] - centres[1]) / kw
    path = float(np.hypot(*np.diff(xy, axis=0).T).sum() / kw)
    ideal = ideal_path_kw(swipe)
    return {
        "points": float(len(pts)),
        "duration_ms": duration,
        "ms_per_letter": duration / len(swipe.word),
        "sampling_interval_ms": float(np.median(np.diff(t))) if len(t) > 1 else _NAN,
        "start_dist_kw": float(math.hypot(*start)),
        "end_dist_kw": float(math.hypot(*end)),
        "start_offset_x_kw": float(start[0]),
        "start_offset_y_kw": float(start[1]),
        "end_offset_x_kw": float(end[0]),
        "end_offset_y_kw": float(end[1]),
        "path_ratio": path / ideal if ideal > 1e-9 else _NAN,
        "speed_kw_s": path / (duration / 1000.0) if duration > 0 else _NAN,
        "keyboard_width": float(kb.width),
        "keyboard_height": float(kb.height),
        "keyboard_aspect": float(kb.width / kb.height),
        "word_length": float(len(swipe.word)),
    }


def summarize(values: Iterable[float]) -> dict[str, float]:
    """p5 p25 p50 p75 p95 and mean of the finite values (NaN if there are none)."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {k: _NAN for k in STAT_KEYS}
    pct = np.percentile(v, list(PERCENTILES.values()))
    out = {k: float(p) for k, p in zip(PERCENTILES, pct, strict=True)}
    out["mean"] = float(v.mean())
    return out


def compute_stats(
    swipes: Sequence[Swipe],
    user_ids: Sequence[object] | None = None,
    min_swipes: int = 10,
) -> dict[str, dict[str, float]]:
    """quantity -> {p5, p25, p50, p75, p95, mean} over the swipes.

    With `user_ids` (one per swipe) it adds `person_<quantity>`: the spread of each person's
    own median, over people with at least `min_swipes` swipes (as the real table does).
    """
    rows = [swipe_quantities(s) for s in swipes]
    if not rows:
        raise ValueError("no swipes")
    stats = {q: summarize(r[q] for r in rows) for q in LABELS if not q.startswith("person_")}
    if user_ids is not None:
        if len(user_ids) != len(rows):
            raise ValueError("one user id per swipe")
        groups: dict[object, list[dict[str, float]]] = defaultdict(list)
        for uid, r in zip(user_ids, rows, strict=True):
            groups[uid].append(r)
        people = [g for g in groups.values() if len(g) >= min_swipes]
        for q in PERSON_QUANTITIES:
            medians = [float(np.nanmedian([r[q] for r in g])) for g in people]
            stats[f"person_{q}"] = summarize(medians)
    return stats


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return ""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def within_real_iqr(
    stats: dict[str, dict[str, float]], quantities: Iterable[str]
) -> dict[str, bool]:
    """For each quantity: is the generated median inside the real p25..p75?"""
    out = {}
    for q in quantities:
        real, med = REAL_STATS[q], stats[q]["p50"]
        out[q] = bool(math.isfinite(med) and real["p25"] <= med <= real["p75"])
    return out


def compare_table(
    generated_stats: dict[str, dict[str, float]], quantities: Iterable[str] | None = None
) -> str:
    """Markdown: generated vs real, two rows per quantity, and whether the median is in the
    real IQR."""
    qs = [q for q in (quantities or LABELS) if q in generated_stats and q in REAL_STATS]
    lines = [
        "| quantity | source | p5 | p25 | median | p75 | p95 | mean | median in real IQR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for q in qs:
        ok = within_real_iqr(generated_stats, [q])[q]
        for src, row in (("generated", generated_stats[q]), ("real", REAL_STATS[q])):
            cells = " | ".join(_fmt(row[k]) for k in STAT_KEYS)
            label = LABELS[q] if src == "generated" else ""
            mark = ("yes" if ok else "NO") if src == "generated" else ""
            lines.append(f"| {label} | {src} | {cells} | {mark} |")
    return "\n".join(lines)
