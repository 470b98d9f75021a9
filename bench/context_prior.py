"""What a word-pair prior over the previous word adds on dev users: the context lever that the
miss readings bound (bench/results/real-misses.md, "a perfect context could save"), measured
with word-pair counts that install from PyPI.

    pip install -e '.[context]'
    python bench/context_prior.py [--model DIR] [--corpora shipped,wordsegment,symspellpy]

Under each lexicon condition the model's fusion weights are tuned on public-val without
context (as bench/real_misses.py does), every public-val and dev swipe is scored once, and the
context feature of fl_app/decoder/context.py is added to each scored candidate's fused score.
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

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from real_parts import parts_sentence, real_bench_parser, val_and_dev
from report_header import report_header, shown_path, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, RealSwipe
from fl_app.datasets.real_eval import CONDITIONS, paired_points, tuned_on_val, tuned_template
from fl_app.decoder.context import (
    WordPairPrior,
    context_feature,
    previous_words,
    shipped_table,
)
from fl_app.decoder.ranking import CandidateScores, LearnedDecoder
from fl_app.decoder.spec import read_model_dir

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "context-prior.md"
MEASURED_UNDER = (CONDITIONS[0], CONDITIONS[2])  # 10k + evaluated words; 100k as shipped
SHARES = (0.5, 0.9, 0.97, 0.99)
WEIGHTS = (0.3, 0.6, 1.0, 1.5, 2.0, 3.0)
# Corpus name -> (package, unigram file, word-pair file) inside the installed package.
PACKAGES = {
    "wordsegment": ("wordsegment", "unigrams.txt", "bigrams.txt"),
    "symspellpy": (
        "symspellpy",
        "frequency_dictionary_en_82_765.txt",
        "frequency_bigramdictionary_en_243_342.txt",
    ),
}
SHIPPED = "shipped"  # the package's own table (scripts/make_word_pairs.py): no extra needed
CORPORA = (SHIPPED, *PACKAGES)


def load_corpus(name: str) -> WordPairPrior:
    """The shipped table, or an installed package's counts files (found, not imported)."""
    if name == SHIPPED:
        return WordPairPrior.load(shipped_table("en"))
    package, unigrams, pairs = PACKAGES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{package} is not installed: pip install -e '.[context]'")
    folder = Path(spec.submodule_search_locations[0])
    return WordPairPrior.from_counts(folder / unigrams, folder / pairs)


@dataclass
class Scored:
    """One part's swipes under one condition: their evidence and the lexicon it indexes."""

    rows: list[RealSwipe]
    scores: list[CandidateScores]
    words: list[str]

    def candidates(self, i: int) -> list[str]:
        return [self.words[j] for j in self.scores[i].lexicon_index]


def score_part(decoder: LearnedDecoder, rows: list[RealSwipe]) -> Scored:
    return Scored(rows, decoder.score_many([r.swipe for r in rows]), list(decoder.lexicon.words))


def hits(
    part: Scored,
    fused: list[np.ndarray],
    ratios: list[np.ndarray | None],
    share: float,
    weight: float,
) -> np.ndarray:
    """1 where the first word, with the context feature added at (share, weight), is the truth."""
    out = np.zeros(len(part.rows))
    for i, (row, base, ratio) in enumerate(zip(part.rows, fused, ratios)):
        if len(base):
            total = base + weight * context_feature(ratio, share, len(base))
            idx = part.scores[i].lexicon_index[int(np.argmax(total))]
            out[i] = part.words[idx] == row.swipe.word
    return out


def first_words(part: Scored, fused: list[np.ndarray]) -> list[str]:
    """The decoder's first choice for each swipe without context ("" when nothing scored)."""
    return [
        part.words[s.lexicon_index[int(np.argmax(f))]] if len(f) else ""
        for s, f in zip(part.scores, fused)
    ]


def row_keys(part: Scored) -> list[tuple[str, int]]:
    return [(r.user, r.seq) for r in part.rows]


def measure(
    prior: WordPairPrior, val: Scored, dev: Scored, decoder: LearnedDecoder
) -> dict[str, object]:
    """The best (share, weight) on public-val with typed history, and dev with both histories."""
    fused = {id(p): [s.combined(decoder.fusion) for s in p.scores] for p in (val, dev)}

    def ratios(part: Scored, previous: list[str | None]) -> list[np.ndarray | None]:
        return [prior.ratios(p, part.candidates(i)) for i, p in enumerate(previous)]

    typed = {
        id(p): ratios(p, previous_words(row_keys(p), [r.swipe.word for r in p.rows]))
        for p in (val, dev)
    }
    grid = [
        (hits(val, fused[id(val)], typed[id(val)], s, w).mean(), s, w)
        for s in SHARES
        for w in WEIGHTS
    ]
    val_top1, share, weight = max(grid)
    decoded = ratios(dev, previous_words(row_keys(dev), first_words(dev, fused[id(dev)])))
    return {
        "share": share,
        "weight": weight,
        "val": val_top1,
        "dev_none": hits(dev, fused[id(dev)], typed[id(dev)], 0.0, 0.0),
        "dev_typed": hits(dev, fused[id(dev)], typed[id(dev)], share, weight),
        "dev_decoded": hits(dev, fused[id(dev)], decoded, share, weight),
        "val_none": hits(val, fused[id(val)], typed[id(val)], 0.0, 0.0).mean(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = real_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--model", type=Path, default=base_dir("en"), help="a recipe output")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    names = [n for n in args.corpora.split(",") if n]
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        parser.error(f"unknown corpora {unknown}; known: {sorted(CORPORA)}")
    priors = {n: load_corpus(n) for n in names}

    spec, model, _ = read_model_dir(args.model)
    val, dev = val_and_dev(args.limit)
    users = [r.user for r in dev]
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
        val_part = score_part(decoder, val)
        decoder.lexicon = condition.build([r.swipe.word for r in dev])
        dev_part = score_part(decoder, dev)
        for name, prior in priors.items():
            m = measure(prior, val_part, dev_part, decoder)
            none, typed, decoded = m["dev_none"], m["dev_typed"], m["dev_decoded"]
            lines.append(
                f"| {condition.label} | {name} | {m['share']:g}, {m['weight']:g} "
                f"| {m['val_none']:.3f} / {m['val']:.3f} | {none.mean():.3f} "
                f"| {typed.mean():.3f} | {paired_points(users, typed, none)} "
                f"| {decoded.mean():.3f} | {paired_points(users, decoded, none)} |"
            )
            print(lines[-1], flush=True)
    previous = previous_words([(r.user, r.seq) for r in dev], [r.swipe.word for r in dev])
    lines += [
        "",
        f"{100 * np.mean([p is not None for p in previous]):.1f}% of dev swipes have a "
        "previous word. "
        f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
