"""Real people's habits: measured from traces in the movement's frame, replayed by the
generator onto new words, and chosen by the pretraining recipe only from parts it may learn
from."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.lexicon import load_lexicon
from fl_app.decoder.swipe import Swipe
from fl_app.synthetic.habits import (
    MIN_SWIPES_PER_PERSON,
    PersonHabits,
    build_bank,
    measure_habit,
    monotone_alignment,
)
from fl_app.synthetic.motion import generate_trace
from fl_app.synthetic.style import tidy_style
from fl_app.synthetic.users import iter_users, make_user

KB = named_keyboard("qwerty-en", 375, 218)
KW = KB.key_width


def straight_trace(word: str, end_shift_kw: tuple[float, float] = (0.0, 0.0)) -> Swipe:
    """A trace through the word's key centres, densely sampled, whose last point is moved."""
    centres = KB.word_centres(word)
    pts = np.concatenate(
        [np.linspace(a, b, 12, endpoint=False) for a, b in itertools.pairwise(centres)]
        + [centres[-1:]]
    )
    pts[-1] += np.array(end_shift_kw) * KW
    t = np.arange(len(pts), dtype=np.float64) * 10.0
    return Swipe(np.column_stack([pts, t]), KB, word)


def alignment_cost(xy: np.ndarray, targets: np.ndarray, ix) -> float:
    return sum(float(np.hypot(*(xy[j] - targets[i]))) for i, j in enumerate(ix))


def test_alignment_is_the_best_monotone_one():
    rng = np.random.default_rng(0)
    for _ in range(100):
        xy = rng.normal(size=(int(rng.integers(2, 7)), 2))
        targets = rng.normal(size=(int(rng.integers(1, 4)), 2))
        got = monotone_alignment(xy, targets)

        best = min(
            alignment_cost(xy, targets, ix)
            for ix in itertools.combinations_with_replacement(range(len(xy)), len(targets))
        )
        assert np.all(np.diff(got) >= 0)
        assert alignment_cost(xy, targets, got) == pytest.approx(best)


def test_alignment_does_not_jump_to_a_later_pass():
    # The trace passes A (near 0), then B (near 5), then comes back right onto A's spot: a
    # greedy nearest point for A would take the last pass and leave B nothing after it.
    xy = np.array([[0.2, 0.0], [2.5, 0.0], [5.0, 0.0], [2.5, 0.0], [0.0, 0.0]])
    targets = np.array([[0.0, 0.0], [5.0, 0.0]])
    assert list(monotone_alignment(xy, targets)) == [0, 2]


def test_end_offsets_are_measured_along_the_last_movement():
    # "as" ends moving right (a -> s), "sa" ends moving left: the same screen shift to the
    # right is an overshoot on one and stopping short on the other.
    right = measure_habit(straight_trace("as", (0.5, 0.0)))
    left = measure_habit(straight_trace("sa", (0.5, 0.0)))
    assert right.end == pytest.approx([0.5, 0.0], abs=1e-9)
    assert left.end == pytest.approx([-0.5, 0.0], abs=1e-9)
    # Across the movement: a shift down (y grows downwards) on a rightward move.
    down = measure_habit(straight_trace("as", (0.0, 0.3)))
    assert down.end == pytest.approx([0.0, 0.3], abs=1e-9)


def test_corners_and_starts_of_a_clean_trace_are_zero():
    habit = measure_habit(straight_trace("word"))
    assert habit.start == pytest.approx([0.0, 0.0])
    assert habit.corners.shape == (2, 2)  # o and r; w and d are the ends
    assert np.abs(habit.corners).max() < 1e-9
    assert measure_habit(straight_trace("aa")) is None  # one via letter: no movement


def test_replayed_ends_land_where_the_person_puts_them():
    """A person who always stops one key width short: generated traces of new words stop
    about one key width short of their last key, whichever way the last movement goes."""
    style = tidy_style(sample_interval_ms=4.0)
    short = PersonHabits(
        starts=np.zeros((3, 2)), ends=np.tile([-1.0, 0.0], (3, 1)), corners=np.zeros((0, 2))
    )
    for word in ("they", "hello", "quiz", "pol"):
        rng = np.random.default_rng(1)
        trace = generate_trace(word, KB, style, rng, habits=short)
        centres = KB.word_centres(word) / KW
        last_move = centres[-1] - centres[-2]
        last_move /= np.hypot(*last_move)
        end = trace[-1, :2] / KW - centres[-1]
        assert float(end @ last_move) == pytest.approx(-1.0, abs=0.25)
        start = trace[0, :2] / KW - centres[0]
        assert np.hypot(*start) < 0.25
        plain = generate_trace(word, KB, style, np.random.default_rng(1))
        assert np.hypot(*(plain[-1, :2] / KW - centres[-1])) < 0.05


def test_bank_keeps_people_with_enough_swipes_and_hashes_their_offsets():
    words = ["hello", "world", "quick", "brown", "jumps", "lazy", "dogs"]
    rows = [("p1", straight_trace(w)) for w in words]
    rows += [("p2", straight_trace(w, (0.3, 0.1))) for w in words[: MIN_SWIPES_PER_PERSON - 1]]
    bank = build_bank(rows)
    assert len(bank) == 1 and bank.swipes == len(words)
    moved = build_bank([(p, straight_trace(s.word, (0.01, 0.0))) for p, s in rows])
    assert moved.digest != bank.digest
    with pytest.raises(ValueError, match="nothing to replay"):
        build_bank(rows[MIN_SWIPES_PER_PERSON:])


def test_users_replay_their_person_in_the_given_share_and_are_unchanged_without():
    lexicon = load_lexicon("en", 2000)
    words = ["hello", "world", "quick", "brown", "jumps", "lazy", "dogs"]
    far = build_bank([("far", straight_trace(w, (2.5, 0.0))) for w in words])
    plain = [s.points for u in iter_users(3, 5, lexicon) for s in u.swipes(20)]
    none = [s.points for u in iter_users(3, 5, lexicon, habits=far) for s in u.swipes(20)]
    every = [
        s for u in iter_users(3, 5, lexicon, habits=far, habit_share=1.0) for s in u.swipes(20)
    ]
    # habit_share 0 draws nothing extra: the same swipes, bit for bit
    assert all(np.array_equal(a, b) for a, b in zip(plain, none, strict=True))
    # a person who ends 2.5 kw past the key (on a rightward move): far-off ends on every swipe
    ends = [np.hypot(*(s.points[-1, :2] - s.keyboard.word_centres(s.word)[-1])) for s in every]
    kws = [s.keyboard.key_width for s in every]
    assert np.median(np.array(ends) / np.array(kws)) > 1.5
    user = make_user(5, lexicon)
    assert user.habits is None
    with pytest.raises(ValueError, match="habit_share"):
        next(iter_users(1, 5, lexicon, habits=far, habit_share=1.5))


def test_the_recipe_replays_only_parts_it_may_learn_from(real_swipes_dir):
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import habit_bank, habits_record

    cfg = PretrainConfig()
    assert habit_bank(cfg) is None and habits_record(cfg, None) is None
    cfg.data.habits_from = ["public-train", "dev"]
    with pytest.raises(ValueError, match="dev"):
        habit_bank(cfg)
    cfg.data.habits_from = ["public-train"]
    bank = habit_bank(cfg)
    record = habits_record(cfg, bank)
    assert record["from"] == ["public-train"] and record["people"] == len(bank) > 200
    assert record["swipes"] > 14_000 and len(record["sha256"]) == 64
