"""Where a model's remaining misses on dev users lie: what the decoder's first word is to the
truth, which evidence decided against the truth, and how common the missed words are, so that
the team picks levers that act on the misses the model has.

    python bench/real_misses.py [--model DIR] [--limit N] [--threads 2]

Under each lexicon condition the model's fusion weights are re-tuned on public-val (as
bench/real_people.py and the recipe do), then every dev swipe is scored once. A miss is read
from its candidates' evidence (fl_app/decoder/misses.py): the truth was not in the lexicon or
never reached the model, the trace (CTC, template and length bonus) preferred the truth and
the frequency prior outweighed it, or the trace preferred another word. "A perfect context" is
an upper bound for a language model over the preceding words: the misses the truth would win
if its prior were the best among the scored candidates, every other word's unchanged. Figures
are points of dev top-1 (100 x swipes / dev swipes). For the suggestion bar (top-4), where
each swipe's word ranks, and the model's top-1 and top-4 once its fusion weights are chosen on
public-val for top-4 instead of top-1.
"""

from __future__ import annotations

import collections
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from real_parts import model_and_parts, model_bench_parser
from report_header import report_header, shown_path, write_report

from fl_app.datasets.real import CITATION, RealSwipe
from fl_app.datasets.real_eval import (
    CONDITIONS,
    LexiconCondition,
    ranks,
    tuned_on_val,
    tuned_template,
)
from fl_app.decoder.evaluation import metrics_from_ranks, rank_of
from fl_app.decoder.lexicon import load_lexicon
from fl_app.decoder.misses import (
    CAUSES,
    KINDS,
    MissReading,
    confusion_kind,
    distance_from_word,
    read_miss,
)
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.template import TemplateParams

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "real-misses.md"
READ_UNDER = (CONDITIONS[0], CONDITIONS[2])  # 10k + evaluated words; 100k as shipped
BANDS = (10_000, 100_000)  # the truth's frequency rank in the product's lexicon file
TOP_PAIRS = 30
DISTANCES = (0.5, 1.0, 1.5, 2.0)  # key units between a trace and its word's keys (mean)
MARGINS = (0.0, 1.0, 3.0, 10.0)  # nats by which the trace prefers the first word to the truth
SHAPE_NEAR = 0.5  # key units from the word's path once the trace is moved by its mean offset


@dataclass
class Miss:
    swipe: RealSwipe
    guess: str
    kind: str
    reading: MissReading


def read_dev(
    spec: DecoderSpec,
    model: SwipeModel,
    condition: LexiconCondition,
    template: TemplateParams,
    val: list[RealSwipe],
    dev: list[RealSwipe],
) -> tuple[list[Miss], list[int | None]]:
    """Every dev miss under `condition`, with weights tuned on `val` first (the template's
    `template`), and every dev swipe's rank of its word among the candidates the model scored
    (None: not scored)."""
    val_lex = condition.build([r.swipe.word for r in val])
    decoder, _ = tuned_on_val(spec, model, val_lex, template, val)
    decoder.lexicon = lexicon = condition.build([r.swipe.word for r in dev])
    misses, ranks = [], []
    for real, scores in zip(dev, decoder.score_many([r.swipe for r in dev])):
        ranked = decoder.ranked(scores, len(scores.lexicon_index))
        guess = ranked[0][0] if ranked else ""
        word = real.swipe.word
        ranks.append(rank_of(word, ranked))
        if guess == word:
            continue
        truth = lexicon.index(word) if word in lexicon else -1
        kind = confusion_kind(word, guess, real.swipe.keyboard)
        misses.append(Miss(real, guess, kind, read_miss(scores, decoder.fusion, truth)))
    return misses, ranks


def rank_table(ranks: list[int | None]) -> list[str]:
    """Where each dev swipe's word ranks among the candidates the model scored: how far the
    suggestion bar's four places are from holding the words the first place misses."""
    bands = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 8), (9, None)]
    lines = ["| the word ranks | share of dev swipes |", "|---|---:|"]
    for low, high in bands:
        n = sum(r is not None and r >= low and (high is None or r <= high) for r in ranks)
        label = str(low) if low == high else f"{low} to {high}" if high else f"{low} or lower"
        lines.append(f"| {label} | {n / len(ranks):.4f} |")
    unscored = sum(r is None for r in ranks) / len(ranks)
    lines.append(f"| not scored ({CAUSES[0]}, or {CAUSES[1]}) | {unscored:.4f} |")
    return lines


