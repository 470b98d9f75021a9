import dataclasses
from collections import Counter

import numpy as np
import pytest

from fl_app.decoder.keyboard import keyboard_from_spec, named_keyboard
from fl_app.decoder.lexicon import Lexicon, load_lexicon
from fl_app.decoder.swipe import Swipe
from fl_app.synthetic.motion import (
    eval_piecewise,
    generate_swipe,
    generate_trace,
    min_jerk_coefficients,
)
from fl_app.synthetic.stats import CALIBRATED, compute_stats, within_real_iqr
from fl_app.synthetic.style import (
    SHIFTED_RANGES,
    TRAIN_RANGES,
    UserStyle,
    sample_user_style,
    tidy_style,
)
from fl_app.synthetic.users import make_user, make_users

KB = named_keyboard("qwerty-en", 375, 218)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon("en", 10000)


def clean_style(**kw) -> UserStyle:
    """A noise-free swiper, densely sampled: the trace goes through the key centres."""
    return tidy_style(**{"sample_interval_ms": 4.0, **kw})


def min_dist_kw(trace: np.ndarray, point: np.ndarray, kw: float) -> float:
    return float(np.hypot(*(trace[:, :2] - point).T).min() / kw)


# --- minimum-jerk path ----------------------------------------------------------------------
def test_min_jerk_passes_via_points_at_rest_and_c4_smooth():
    rng = np.random.default_rng(0)
    knots = np.concatenate(([0.0], np.cumsum(rng.uniform(0.5, 2.0, 6))))
    knots /= knots[-1]
    pts = rng.normal(size=(7, 2))
    coef = min_jerk_coefficients(knots, pts)
    assert np.allclose(eval_piecewise(knots, coef, knots), pts)
    h = np.diff(knots)
    c = coef
    for order in range(1, 5):  # derivative `order`: continuous at interior via-points
        c = c[:, 1:] * np.arange(1, c.shape[1])[None, :, None]
        at_end = sum(c[:, i] * h[:, None] ** i for i in range(c.shape[1]))
        at_start = c[:, 0]
        assert np.allclose(at_end[:-1], at_start[1:], atol=1e-6 * np.abs(at_start).max())
        if order <= 2:  # at rest at both ends
            assert np.allclose(at_start[0], 0) and np.allclose(at_end[-1], 0)


