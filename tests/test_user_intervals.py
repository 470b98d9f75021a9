"""The intervals every real figure and every paired comparison is reported with resample
*people*, not swipes: one person's swipes share a hand and a phone, so they move together."""

from __future__ import annotations

from fl_app.datasets.real_eval import RealFigure, paired_points, user_bootstrap


def test_a_difference_carried_by_one_person_gets_an_interval_that_reaches_zero():
    # nine swipes of one person gain, one swipe of another does not: resampling swipes would
    # give a tight interval round +90; resampling the two people gives every mix of them
    users = ["a"] * 9 + ["b"]
    better = [1.0] * 10
    worse = [0.0] * 9 + [1.0]
    mean, low, high = user_bootstrap(users, better, worse)
    assert abs(mean - 0.9) < 1e-12
    assert (low, high) == (0.0, 1.0)
    assert paired_points(users, better, worse) == "+90.0 (+0.0 to +100.0)"


def test_equal_models_differ_by_nothing_and_the_sign_follows_the_order():
    users = ["a", "a", "b", "c"]
    hits = [1.0, 0.0, 1.0, 1.0]
    assert paired_points(users, hits, hits) == "+0.0 (+0.0 to +0.0)"
    none = [0.0] * 4
    assert paired_points(users, none, [1.0] * 4) == "-100.0 (-100.0 to -100.0)"
    assert paired_points(users, hits, none) == "+75.0 (+50.0 to +100.0)"


def test_a_figures_hits_count_only_the_first_rank():
    """What the paired benchmarks pair: a word ranked second, or not at all, is a miss."""
    fig = RealFigure("m", "10k", {}, (0.0, 0.0), ranks=[1, 2, None, 1])
    assert fig.hits.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_a_comparison_within_one_kind_of_swipe_pairs_only_those_swipes_and_their_people():
    """`--split-by-words-of`: a gain on learnt words must not be diluted by, or leak into,
    the other words' figure."""
    users = ["a", "a", "b", "b"]
    better = [1.0, 1.0, 0.0, 1.0]
    worse = [0.0, 1.0, 0.0, 1.0]
    learnt = [True, False, True, False]
    assert paired_points(users, better, worse, learnt) == "+50.0 (+0.0 to +100.0)"
    assert paired_points(users, better, worse, [not k for k in learnt]) == "+0.0 (+0.0 to +0.0)"
    assert paired_points(users, better, worse) == "+25.0 (+0.0 to +50.0)"
