"""How the project measures a decoder on real users: the lexicon conditions, decoding weights
chosen on public-val, figures on dev, and confidence from resampling users.

Two lexicon conditions are reported side by side:

- *lexicon + the evaluated words* (the literature's convention): the product's most frequent
  `size` words plus every word the evaluated users swiped, so a miss is the decoder's fault;
  added words take their frequency from the product's lexicon file (wordfreq) where it has
  them, else `DEFAULT_ADDED_FREQ`. Never the dataset's own frequencies: its prompts are shared
  by all users, so they would inflate every figure;
- *the lexicon as shipped*: what a user gets; a word outside it cannot be typed.

Everything tunable (template sigmas, fusion weights) is fitted on public-val users with the
same condition built from *their* words, and only then measured on dev.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fl_app.datasets.real import RealSwipe
from fl_app.decoder.evaluation import metrics_from_ranks, rank_of
from fl_app.decoder.lexicon import DEFAULT_ADDED_FREQ, Lexicon, load_lexicon
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.template import TemplateDecoder, TemplateParams
from fl_app.decoder.tuning import tune_fusion, tune_template

FULL_SIZE = 100_000  # the product's English lexicon file holds this many words
TEMPLATE = "template (SHARK2, tuned)"
COARSE_KEEP = 2000  # candidates the template's coarse pass keeps before its full comparison


@dataclass(frozen=True)
class LexiconCondition:
    """A lexicon of the `size` most frequent words, plus the evaluated words or not."""

    size: int
    add_eval_words: bool

    @property
    def label(self) -> str:
        size = f"{self.size // 1000}k"
        return f"{size} + evaluated words" if self.add_eval_words else f"{size} as shipped"

    def build(self, eval_words: Sequence[str], language: str = "en") -> Lexicon:
        lexicon = load_lexicon(language, self.size)
        if not self.add_eval_words:
            return lexicon
        full = load_lexicon(language, FULL_SIZE)
        extra = {
            w: float(full.freqs[full.index(w)]) if w in full else DEFAULT_ADDED_FREQ
            for w in sorted(set(eval_words))
            if w not in lexicon
        }
        return lexicon.with_words(extra)


def coverage(swipes: Sequence[RealSwipe], lexicon: Lexicon) -> float:
    """Share of swipes whose word the lexicon holds (the ceiling of top-k with it)."""
    return float(np.mean([r.swipe.word in lexicon for r in swipes])) if swipes else float("nan")


def swipes_of_words(swipes: Sequence[RealSwipe], words: set[str]) -> np.ndarray:
    """Which `swipes` are of a word in `words`. The study's prompts are shared by its people, so
    a word another part's people swiped is one a model may have learnt from their traces (or
    a generator from their words): figures split by it tell learnt words from new ones."""
    return np.array([r.swipe.word in words for r in swipes], dtype=bool)


def ranks(decode_many: Callable[[list], list], swipes: Sequence[RealSwipe]) -> list[int | None]:
    """1-based rank of the true word among each swipe's top-4 suggestions (None: absent)."""
    suggestions = decode_many([r.swipe for r in swipes])
    return [rank_of(r.swipe.word, s) for r, s in zip(swipes, suggestions)]


