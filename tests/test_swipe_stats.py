import math

import numpy as np
import pytest

from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.swipe import make_swipe
from fl_app.synthetic.stats import (
    LABELS,
    PERSON_QUANTITIES,
    REAL_STATS,
    STAT_KEYS,
    compare_table,
    compute_stats,
    ideal_path_kw,
    summarize,
    swipe_quantities,
    within_real_iqr,
)

KB = named_keyboard("qwerty-en", 400, 240)  # key width 40 px, key height 60 px


def _centre(ch: str) -> np.ndarray:
    return np.array(KB.letter_keys[ch].centre)


def test_swipe_quantities_on_a_hand_made_swipe():
    # "to": t centre (180, 30), o centre (340, 30); start 4 px right / 8 px below t,
    # end 20 px right of o; a straight path through three points, 16 ms apart.
    t, o = _centre("t"), _centre("o")
    pts = np.array(
        [
            [t[0] + 4, t[1] + 8, 0.0],
            [260.0, t[1] + 8, 16.0],
            [o[0] + 20, o[1], 33.0],
        ]
    )
    q = swipe_quantities(make_swipe(pts, KB, "to"))
    assert q["points"] == 3
    assert q["duration_ms"] == 33.0
    assert q["ms_per_letter"] == 16.5
    assert q["sampling_interval_ms"] == 16.5
    assert q["start_offset_x_kw"] == pytest.approx(0.1)
    assert q["start_offset_y_kw"] == pytest.approx(0.2)
    assert q["start_dist_kw"] == pytest.approx(math.hypot(0.1, 0.2))
    assert q["end_offset_x_kw"] == pytest.approx(0.5)
    assert q["end_offset_y_kw"] == pytest.approx(0.0)
    assert q["end_dist_kw"] == pytest.approx(0.5)
    path = (76.0 + math.hypot(100.0, 8.0)) / 40.0
    assert q["path_ratio"] == pytest.approx(path / 4.0)
    assert q["speed_kw_s"] == pytest.approx(path / 0.033)
    assert q["keyboard_aspect"] == pytest.approx(400 / 240)
    assert q["word_length"] == 2


def test_ideal_path_collapses_repeated_letters_and_skips_zero_length():
    pts = np.array([[10.0, 10.0, 0.0], [12.0, 11.0, 20.0]])
    assert ideal_path_kw(make_swipe(pts, KB, "hello")) == pytest.approx(
        ideal_path_kw(make_swipe(pts, KB, "helo"))
    )
    q = swipe_quantities(make_swipe(pts, KB, "ll"))
    assert math.isnan(q["path_ratio"])
    assert math.isfinite(q["speed_kw_s"])


def test_unlabelled_swipes_are_refused():
    pts = np.array([[10.0, 10.0, 0.0], [12.0, 11.0, 20.0]])
    with pytest.raises(ValueError):
        swipe_quantities(make_swipe(pts, KB))


def test_summarize_percentiles_and_nan():
    s = summarize(list(range(101)) + [float("nan")])
    assert (s["p5"], s["p25"], s["p50"], s["p75"], s["p95"]) == (5, 25, 50, 75, 95)
    assert s["mean"] == 50
    assert all(math.isnan(v) for v in summarize([float("nan")]).values())


def _swipes(n: int, dx: float):
    a, s = _centre("a"), _centre("s")
    out = []
    for i in range(n):
        pts = np.array([[a[0] + dx, a[1], 0.0], [s[0] + dx, s[1], 100.0 + 10 * i]])
        out.append(make_swipe(pts, KB, "as"))
    return out


def test_compute_stats_per_person_medians():
    swipes = _swipes(10, 0.0) + _swipes(10, 8.0) + _swipes(3, 40.0)
    ids = ["u1"] * 10 + ["u2"] * 10 + ["u3"] * 3
    stats = compute_stats(swipes, ids)
    assert set(stats) == set(LABELS)
    # u3 has fewer than 10 swipes: only u1 (0 kw) and u2 (0.2 kw) count
    person = stats["person_start_dist_kw"]
    assert person["p5"] == pytest.approx(0.01)
    assert person["p95"] == pytest.approx(0.19)
    assert stats["start_dist_kw"]["p95"] > 0.2  # the per-swipe view sees u3
    assert "person_ms_per_letter" not in compute_stats(swipes)
    with pytest.raises(ValueError):
        compute_stats(swipes, ids[:-1])


def test_real_stats_are_complete_and_ordered():
    assert set(REAL_STATS) == set(LABELS)
    for q, row in REAL_STATS.items():
        assert set(row) == set(STAT_KEYS), q
        pct = [row[k] for k in ("p5", "p25", "p50", "p75", "p95")]
        assert pct == sorted(pct), q
    assert {f"person_{q}" for q in PERSON_QUANTITIES} <= set(REAL_STATS)
    assert REAL_STATS["end_dist_kw"]["p95"] == 1.30
    assert REAL_STATS["person_start_offset_y_kw"]["p50"] == 0.10


def test_within_real_iqr_and_compare_table():
    stats = {q: dict(row) for q, row in REAL_STATS.items()}
    stats["path_ratio"]["p50"] = 1.4  # outside 1.05..1.23
    ok = within_real_iqr(stats, ["path_ratio", "ms_per_letter", "start_offset_y_kw"])
    assert ok == {"path_ratio": False, "ms_per_letter": True, "start_offset_y_kw": True}
    table = compare_table(stats, ["path_ratio", "ms_per_letter"])
    lines = table.splitlines()
    assert len(lines) == 2 + 2 * 2
    assert "path length / ideal" in table and "| NO |" in table and "| yes |" in table
    assert "| real |" in table and "| generated |" in table
    assert "1.40" in table and "230" in table
