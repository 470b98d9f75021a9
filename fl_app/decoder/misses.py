"""Why a decoder missed a swipe: what the winning word is to the truth, and which evidence
decided against the truth.

A target the decoder falls short of is only worth chasing with a lever that acts on the misses
it has. These readings say which: a better model of the trace (the trace itself prefers the
wrong word), a better prior, such as a language model over the preceding words (the trace
prefers the truth, or cannot tell, and the word frequencies decide), or the candidate cuts (the truth
never reached the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_app.decoder.features import collapse_repeats
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.ranking import CandidateScores, FusionWeights
from fl_app.decoder.template import resample_path

NEIGHBOUR_KU = 1.5  # key centres at most this far apart (key units) are neighbours

# What the decoder's first word is to the truth, checked in this order.
KINDS = (
    "doubled letter",  # the same word once a doubled letter is dropped: to / too
    "neighbouring key",  # one letter differs, and its keys touch: in / on, so / do
    "another letter",  # one letter differs, keys apart: of / if
    "shorter or longer",  # one word begins the other: we / were, need / needed
    "another word",
)
# Which evidence decided, checked in this order.
CAUSES = (
    "not in the lexicon",
    "cut before the model scored it",
    "the prior outweighed the trace",  # or decided a tie (to / too look alike)
    "the trace preferred another word",
)


def confusion_kind(truth: str, guess: str, keyboard: Keyboard) -> str:
    """The first of KINDS that the guess is to the truth (both distinct words)."""
    if collapse_repeats(truth) == collapse_repeats(guess):
        return KINDS[0]
    if len(truth) == len(guess):
        diff = [(a, b) for a, b in zip(truth, guess) if a != b]
        if len(diff) == 1:
            return KINDS[1] if _neighbours(*diff[0], keyboard) else KINDS[2]
    if truth.startswith(guess) or guess.startswith(truth):
        return KINDS[3]
    return KINDS[4]


def _neighbours(a: str, b: str, keyboard: Keyboard) -> bool:
    index = keyboard.letter_index
    if a not in index or b not in index:
        return False
    centres = keyboard.letter_centres_ku
    return bool(np.linalg.norm(centres[index[a]] - centres[index[b]]) <= NEIGHBOUR_KU)


def distance_from_word(
    points: np.ndarray, keyboard: Keyboard, word: str, shift_free: bool = False
) -> float:
    """Mean distance in key units between a trace and the polyline through its word's keys,
    both resampled evenly along their length (the template's location channel, for the truth
    alone): how far a swipe strays from the word it is labelled with. A trace two keys off
    on average is seldom that word's, whatever its label says.

    `shift_free` first moves the trace by its mean offset from the word's path: the word's
    shape drawn in the wrong place (a finger a row low all the way) then lies near 0, so a far
    trace that stays far is not the word's shape either."""
    trace = resample_path(keyboard.to_key_units(points[:, :2].astype(float)))
    word_path = resample_path(keyboard.to_key_units(keyboard.word_centres(word)))
    offsets = trace - word_path
    if shift_free:
        offsets = offsets - offsets.mean(axis=0)
    return float(np.linalg.norm(offsets, axis=1).mean())


@dataclass(frozen=True)
class MissReading:
    """One missed swipe: which evidence decided, and whether a perfect context would save it."""

    cause: str  # one of CAUSES
    # How much more the trace (everything but the prior) gives the first word than the truth,
    # in the fused score's units (nats of CTC likelihood); NaN when the truth was not scored.
    trace_margin: float
    # The truth would win if its prior were above every other scored candidate's: what a
    # language model that knew the preceding words could at most do for this swipe.
    context_could_fix: bool


def read_miss(scores: CandidateScores, fusion: FusionWeights, truth: int) -> MissReading:
    """Read one miss from its candidates' evidence; `truth` is the true word's lexicon index
    (-1 when the lexicon lacks it). The caller knows it is a miss."""
    if truth < 0:
        return MissReading(CAUSES[0], float("nan"), False)
    where = np.flatnonzero(scores.lexicon_index == truth)
    if not len(where):
        return MissReading(CAUSES[1], float("nan"), False)
    t = int(where[0])
    combined = scores.combined(fusion)
    winner = int(np.argmax(combined))
    prior = fusion.prior * scores.prior
    # everything but the prior, summed afresh: `combined - prior` would round a tie apart
    trace = (
        scores.ctc + fusion.template * scores.template + fusion.length_bonus * scores.target_length
    )
    cause = CAUSES[2] if trace[t] >= trace[winner] else CAUSES[3]
    others = np.delete(combined, t)
    # a prior just above every other candidate's: a tie with the best rival goes to the truth
    could_fix = trace[t] + float(prior.max()) >= float(others.max(initial=-np.inf))
    return MissReading(cause, float(trace[winner] - trace[t]), bool(could_fix))