def user_bootstrap(
    users: Sequence[str],
    a: Sequence[float],
    b: Sequence[float] | None = None,
    *,
    rounds: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of `a` (or of `a - b`, paired), with a 95% interval from resampling *users* (a
    user's swipes move together: they share a hand, a phone and a habit)."""
    a = np.asarray(a, dtype=np.float64)
    diff = a - np.asarray(b, dtype=np.float64) if b is not None else a
    ids = sorted(set(users))
    index = {u: i for i, u in enumerate(ids)}
    owner = np.array([index[u] for u in users])
    sums = np.bincount(owner, weights=diff, minlength=len(ids))
    counts = np.bincount(owner, minlength=len(ids)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(rounds, len(ids)))
    boot = sums[draws].sum(1) / counts[draws].sum(1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def paired_points(
    users: Sequence[str],
    a: Sequence[float],
    b: Sequence[float],
    within: Sequence[bool] | None = None,
) -> str:
    """`a - b` in points with its 95% interval over users, as a report's table shows it; with
    `within`, over the swipes it marks only (one kind of swipe, its people resampled)."""
    if within is not None:
        keep = np.asarray(within, dtype=bool)
        users = [u for u, k in zip(users, keep) if k]
        a, b = np.asarray(a)[keep], np.asarray(b)[keep]
    mean, low, high = user_bootstrap(users, a, b)
    return f"{100 * mean:+.1f} ({100 * low:+.1f} to {100 * high:+.1f})"


CONDITIONS = (
    LexiconCondition(10_000, True),
    LexiconCondition(FULL_SIZE, True),
    LexiconCondition(FULL_SIZE, False),
)


@dataclass
class RealFigure:
    """One decoder under one lexicon condition on the evaluated users."""

    decoder: str
    condition: str
    metrics: dict[str, float]
    top1_ci: tuple[float, float]
    tuned: dict = field(default_factory=dict)
    ranks: list[int | None] = field(default_factory=list, repr=False)

    @property
    def hits(self) -> np.ndarray:
        """1.0 for each evaluated swipe whose word ranked first: what paired comparisons pair."""
        return np.array([r == 1 for r in self.ranks], dtype=float)


def figure(
    label: str, condition: LexiconCondition, swipes: Sequence[RealSwipe], rank_list, tuned: dict
) -> RealFigure:
    hits = [r == 1 for r in rank_list]
    _, low, high = user_bootstrap([r.user for r in swipes], hits)
    return RealFigure(
        label, condition.label, metrics_from_ranks(rank_list), (low, high), tuned, list(rank_list)
    )


def figures_table(rows: Sequence[RealFigure]) -> list[str]:
    """Markdown rows: each decoder under each condition, with its interval from resampling users."""
    lines = [
        "| decoder | lexicon | top-1 | top-1 95% CI (users) | top-4 | MRR | n |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        m = r.metrics
        lines.append(
            f"| {r.decoder} | {r.condition} | {m['top1']:.3f} | {r.top1_ci[0]:.3f}-"
            f"{r.top1_ci[1]:.3f} | {m['top4']:.3f} | {m['mrr']:.3f} | {m['n']} |"
        )
    return lines


def tuned_template(
    condition: LexiconCondition, val: Sequence[RealSwipe], coarse_keep: int = COARSE_KEEP
) -> TemplateParams:
    """The template baseline's weights fitted on public-val under `condition` (a 100,000-word
    lexicon leaves thousands of words near a trace's ends: the coarse pass keeps `coarse_keep`)."""
    lexicon = condition.build([r.swipe.word for r in val])
    start = TemplateParams(coarse_keep=coarse_keep)
    params, _ = tune_template(TemplateDecoder(lexicon, start), [r.swipe for r in val])
    return params


def tuned_on_val(
    spec: DecoderSpec,
    model: SwipeModel,
    val_lexicon: Lexicon,
    template: TemplateParams,
    val: Sequence[RealSwipe],
    k: int = 1,
) -> tuple[LearnedDecoder, float]:
    """The model's decoder over `val_lexicon` with the template's weights (and the model's own
    coarse cut) and fusion weights tuned on `val` for top-k (top-1 unless asked); with its
    top-k there. Callers then point it at the evaluated users' lexicon."""
    own = replace(template, coarse_keep=spec.template.coarse_keep)
    decoder = LearnedDecoder(model, spec.features, val_lexicon, own, spec.fusion)
    decoder.fusion, val_top_k = tune_fusion(decoder, [r.swipe for r in val], k)
    return decoder, val_top_k


def measure_on_real(
    models: dict[str, tuple[DecoderSpec, SwipeModel]],
    dev: Sequence[RealSwipe],
    val: Sequence[RealSwipe],
    conditions: Sequence[LexiconCondition] = CONDITIONS,
    template: bool = True,
    log: Callable[[str], None] = print,
) -> list[RealFigure]:
    """Each decoder (and the template baseline) under each condition: every weight tuned on
    `val`, then measured on `dev`."""
    dev_words = [r.swipe.word for r in dev]
    figures: list[RealFigure] = []
    for cond in conditions:
        params = tuned_template(cond, val)
        dev_lex = cond.build(dev_words)
        if template:
            tpl = TemplateDecoder(dev_lex, params)
            rk = ranks(lambda s, d=tpl: [d.decode(x.points, x.keyboard) for x in s], dev)
            figures.append(figure(TEMPLATE, cond, dev, rk, params.to_dict()))
            log(f"{cond.label}: {TEMPLATE} top-1 {figures[-1].metrics['top1']:.3f}")
        val_lex = cond.build([r.swipe.word for r in val])
        for label, (spec, model) in models.items():
            decoder, val_top1 = tuned_on_val(spec, model, val_lex, params, val)
            decoder.lexicon = dev_lex
            rk = ranks(decoder.decode_many, dev)
            # val_top1: top-1 on `val` at the weights tuned there (what choices are made on)
            tuned = {
                "template": decoder.template.params.to_dict(),
                "fusion": decoder.fusion.to_dict(),
                "val_top1": val_top1,
            }
            figures.append(figure(label, cond, dev, rk, tuned))
            log(f"{cond.label}: {label} top-1 {figures[-1].metrics['top1']:.3f}")
    return figures
