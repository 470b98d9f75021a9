"""Grid-search the decoders' few weights on a tuning set of synthetic users.

Scores are computed once per swipe and recombined for every grid point, so a grid of a
hundred settings costs little more than one decoding pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fl_app.decoder.ranking import CandidateScores, FusionWeights, LearnedDecoder, model_cut
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.template import TemplateDecoder, TemplateParams

SIGMA_SHAPE_GRID = (0.06, 0.09, 0.12, 0.18, 0.25)
SIGMA_LOCATION_GRID = (0.3, 0.45, 0.6, 0.8, 1.1)
PRIOR_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
FUSION_TEMPLATE_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
LETTERS_GRID = (0.0, 2.0, 4.0, 8.0, 16.0)  # the positional letter score in the model's cut
LENGTH_BONUS_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # per letter of a candidate's CTC target


def _top1(scored: list[tuple[np.ndarray, np.ndarray]], truth: list[int]) -> float:
    hits = [len(s) > 0 and idx[int(np.argmax(s))] == t for (idx, s), t in zip(scored, truth)]
    return float(np.mean(hits))


def _top_k(scored: list[tuple[np.ndarray, np.ndarray]], truth: list[int], k: int) -> float:
    """Share of swipes whose truth is among their k best candidates; ties go to the earlier
    candidate, as argmax breaks them. k=1 takes `_top1`, the same figure at a third of the
    time: the grids run it thousands of times."""
    if k == 1:
        return _top1(scored, truth)
    hits = []
    for (idx, s), t in zip(scored, truth):
        at = np.flatnonzero(idx == t)
        if len(at) == 0:
            hits.append(False)
            continue
        mine = s[at[0]]
        hits.append(int((s > mine).sum()) + int((s[: at[0]] == mine).sum()) < k)
    return float(np.mean(hits))


def tune_template(
    decoder: TemplateDecoder, swipes: Sequence[Swipe]
) -> tuple[TemplateParams, float]:
    """Best (sigma_shape, sigma_location, prior_weight) by top-1; returns params and top-1."""
    lex = decoder.lexicon
    truth = [lex.index(s.word) if s.word in lex else -1 for s in swipes]
    parts = []
    for s in swipes:
        cand, d_shape, d_loc = decoder.channel_distances(s.points, s.keyboard)
        tpl = decoder.templates(s.keyboard)
        parts.append((tpl.word_index[cand], d_shape, d_loc, tpl.log_prior[cand]))
    best = (-1.0, decoder.params)
    for ss, sl, pw in itertools.product(SIGMA_SHAPE_GRID, SIGMA_LOCATION_GRID, PRIOR_GRID):
        scored = [
            (idx, -0.5 * (ds / ss) ** 2 - 0.5 * (dl / sl) ** 2 + pw * pr)
            for idx, ds, dl, pr in parts
        ]
        acc = _top1(scored, truth)
        if acc > best[0]:
            best = (
                acc,
                replace(decoder.params, sigma_shape=ss, sigma_location=sl, prior_weight=pw),
            )
    return best[1], best[0]


def tune_fusion(
    decoder: LearnedDecoder, swipes: Sequence[Swipe], k: int = 1
) -> tuple[FusionWeights, float]:
    """Best fusion weights by top-k (top-1 unless asked: the first suggestion is what a swipe
    types; k=4 asks what the suggestion bar could hold): the template score's, the prior's and
    the per-letter length bonus beside the CTC score, and (when the decoder cuts a `wide`
    template list down to its `shortlist` with the model's help) the positional letter score's
    weight in that cut. Returns the weights and their top-k.

    Every wide candidate is CTC-scored once, so each grid point replays the cut and the
    ranking exactly as decoding would, without running the model again.
    """
    lex = decoder.lexicon
    truth = [lex.index(s.word) if s.word in lex else -1 for s in swipes]
    cut = decoder.fusion.wide > decoder.fusion.shortlist
    evidence: list[tuple[CandidateScores, np.ndarray]] = []  # every wide candidate's
    for s, lp in decoder.batched_log_probs(swipes):
        sl = decoder.shortlist(s.points, s.keyboard)
        idx = sl.lexicon_index
        letters = decoder.letter_scores(lp, idx) if cut else np.zeros(len(idx))
        scores = CandidateScores(
            idx, decoder.ctc_scores(lp, idx), sl.template, sl.prior, decoder.target_lengths(idx)
        )
        evidence.append((scores, letters))
    m = decoder.fusion.shortlist
    best = (-1.0, decoder.fusion)
    letters_grid = LETTERS_GRID if cut else (0.0,)
    for tw, pw, lw in itertools.product(FUSION_TEMPLATE_GRID, PRIOR_GRID, letters_grid):
        cut_weights = replace(decoder.fusion, template=tw, prior=pw, letters=lw)
        shortlisted = []  # the cut does not depend on the length bonus: made once per point
        for scores, letters in evidence:
            if len(scores.lexicon_index) > m:
                keep = model_cut(cut_weights, scores.template, scores.prior, letters)
                scores = scores.subset(keep)
            shortlisted.append(scores)
        for lb in LENGTH_BONUS_GRID:
            weights = replace(cut_weights, length_bonus=lb)
            scored = [(sc.lexicon_index, sc.combined(weights)) for sc in shortlisted]
            acc = _top_k(scored, truth, k)
            if acc > best[0]:
                best = (acc, weights)
    return best[1], best[0]