# --- traces ---------------------------------------------------------------------------------
def test_same_seed_same_trace_different_seed_different():
    style = sample_user_style(np.random.default_rng(5))
    a = generate_trace("hello", KB, style, np.random.default_rng(1))
    b = generate_trace("hello", KB, style, np.random.default_rng(1))
    c = generate_trace("hello", KB, style, np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    s1 = sample_user_style(np.random.default_rng(5))
    assert s1 == style
    assert sample_user_style(np.random.default_rng(6)) != style


@pytest.mark.parametrize("regime", ["train", "shifted"])
def test_traces_are_valid(lexicon, regime):
    for user in make_users(25, 3, lexicon, regime):
        kb = user.keyboard
        for s in user.swipes(12):
            assert isinstance(s, Swipe) and s.word and kb.can_type(s.word)
            p = s.points
            assert p.shape[1] == 3 and len(p) >= 2
            assert np.isfinite(p).all()
            assert p[0, 2] == 0 and (np.diff(p[:, 2]) >= 0).all()
            assert (p[:, 0] >= -kb.width).all() and (p[:, 0] <= 2 * kb.width).all()
            assert (p[:, 1] >= -kb.height).all() and (p[:, 1] <= 2 * kb.height).all()
            assert s.keyboard is kb


def test_one_letter_words_and_untypeable_words_are_refused():
    style = UserStyle()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        generate_trace("a", KB, style, rng)
    with pytest.raises(ValueError):
        generate_trace("héllo", KB, style, rng)


def test_clean_trace_goes_through_the_key_centres_and_is_timed_by_speed():
    style = clean_style(ms_per_letter=200.0, speed_log_sd=0.0, dwell_ms=0.0)
    trace = generate_trace("quiz", KB, style, np.random.default_rng(0))
    kw = KB.key_width
    for ch in "quiz":
        assert min_dist_kw(trace, KB.word_centres(ch)[0], kw) < 0.1
    assert np.hypot(*(trace[0, :2] - KB.word_centres("q")[0])) / kw < 0.05
    assert np.hypot(*(trace[-1, :2] - KB.word_centres("z")[0])) / kw < 0.1
    # about ms_per_letter per letter (the word's geometry scales it)
    assert 0.4 * 800 < trace[-1, 2] < 2.5 * 800


def test_repeated_letters_are_one_via_point():
    style = clean_style(double_letter_pause=0.0, speed_log_sd=0.0, dwell_ms=0.0)
    a = generate_trace("hello", KB, style, np.random.default_rng(3))
    b = generate_trace("helo", KB, style, np.random.default_rng(3))
    kw = KB.key_width
    for ch in "helo":
        assert min_dist_kw(a, KB.word_centres(ch)[0], kw) < 0.1
    # the same path as the word without the repeat
    path_a = np.hypot(*np.diff(a[:, :2], axis=0).T).sum()
    path_b = np.hypot(*np.diff(b[:, :2], axis=0).T).sum()
    assert path_a == pytest.approx(path_b, rel=0.02)
    # the repeated letter costs only a pause at its key
    paused = clean_style(double_letter_pause=0.6, speed_log_sd=0.0, dwell_ms=0.0)
    c = generate_trace("hello", KB, paused, np.random.default_rng(3))
    assert c[-1, 2] > 1.03 * a[-1, 2]
    assert np.hypot(*np.diff(c[:, :2], axis=0).T).sum() == pytest.approx(path_a, rel=0.02)
    # a word that is a single repeated letter is still a valid swipe
    s = generate_swipe("ll", KB, UserStyle(), np.random.default_rng(0))
    assert len(s.points) >= 2


def test_explicit_non_uniform_keyboard():
    # a non-uniform keyboard: wide and narrow keys, rows of different heights, a gap
    keys = [
        {"label": "a", "x": 0, "y": 0, "w": 120, "h": 80},
        {"label": "b", "x": 120, "y": 0, "w": 40, "h": 80},
        {"label": "c", "x": 200, "y": 0, "w": 60, "h": 80},
        {"label": "d", "x": 0, "y": 80, "w": 60, "h": 40},
        {"label": "e", "x": 60, "y": 80, "w": 200, "h": 40},
        {"label": "F", "x": 150, "y": 130, "w": 50, "h": 50},
        {"label": "shift", "x": 0, "y": 130, "w": 100, "h": 50},
    ]
    kb = keyboard_from_spec({"width": 260, "height": 180, "keys": keys})
    word = "adcfeb"
    clean = generate_trace(word, kb, clean_style(), np.random.default_rng(0))
    for ch in word:
        assert min_dist_kw(clean, np.array(kb.letter_keys[ch].centre), kb.key_width) < 0.1
    rng = np.random.default_rng(1)
    for seed in range(20):
        style = sample_user_style(np.random.default_rng(seed))
        s = generate_swipe(word, kb, style, rng)
        assert s.keyboard is kb and s.word == word
        start = np.array(kb.letter_keys["a"].centre)
        assert np.hypot(*(s.points[0, :2] - start)) / kb.key_width < 1.5


def test_style_keyboard_with_custom_stagger_is_explicit_geometry():
    style = UserStyle(kb_width=400, kb_aspect=2.0, row_offsets=(0.0, 0.3, 1.2))
    kb = style.keyboard()
    assert kb.layout is None and kb.to_spec()["keys"]
    assert kb.letter_keys["a"].x == pytest.approx(0.3 * 40)
    assert kb.letter_keys["z"].x == pytest.approx(1.2 * 40)
    assert kb.height == 200
    assert UserStyle(kb_width=400, kb_aspect=2.0).keyboard().layout == "qwerty-en"


# --- users ----------------------------------------------------------------------------------
def test_user_swipes_are_bit_identical_for_a_seed(lexicon):
    a = make_user(42, lexicon).swipes(15)
    b = make_user(42, lexicon).swipes(15)
    assert [s.word for s in a] == [s.word for s in b]
    assert all(np.array_equal(x.points, y.points) for x, y in zip(a, b, strict=True))
    c = make_user(43, lexicon).swipes(15)
    assert [s.word for s in a] != [s.word for s in c]
    other_stream = make_user(42, lexicon).swipes(15, stream=1)
    assert [s.word for s in other_stream] != [s.word for s in a]


def test_make_users_is_deterministic_and_prefix_stable(lexicon):
    five = make_users(5, 7, lexicon)
    three = make_users(3, 7, lexicon)
    assert [u.user_id for u in five] == [0, 1, 2, 3, 4]
    assert [u.seed for u in three] == [u.seed for u in five[:3]]
    assert [u.style for u in three] == [u.style for u in five[:3]]
    assert len({u.seed for u in five}) == 5
    assert [u.seed for u in make_users(3, 8, lexicon)] != [u.seed for u in three]


def _tv(a: list[str], b: list[str]) -> float:
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[w] / len(a) - cb[w] / len(b)) for w in set(ca) | set(cb))


