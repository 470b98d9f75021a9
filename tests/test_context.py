"""The word-pair prior (fl_app/decoder/context.py): counts read from real files as the corpora's
packages ship them, and the feature's arithmetic."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from fl_app.decoder.context import (
    CountsFileError,
    WordPairPrior,
    context_feature,
    previous_words,
    read_counts,
)


@pytest.fixture
def prior(tmp_path) -> WordPairPrior:
    # Tab-separated unigrams (wordsegment's layout), space-separated pairs (symspellpy's).
    (tmp_path / "uni.txt").write_text("you\t100\nare\t300\nart\t200\nthe\t400\n")
    (tmp_path / "pairs.txt").write_text("are you 60\nthe art 1\n")
    return WordPairPrior.from_files(tmp_path / "uni.txt", tmp_path / "pairs.txt")


def test_counts_are_read_from_both_layouts_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text("Are you\t5\nare   you 2\n\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as fh:
        fh.write("are\t7\n")
    assert read_counts(tmp_path / "a.txt", 2) == {("are", "you"): 7.0}
    assert read_counts(tmp_path / "b.txt.gz", 1) == {("are",): 7.0}


@pytest.mark.parametrize(
    ("line", "why"),
    [("are you\n", "expected 2 word"), ("are you x\n", "bad count"), ("are you -3\n", "bad count")],
)
def test_a_bad_line_is_refused_with_its_place(tmp_path, line, why):
    path = tmp_path / "pairs.txt"
    path.write_text("the art 1\n" + line)
    with pytest.raises(CountsFileError, match=rf"pairs.txt:2: {why}"):
        read_counts(path, 2)


def test_a_word_common_after_the_previous_one_gains_and_an_unseen_pair_loses(prior):
    share = 0.9
    got = prior.feature("are", ["you", "art", "the"], share)
    # P(you | are) = 60 / 300, P(you) = 100 / 1000: twice as likely after "are".
    assert got[0] == pytest.approx(math.log(share * (60 / 300) / (100 / 1000) + 1 - share))
    assert got[1] == got[2] == pytest.approx(math.log(1 - share))
    assert got[0] > 0 > got[1]


def test_no_known_previous_word_changes_nothing(prior):
    for previous in (None, "zebra"):
        assert np.array_equal(prior.feature(previous, ["you", "art"], 0.9), np.zeros(2))
    assert np.array_equal(prior.feature("are", ["you"], 0.0), np.zeros(1))


def test_the_share_must_leave_room_for_the_unigram():
    with pytest.raises(ValueError, match="share"):
        context_feature(np.ones(2), 1.0, 2)


def test_the_previous_word_is_the_same_users_swipe_just_before():
    rows = [("u1", 1), ("u2", 0), ("u1", 0), ("u1", 3)]
    words = ["you", "hi", "are", "soon"]
    assert previous_words(rows, words) == ["are", None, None, None]