def suggestion_bar(
    spec: DecoderSpec,
    model: SwipeModel,
    condition: LexiconCondition,
    template: TemplateParams,
    val: list[RealSwipe],
    dev: list[RealSwipe],
    top1_ranks: list[int | None],
) -> tuple[list[str], dict[str, float]]:
    """Dev top-1 and top-4 with the fusion weights chosen on `val` for top-4 instead of top-1:
    what weighing the evidence for the suggestion bar, not its first place, could give."""
    val_lex = condition.build([r.swipe.word for r in val])
    decoder, val_top4 = tuned_on_val(spec, model, val_lex, template, val, k=4)
    decoder.lexicon = condition.build([r.swipe.word for r in dev])
    bar = metrics_from_ranks(ranks(decoder.decode_many, dev))
    first = metrics_from_ranks(top1_ranks)
    w = decoder.fusion
    lines = [
        "| fusion weights chosen on public-val for | dev top-1 | dev top-4 |",
        "|---|---:|---:|",
        f"| top-1 (as the recipe chooses) | {first['top1']:.4f} | {first['top4']:.4f} |",
        f"| top-4 (public-val top-4 {val_top4:.4f}; template {w.template:g}, prior {w.prior:g}, "
        f"letters {w.letters:g}, length bonus {w.length_bonus:g}) | {bar['top1']:.4f} "
        f"| {bar['top4']:.4f} |",
    ]
    return lines, {"top4_weights_top1": bar["top1"], "top4_weights_top4": bar["top4"]}


def points(count: int, total: int) -> str:
    return f"{100 * count / total:.2f}"


def cause_table(misses: list[Miss], total: int) -> list[str]:
    """Points of dev top-1 by what the first word is to the truth (rows) and by cause."""
    fixes = collections.Counter(m.kind for m in misses if m.reading.context_could_fix)
    lines = [
        "| the first word is | " + " | ".join(CAUSES) + " | all | a perfect context fixes |",
        "|---|" + "---:|" * (len(CAUSES) + 2),
    ]
    for kind in (*KINDS, None):
        chosen = [m for m in misses if kind is None or m.kind == kind]
        row = [points(sum(1 for m in chosen if m.reading.cause == c), total) for c in CAUSES]
        fixed = sum(fixes.values()) if kind is None else fixes[kind]
        label = "**all misses**" if kind is None else kind
        lines.append(
            f"| {label} | " + " | ".join(row) + f" | {points(len(chosen), total)} "
            f"| {points(fixed, total)} |"
        )
    return lines


def margin_table(misses: list[Miss], total: int) -> list[str]:
    """Points of dev top-1 by how far the trace preferred the first word to the truth (misses
    whose truth the model scored): what a prior, or a context, would have to outweigh."""
    margins = [m.reading.trace_margin for m in misses if not math.isnan(m.reading.trace_margin)]
    edges = (*MARGINS, math.inf)
    outweighed = points(sum(x <= 0 for x in margins), total)
    lines = [
        "| the trace prefers the first word by (nats) | points |",
        "|---|---:|",
        f"| 0 or less (the prior outweighed the trace) | {outweighed} |",
    ]
    for low, high in zip(edges, edges[1:]):
        n = sum(low < x <= high for x in margins)
        label = f"{low:g} to {high:g}" if high < math.inf else f"over {low:g}"
        lines.append(f"| {label} | {points(n, total)} |")
    return lines


