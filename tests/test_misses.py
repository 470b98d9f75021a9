"""Reading a decoder's misses (fl_app/decoder/misses.py): the kind of confusion, which evidence
decided, and what a perfect context could save; bench/real_misses.py builds on these."""

import math

import numpy as np
import pytest
from test_decoder import clean_trace

from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.misses import (
    CAUSES,
    KINDS,
    confusion_kind,
    distance_from_word,
    read_miss,
)
from fl_app.decoder.ranking import CandidateScores, FusionWeights, LearnedDecoder

QWERTY = named_keyboard("qwerty-en", 400.0, 200.0)


@pytest.mark.parametrize(
    ("truth", "guess", "kind"),
    [
        ("too", "to", "doubled letter"),
        ("letter", "leter", "doubled letter"),
        ("in", "on", "neighbouring key"),  # i and o touch
        ("so", "do", "neighbouring key"),
        ("cat", "cut", "another letter"),  # a and u are four keys apart
        ("we", "were", "shorter or longer"),
        ("needed", "need", "shorter or longer"),
        ("hello", "world", "another word"),
        ("of", "off", "doubled letter"),  # checked before shorter or longer
    ],
)
def test_confusion_kind(truth, guess, kind):
    assert kind in KINDS
    assert confusion_kind(truth, guess, QWERTY) == kind


def _scores(ctc, prior, template=None, index=None):
    n = len(ctc)
    return CandidateScores(
        np.arange(n) if index is None else np.asarray(index),
        np.asarray(ctc, float),
        np.zeros(n) if template is None else np.asarray(template, float),
        np.asarray(prior, float),
        np.zeros(n),
    )


WEIGHTS = FusionWeights(template=0.5, prior=1.0, length_bonus=0.0)


def test_a_word_the_lexicon_lacks_or_the_cut_dropped():
    scores = _scores([-1.0, -2.0], [-3.0, -3.0], index=[4, 9])
    absent = read_miss(scores, WEIGHTS, -1)
    assert absent.cause == CAUSES[0] and math.isnan(absent.trace_margin)
    cut = read_miss(scores, WEIGHTS, 7)
    assert cut.cause == CAUSES[1] and not cut.context_could_fix


def test_the_prior_outweighs_a_trace_that_prefers_the_truth():
    # truth (1) has the better trace (-2 + 0.5 * -1 against -3), the winner the better prior
    scores = _scores([-3.0, -2.0], [-1.0, -5.0], template=[0.0, -1.0])
    reading = read_miss(scores, WEIGHTS, 1)
    assert reading.cause == CAUSES[2]
    assert reading.trace_margin == pytest.approx(-0.5)
    assert reading.context_could_fix  # with the winner's prior it wins


def test_a_trace_that_prefers_another_word_by_more_than_any_prior_gap():
    scores = _scores([-1.0, -9.0, -4.0], [-2.0, -1.0, -3.0])
    reading = read_miss(scores, WEIGHTS, 1)
    assert reading.cause == CAUSES[3]
    assert reading.trace_margin == pytest.approx(8.0)
    assert not reading.context_could_fix  # best prior: -9 - 1 = -10 against -1 - 2 = -3


def test_a_real_decoder_cannot_tell_a_doubled_letter(small_trained):
    """ "to" and "too" share a CTC target and a template: when the lexicon makes "too" more
    frequent, a clean trace of "to" decodes as "too" and the reading says the prior decided."""
    spec, model, _, _ = small_trained
    lexicon = Lexicon(["to", "too", "the", "you"], np.array([1e-3, 1e-2, 1e-2, 1e-2]))
    decoder = LearnedDecoder(model, spec.features, lexicon)
    points = clean_trace("to", QWERTY)
    scores = decoder.candidate_scores(
        points, QWERTY, decoder.frame_log_probs([(points, QWERTY)])[0]
    )
    assert decoder.ranked(scores, 1)[0][0] == "too"
    reading = read_miss(scores, decoder.fusion, lexicon.index("to"))
    assert confusion_kind("to", "too", QWERTY) == KINDS[0]
    assert reading.cause == CAUSES[2] and reading.trace_margin == 0.0
    assert reading.context_could_fix


def test_distance_from_word():
    trace = clean_trace("hello", QWERTY)
    assert distance_from_word(trace, QWERTY, "hello") < 0.05
    assert distance_from_word(trace, QWERTY, "helo") < 0.05  # a doubled key adds no path
    shifted = trace + np.array([QWERTY.key_width, 0.0, 0.0])  # one key to the right
    assert distance_from_word(shifted, QWERTY, "hello") == pytest.approx(1.0, abs=0.01)
    assert distance_from_word(trace, QWERTY, "zap") > 1.0  # another word, across the keys
    # Moved back by its mean offset, the right shape in the wrong place lies near its word;
    # another word's trace does not.
    assert distance_from_word(shifted, QWERTY, "hello", shift_free=True) < 0.05
    assert distance_from_word(trace, QWERTY, "zap", shift_free=True) > 1.0
