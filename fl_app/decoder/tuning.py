"""Grid-search the decoders' few weights on a tuning set of synthetic users.

Scores are computed once per swipe and recombined for every grid point, so a grid of a
hundred settings costs little more than one decoding pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from fl_app.decoder.ranking import CandidateScores, FusionWeights, LearnedDecoder
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.template import TemplateDecoder, TemplateParams

SIGMA_SHAPE_GRID = (0.06, 0.09, 0.12, 0.18, 0.25)
SIGMA_LOCATION_GRID = (0.3, 0.45, 0.6, 0.8, 1.1)
PRIOR_GRID = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
FUSION_TEMPLATE_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def _top1(scored: list[tuple[np.ndarray, np.ndarray]], truth: list[int]) -> float:
    hits = [len(s) > 0 and idx[int(np.argmax(s))] == t for (idx, s), t in zip(scored, truth)]
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


def tune_fusion(decoder: LearnedDecoder, swipes: Sequence[Swipe]) -> tuple[FusionWeights, float]:
    """Best weights of the template score and the prior next to the CTC score, by top-1."""
    lex = decoder.lexicon
    truth = [lex.index(s.word) if s.word in lex else -1 for s in swipes]
    scores: list[CandidateScores] = decoder.score_many(list(swipes))
    best = (-1.0, decoder.fusion)
    for tw, pw in itertools.product(FUSION_TEMPLATE_GRID, PRIOR_GRID):
        fusion = replace(decoder.fusion, template=tw, prior=pw)
        acc = _top1([(s.lexicon_index, s.combined(fusion)) for s in scores], truth)
        if acc > best[0]:
            best = (acc, fusion)
    return best[1], best[0]