def test_vocabularies_are_non_iid(lexicon):
    users = make_users(6, 11, lexicon)
    rng = np.random.default_rng(0)
    own, cross = [], []
    for i, u in enumerate(users):
        first, second = u.sample_words(3000, rng), u.sample_words(3000, rng)
        own.append(_tv(first, second))
        other = users[(i + 1) % len(users)].sample_words(3000, rng)
        cross.append(_tv(first, other))
        assert set(u.special_words) <= set(u.words)
    assert max(own) < min(cross)
    assert min(cross) > 0.3
    # user-specific words: each user's boosted rare words are far likelier for them
    u, v = users[0], users[1]
    p_u = sum(u.weights[u.words.index(w)] for w in u.special_words)
    p_v = sum(v.weights[v.words.index(w)] for w in u.special_words)
    assert p_u > 5 * p_v


def test_word_lengths_look_like_real_swipes(lexicon):
    users = make_users(20, 2, lexicon)
    lengths = [len(w) for u in users for w in u.sample_words(200)]
    assert min(lengths) >= 2
    assert 4 <= np.median(lengths) <= 6


def test_words_restriction_holds_words_out(lexicon):
    allowed = lexicon.words[::2]
    user = make_user(3, lexicon, words=allowed)
    assert set(user.words) <= set(allowed)
    sampled = set(user.sample_words(2000)) | {s.word for s in user.swipes(30)}
    assert sampled <= set(allowed)
    with pytest.raises(ValueError):
        make_user(3, lexicon, words=["notaword"])


def test_russian_lexicon_gets_a_russian_keyboard():
    ru = load_lexicon("ru", 2000)
    user = make_user(1, ru)
    assert user.style.layout == "jcuken-ru"
    for s in user.swipes(5):
        assert user.keyboard.can_type(s.word)


def test_styles_differ_between_users(lexicon):
    users = make_users(30, 5, lexicon)
    mpl, off_y = [], []
    for u in users:
        stats = compute_stats(u.swipes(12))
        mpl.append(stats["ms_per_letter"]["p50"])
        off_y.append(stats["start_offset_y_kw"]["p50"])
    assert np.percentile(mpl, 90) / np.percentile(mpl, 10) > 1.8
    assert np.percentile(off_y, 90) - np.percentile(off_y, 10) > 0.15
    assert len({u.style.kb_width for u in users}) > 10
    widths = [u.keyboard.width for u in users]
    assert min(widths) < 450 and max(widths) > 600


