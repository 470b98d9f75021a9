"""What a word-pair prior over the previous word adds on dev users: the context lever that the
miss readings bound (bench/results/real-misses.md, "a perfect context could save"), measured
with word-pair counts that install from PyPI.

    pip install -e '.[context]'
    python bench/context_prior.py [--model DIR] [--corpora shipped,wordsegment,symspellpy]

Under each lexicon condition the model's fusion weights are tuned on public-val without
context (as bench/real_misses.py does), every public-val and dev swipe is scored once, and
each is ranked as a sidecar ranks it (`LearnedDecoder.ranked`), which adds the context bonus of
fl_app/decoder/context.py to each scored candidate's fused score.
Its two settings (the share of the pair estimate and the feature's weight) are chosen on
public-val; dev is reported. The previous word is the word of the same user's swipe just
before (`seq - 1`; none for a user's first swipe): "typed history" takes its label, as a
keyboard sees the text when its user fixes every wrong word; "decoded history" takes the
decoder's own first choice for it without context, as when nobody fixes anything. The
candidates are the ones the decoder scores without context (the context does not move the
cuts). Paired differences are over users, against the same decoder without context.

Corpora: `shipped`, the table a sidecar uses (fl_app/decoder/data/word-pairs-en.tsv.gz:
symspellpy's counts cut to pairs of the 100,000-word lexicon's words), `symspellpy` (Google
Books Ngram counts, CC BY 3.0 by the package's account; MIT) and `wordsegment` (Google Web
Trillion Word Corpus counts, Norvig's "Natural Language Corpus Data"; the package is
Apache-2.0); the last two need `pip install -e '.[context]'`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from real_parts import model_and_parts, model_bench_parser, parts_sentence
from report_header import report_header, shown_path, write_report

from fl_app.datasets.real import CITATION, RealSwipe
from fl_app.datasets.real_eval import CONDITIONS, paired_points, tuned_on_val, tuned_template
from fl_app.decoder.context import (
    COUNTS_PACKAGES,
    ContextPrior,
    WordPairPrior,
    package_prior,
    previous_words,
    shipped_table,
)
from fl_app.decoder.ranking import CandidateScores, LearnedDecoder

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "context-prior.md"
MEASURED_UNDER = (CONDITIONS[0], CONDITIONS[2])  # 10k + evaluated words; 100k as shipped
SHARES = (0.5, 0.9, 0.97, 0.99)
WEIGHTS = (0.3, 0.6, 1.0, 1.5, 2.0, 3.0)
SHIPPED = "shipped"  # the package's own table (scripts/make_word_pairs.py): no extra needed
CORPORA = (SHIPPED, *COUNTS_PACKAGES)


def load_corpus(name: str) -> WordPairPrior:
    """The shipped table, or an installed package's counts files."""
    if name == SHIPPED:
        return WordPairPrior.load(shipped_table("en"))
    try:
        return package_prior(name)
    except ModuleNotFoundError as exc:
        sys.exit(str(exc))


def top1_hits(
    decoder: LearnedDecoder,
    rows: Sequence[RealSwipe],
    scores: Sequence[CandidateScores],
    previous: Sequence[str | None],
) -> np.ndarray:
    """1 where the decoder's first word (ranked as a sidecar ranks it, given `previous` and the
    decoder's `context`) is the truth."""
    out = np.zeros(len(rows))
    for i, (row, evidence, before) in enumerate(zip(rows, scores, previous)):
        best = decoder.ranked(evidence, 1, before)
        out[i] = bool(best) and best[0][0] == row.swipe.word
    return out


def typed_history(rows: Sequence[RealSwipe]) -> list[str | None]:
    """Each swipe's previous word as its user's labelled swipe just before."""
    return previous_words([(r.user, r.seq) for r in rows], [r.swipe.word for r in rows])


def choose(
    decoder: LearnedDecoder,
    prior: WordPairPrior,
    rows: Sequence[RealSwipe],
    scores: Sequence[CandidateScores],
) -> tuple[float, float, float]:
    """(public-val top-1, share, weight), the best of the grid with typed history."""
    previous = typed_history(rows)
    grid = []
    for share in SHARES:
        for weight in WEIGHTS:
            decoder.context = ContextPrior(prior, share, weight)
            grid.append((top1_hits(decoder, rows, scores, previous).mean(), share, weight))
    return max(grid)


def main(argv: list[str] | None = None) -> int:
    parser = model_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    names = [n for n in args.corpora.split(",") if n]
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        parser.error(f"unknown corpora {unknown}; known: {sorted(CORPORA)}")
    priors = {n: load_corpus(n) for n in names}

    spec, model, val, dev = model_and_parts(args)
    users = [r.user for r in dev]
    nothing = [None] * len(dev)
    lines = report_header("A word-pair prior over the previous word", "context_prior.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Model `{shown_path(args.model)}`. {parts_sentence(val, dev)}",
        "",
        "| lexicon | corpus | share, weight | public-val without / with | dev without "
        "| dev, typed history | vs without | dev, decoded history | vs without |",
        "|---|---|---|---|---:|---:|---|---:|---|",
    ]
    for condition in MEASURED_UNDER:
        val_lex = condition.build([r.swipe.word for r in val])
        decoder, _ = tuned_on_val(spec, model, val_lex, tuned_template(condition, val), val)
        val_scores = decoder.score_many([r.swipe for r in val])
        val_none = top1_hits(decoder, val, val_scores, [None] * len(val)).mean()
        chosen = {n: choose(decoder, prior, val, val_scores) for n, prior in priors.items()}
        decoder.lexicon = condition.build([r.swipe.word for r in dev])
        dev_scores = decoder.score_many([r.swipe for r in dev])
        none = top1_hits(decoder, dev, dev_scores, nothing)
        first = [best[0][0] if (best := decoder.ranked(s, 1)) else "" for s in dev_scores]
        decoded_history = previous_words([(r.user, r.seq) for r in dev], first)
        for name, prior in priors.items():
            val_top1, share, weight = chosen[name]
            decoder.context = ContextPrior(prior, share, weight)
            typed = top1_hits(decoder, dev, dev_scores, typed_history(dev))
            decoded = top1_hits(decoder, dev, dev_scores, decoded_history)
            lines.append(
                f"| {condition.label} | {name} | {share:g}, {weight:g} "
                f"| {val_none:.3f} / {val_top1:.3f} | {none.mean():.3f} "
                f"| {typed.mean():.3f} | {paired_points(users, typed, none)} "
                f"| {decoded.mean():.3f} | {paired_points(users, decoded, none)} |"
            )
            print(lines[-1], flush=True)
    with_previous = np.mean([p is not None for p in typed_history(dev)])
    lines += [
        "",
        f"{100 * with_previous:.1f}% of dev swipes have a previous word. "
        f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