def distance_table(dev: list[RealSwipe], misses: list[Miss]) -> list[str]:
    """Dev top-1 by how far each trace lies from the word it is labelled with, and how many
    traces are recorded more than once: what a label promises that no decoder can keep."""
    missed = {id(m.swipe) for m in misses}
    cut = {id(m.swipe) for m in misses if m.reading.cause == CAUSES[1]}
    far = [distance_from_word(r.swipe.points, r.swipe.keyboard, r.swipe.word) for r in dev]
    shape = [
        distance_from_word(r.swipe.points, r.swipe.keyboard, r.swipe.word, shift_free=True)
        for r in dev
    ]
    edges = (0.0, *DISTANCES, math.inf)
    lines = [
        "| the trace lies from its word's keys (key units, mean) | share of dev swipes | users "
        f"| top-1 | points missed | ... {CAUSES[1]} | ... once moved by its mean offset "
        "(median) | ... share within 0.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for low, high in zip(edges, edges[1:]):
        band = [i for i, d in enumerate(far) if low <= d < high]
        rows = [dev[i] for i in band]
        moved = np.array([shape[i] for i in band])
        lost = sum(id(r) in missed for r in rows)
        label = f"{low:g} to {high:g}" if high < math.inf else f"{low:g} or more"
        lines.append(
            f"| {label} | {len(rows) / len(dev):.3f} | {len({r.user for r in rows})} "
            f"| {1 - lost / max(len(rows), 1):.3f} | {points(lost, len(dev))} "
            f"| {points(sum(id(r) in cut for r in rows), len(dev))} "
            f"| {np.median(moved) if len(moved) else float('nan'):.2f} "
            f"| {np.mean(moved < SHAPE_NEAR) if len(moved) else float('nan'):.3f} |"
        )
    seen = collections.Counter((r.user, r.swipe.points.tobytes()) for r in dev)
    repeats = sum(n - 1 for n in seen.values())
    near = [r for r, d in zip(dev, far) if d < DISTANCES[-2]]
    lines += [
        "",
        f"Within {DISTANCES[-2]:g} key units of their word: {len(near) / len(dev):.3f} of dev's "
        f"swipes, top-1 {1 - sum(id(r) in missed for r in near) / len(near):.3f}. "
        f"{repeats} dev rows ({repeats / len(dev):.3f}) repeat another row of the same user's "
        f"bit for bit, trace and all: one recording counted more than once. A far trace is "
        "not the word's shape drawn in the wrong place (a finger a row off all the way): moved "
        "by its mean offset from the word's path, it stays far (the last two columns).",
    ]
    return lines


def band_label(rank: int | None) -> str:
    if rank is None:
        return f"outside the first {BANDS[-1]:,}"
    low = 0
    for high in BANDS:
        if rank < high:
            return f"ranks {low:,} to {high:,}"
        low = high
    return f"outside the first {BANDS[-1]:,}"


def band_table(dev: list[RealSwipe], misses: list[Miss]) -> list[str]:
    """Dev top-1 by how common the true word is (its rank in the product's lexicon file)."""
    full = load_lexicon("en", BANDS[-1])
    missed = collections.Counter(band_label(_rank(full, m.swipe.swipe.word)) for m in misses)
    swipes = collections.Counter(band_label(_rank(full, r.swipe.word)) for r in dev)
    lines = [
        "| the true word's frequency rank | share of dev swipes | top-1 | points missed |",
        "|---|---:|---:|---:|",
    ]
    for label in (band_label(0), *(band_label(b) for b in BANDS)):
        n = swipes[label]
        lines.append(
            f"| {label} | {n / len(dev):.3f} | {1 - missed[label] / max(n, 1):.3f} "
            f"| {points(missed[label], len(dev))} |"
        )
    return lines


def _rank(lexicon, word: str) -> int | None:
    return lexicon.index(word) if word in lexicon else None


def main(argv: list[str] | None = None) -> int:
    args = model_bench_parser(__doc__, DEFAULT_OUT).parse_args(
        sys.argv[1:] if argv is None else argv
    )
    t0 = time.perf_counter()
    spec, model, val, dev = model_and_parts(args)
    lines = report_header("Where the misses are", "real_misses.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Model `{shown_path(args.model)}`. Dev: {len(dev)} swipes of "
        f"{len({r.user for r in dev})} users; public-val: {len(val)} swipes.",
    ]
    summary = {}
    for condition in READ_UNDER:
        template = tuned_template(condition, val)  # once: both weighings start from it
        misses, truth_ranks = read_dev(spec, model, condition, template, val, dev)
        top1 = 1 - len(misses) / len(dev)
        bar, bar_summary = suggestion_bar(spec, model, condition, template, val, dev, truth_ranks)
        summary[condition.label] = {
            "top1": top1,
            **{c: sum(m.reading.cause == c for m in misses) for c in CAUSES},
            "context_could_fix": sum(m.reading.context_could_fix for m in misses),
            **bar_summary,
        }
        lines += [
            "",
            f"## {condition.label}: dev top-1 {top1:.3f}, {100 * (1 - top1):.1f} points missed",
            "",
            *cause_table(misses, len(dev)),
            "",
            *margin_table(misses, len(dev)),
            "",
            *band_table(dev, misses),
            "",
            "The suggestion bar: where each swipe's word ranks (weights chosen for top-1), and "
            "the same model with its weights chosen for top-4.",
            "",
            *rank_table(truth_ranks),
            "",
            *bar,
        ]
        if condition is READ_UNDER[0]:
            pairs = collections.Counter((m.swipe.swipe.word, m.guess) for m in misses)
            shown = ", ".join(f"{t} → {g} ({n})" for (t, g), n in pairs.most_common(TOP_PAIRS))
            lines += [
                "",
                f"The {TOP_PAIRS} most frequent misses (truth → first word): {shown}.",
                "",
                *distance_table(dev, misses),
            ]
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}", ""]
    write_report(args.out, "\n".join(lines))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