# --- regimes ------------------------------------------------------------------------------
def test_train_styles_stay_inside_train_ranges():
    rng = np.random.default_rng(0)
    for _ in range(300):
        style = sample_user_style(rng, "train")
        for name, (lo, hi) in TRAIN_RANGES.items():
            assert lo <= getattr(style, name) <= hi, name
        assert style.shifted == ()


def test_shifted_styles_lie_outside_train_ranges():
    rng = np.random.default_rng(1)
    for _ in range(300):
        style = sample_user_style(rng, "shifted")
        assert set(style.shifted) == set(SHIFTED_RANGES)
        for name in SHIFTED_RANGES:
            lo, hi = TRAIN_RANGES[name]
            assert not lo <= getattr(style, name) <= hi, name
    only = sample_user_style(rng, "shifted", shifted=["ms_per_letter"])
    assert only.ms_per_letter < TRAIN_RANGES["ms_per_letter"][0]
    lo, hi = TRAIN_RANGES["kb_width"]
    assert lo <= only.kb_width <= hi
    with pytest.raises(ValueError):
        sample_user_style(rng, "weird")
    with pytest.raises(ValueError):
        sample_user_style(rng, "shifted", shifted=["no_such_parameter"])


def test_shifted_users_are_measurably_shifted(lexicon):
    users = make_users(25, 4, lexicon, "shifted")
    swipes = [s for u in users for s in u.swipes(8)]
    stats = compute_stats(swipes)
    assert stats["ms_per_letter"]["p50"] < 110
    assert stats["end_dist_kw"]["p50"] > 0.68


# --- calibration against the real table ------------------------------------------------------
def test_calibration_medians_within_real_iqr(lexicon):
    users = make_users(50, 2024, lexicon)
    swipes, ids = [], []
    for u in users:
        batch = u.swipes(20)
        swipes += batch
        ids += [u.user_id] * len(batch)
    stats = compute_stats(swipes, ids)
    ok = within_real_iqr(stats, [*CALIBRATED, "person_ms_per_letter", "person_path_ratio"])
    assert all(ok.values()), {q: stats[q]["p50"] for q, good in ok.items() if not good}
    # endings are sloppier than starts, with a heavy tail
    assert stats["end_dist_kw"]["p50"] > stats["start_dist_kw"]["p50"] + 0.08
    assert 0.9 < stats["end_dist_kw"]["p95"] < 1.8
    assert stats["start_offset_y_kw"]["mean"] > 0.04  # people land below the key centre
    assert 1.3 < stats["path_ratio"]["p95"] < 1.9  # a few wandering traces
    assert stats["sampling_interval_ms"]["p50"] == pytest.approx(17, abs=1)


def test_generation_is_fast(lexicon):
    import time

    user = make_user(9, lexicon)
    words = user.sample_words(300)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for w in words:
        generate_trace(w, user.keyboard, user.style, rng)
    per_swipe = (time.perf_counter() - start) / len(words)
    assert per_swipe < 0.005  # ~0.3 ms on the reference machine; generous for busy CI


def test_tidy_style_is_noise_free_and_deterministic():
    style = tidy_style()
    a = generate_trace("world", KB, style, np.random.default_rng(0))
    b = generate_trace("world", KB, style, np.random.default_rng(1))
    for trace in (a, b):
        assert np.allclose(trace[0, :2], KB.word_centres("w")[0])
        assert np.hypot(*(trace[-1, :2] - KB.word_centres("d")[0])) < 0.05 * KB.key_width
    assert tidy_style(ms_per_letter=100.0).ms_per_letter == 100.0


def test_user_style_is_frozen():
    style = UserStyle()
    with pytest.raises(dataclasses.FrozenInstanceError):
        style.ms_per_letter = 1.0  # type: ignore[misc]
