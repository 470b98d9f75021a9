"""The word-pair prior (fl_app/decoder/context.py): counts read from real files as the corpora's
packages ship them, and the feature's arithmetic."""

from __future__ import annotations

import gzip
import hashlib
import json
import math

import numpy as np
import pytest
from test_decoder import clean_trace

import fl_app.decoder.context as context_module
from fl_app.decoder.context import (
    CountsFileError,
    WordPairPrior,
    context_feature,
    previous_words,
    read_counts,
    shipped_context,
    shipped_settings,
    shipped_table,
)
from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.ranking import LearnedDecoder

QWERTY = named_keyboard("qwerty-en", 400.0, 200.0)


@pytest.fixture
def prior(tmp_path) -> WordPairPrior:
    # Tab-separated unigrams (wordsegment's layout), space-separated pairs (symspellpy's).
    (tmp_path / "uni.txt").write_text("you\t100\nare\t300\nart\t200\nthe\t400\n")
    (tmp_path / "pairs.txt").write_text("are you 60\nthe art 1\n")
    return WordPairPrior.from_counts(tmp_path / "uni.txt", tmp_path / "pairs.txt")


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


def test_a_table_writes_the_same_bytes_and_reads_back_the_same_ratios(prior, tmp_path):
    prior.write(tmp_path / "a.tsv.gz")
    again = WordPairPrior.load(tmp_path / "a.tsv.gz")
    again.write(tmp_path / "b.tsv.gz")
    assert (tmp_path / "a.tsv.gz").read_bytes() == (tmp_path / "b.tsv.gz").read_bytes()
    words = ["you", "art", "the", "zebra"]
    for previous in ("are", "the", "you"):
        a, b = prior.ratios(previous, words), again.ratios(previous, words)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.allclose(a, b, rtol=1e-3)
    assert len(again) == len(prior) == 2


def test_the_shipped_table_matches_its_manifest_and_knows_english():
    settings = json.loads(shipped_settings("en").read_text())
    table = shipped_table("en")
    assert hashlib.sha256(table.read_bytes()).hexdigest() == settings["sha256"]
    context = shipped_context("en")
    assert context is not None and len(context.pairs) == settings["pairs"]
    assert (context.share, context.weight) == (settings["share"], settings["weight"])
    to, too = context.bonus("want", ["to", "too"])
    assert to > 0 > too
    assert shipped_context("xx") is None  # no table for a language: no context


def test_a_table_that_is_not_its_manifests_is_refused(tmp_path, monkeypatch, prior):
    monkeypatch.setattr(context_module, "DATA", tmp_path)
    prior.write(tmp_path / "word-pairs-zz.tsv.gz")
    (tmp_path / "word-pairs-zz.json").write_text(
        json.dumps({"sha256": "0" * 64, "share": 0.5, "weight": 1.0})
    )
    with pytest.raises(ValueError, match="sha256"):
        shipped_context.__wrapped__("zz")


def test_the_previous_word_decides_what_the_trace_cannot(small_trained):
    """A clean trace of "to" decodes as "too" when the lexicon makes "too" more frequent (a
    CTC target and a template cannot see a doubled letter); after "want" it decodes as "to",
    and a previous word the table does not know changes nothing."""
    spec, model, _, _ = small_trained
    lexicon = Lexicon(["to", "too", "the", "you"], np.array([1e-3, 1e-2, 1e-2, 1e-2]))
    decoder = LearnedDecoder(model, spec.features, lexicon)
    points = clean_trace("to", QWERTY)
    without = decoder.decode(points, QWERTY, k=2)
    assert without[0][0] == "too"
    decoder.context = shipped_context("en")
    assert decoder.decode(points, QWERTY, k=2) == without  # no previous word: as before
    assert decoder.decode(points, QWERTY, k=2, previous="qqqq") == without
    after_want = dict(decoder.decode(points, QWERTY, k=2, previous="want"))
    assert max(after_want, key=after_want.get) == "to"
    bonus = dict(zip(["to", "too"], decoder.context.bonus("want", ["to", "too"])))
    for word, score in without:
        assert after_want[word] == pytest.approx(score + bonus[word])
