"""Can the model spell a word its lexicon lacks? A lexicon-free candidate for the lexicon as
shipped, where about 4% of dev's swipes are of words outside the 100,000.

    python bench/free_spelling.py [--model DIR] [--limit N] [--threads 2] [--beam 12]

Under the lexicon as shipped a swipe of a word outside the lexicon is a miss whatever the
decoder does with its candidates: the figure's ceiling is the lexicon's coverage. The model's
frames can be read without a lexicon, though: a CTC prefix beam search over letters gives the
spelling the trace fits best. When that spelling is no lexicon word, it is offered as one more
candidate, scored by its CTC log-likelihood plus the tuned length bonus per letter (it has no
template or frequency evidence); it takes first place when that beats the best lexicon word's
fused score by more than a margin chosen on public-val (or never, if no margin helps there),
and fourth place otherwise (a keyboard's strip of four). The fusion weights are tuned on
public-val first, as every real figure's are. Dev is reported, paired by user against the
lexicon alone. The model learned targets with doubled letters collapsed (a trace cannot show
one), so a spelling seldom doubles a letter: both counts, letters and exact word, are shown.
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from real_parts import model_and_parts, model_bench_parser, parts_sentence
from report_header import report_header, shown_path, write_report

from fl_app.datasets.real import CITATION, RealSwipe
from fl_app.datasets.real_eval import CONDITIONS, paired_points, tuned_on_val, tuned_template
from fl_app.decoder.features import collapse_repeats
from fl_app.decoder.ranking import LearnedDecoder, _ctc_nll_eager

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "free-spelling.md"
AS_SHIPPED = CONDITIONS[2]
BLANK = 0
MARGINS = np.arange(0.0, 60.0, 1.0)  # nats by which a spelling must beat the best word
SHOWN_MARGINS = (10.0, 20.0, 30.0)


@dataclass
class Decoded:
    """One swipe under the lexicon: its top four words, the best's fused score, and the best
    lexicon-free spelling (empty when the best spelling is a lexicon word) with its score."""

    user: str
    word: str
    words: list[str]
    best_fused: float
    spelling: str
    spelling_score: float

    def top(self, margin: float | None, k: int) -> list[str]:
        """The first k suggestions: with the spelling first when it wins by `margin`, else
        fourth (k = 4); the lexicon's words alone when `margin` is None."""
        if margin is None or not self.spelling:
            return self.words[:k]
        if self.spelling_score - self.best_fused > margin:
            return [self.spelling, *self.words][:k]
        return self.words[: k - 1] + [self.spelling] if k >= 4 else self.words[:k]


def prefix_beam(logp: np.ndarray, width: int, classes: int) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search over letters without a lexicon: (label, log-probability) best
    first. Each frame extends prefixes by its `classes` likeliest letters only."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}  # blank, letter
    likeliest = np.argsort(-logp, axis=1)[:, :classes]
    for t in range(len(logp)):
        step: dict[tuple[int, ...], list[float]] = collections.defaultdict(
            lambda: [-np.inf, -np.inf]
        )
        for prefix, (p_blank, p_letter) in beams.items():
            total = np.logaddexp(p_blank, p_letter)
            here = step[prefix]
            here[0] = np.logaddexp(here[0], total + logp[t, BLANK])
            for c in likeliest[t]:
                if c == BLANK:
                    continue
                longer = step[(*prefix, int(c))]
                if prefix and prefix[-1] == c:  # a repeat extends only across a blank
                    here[1] = np.logaddexp(here[1], p_letter + logp[t, c])
                    longer[1] = np.logaddexp(longer[1], p_blank + logp[t, c])
                else:
                    longer[1] = np.logaddexp(longer[1], total + logp[t, c])
        ranked = sorted(step.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:width]
        beams = {prefix: (b, n) for prefix, (b, n) in ranked}
    return [(prefix, float(np.logaddexp(*p))) for prefix, p in beams.items()]


def ctc_log_likelihood(logp: torch.Tensor, target: list[int]) -> float:
    """Exact CTC log-likelihood of one label (the beam's figure is a lower bound), by the
    decoder's own CTC scoring of a candidate."""
    return -float(_ctc_nll_eager(logp, torch.tensor([target]), torch.tensor([len(target)]))[0])


def decode_part(
    decoder: LearnedDecoder, part: list[RealSwipe], width: int, classes: int
) -> list[Decoded]:
    """Every swipe of `part` under `decoder`'s lexicon, with its best lexicon-free spelling."""
    lexicon = decoder.lexicon
    lexicon_forms = {collapse_repeats(w) for w in lexicon.words}
    alphabet = decoder.spec.alphabet
    bonus = decoder.fusion.length_bonus
    out = []
    for real, (swipe, logp) in zip(part, decoder.batched_log_probs([r.swipe for r in part])):
        scores = decoder.candidate_scores(swipe.points, swipe.keyboard, logp)
        ranked = decoder.ranked(scores, 4)
        label, _ = prefix_beam(logp.numpy(), width, classes)[0]
        spelling = "".join(alphabet[c - 1] for c in label)
        score = -np.inf
        if len(spelling) < 2 or spelling in lexicon_forms:
            spelling = ""
        else:
            score = ctc_log_likelihood(logp, list(label)) + bonus * len(label)
        out.append(
            Decoded(
                real.user,
                swipe.word,
                [w for w, _ in ranked],
                ranked[0][1] if ranked else -np.inf,
                spelling,
                score,
            )
        )
    return out


def hits(decoded: list[Decoded], margin: float | None, k: int) -> np.ndarray:
    return np.array([d.word in d.top(margin, k) for d in decoded], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = model_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument("--beam", type=int, default=12, help="prefixes kept per frame")
    parser.add_argument("--classes", type=int, default=6, help="letters tried per frame")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()
    spec, model, val, dev = model_and_parts(args)
    val_lexicon = AS_SHIPPED.build([])
    decoder, _ = tuned_on_val(spec, model, val_lexicon, tuned_template(AS_SHIPPED, val), val)
    decoded = {
        name: decode_part(decoder, part, args.beam, args.classes)
        for name, part in (("public-val", val), ("dev", dev))
    }
    val_top1 = {float(m): hits(decoded["public-val"], float(m), 1).mean() for m in MARGINS}
    chosen: float | None = max(val_top1, key=lambda m: (val_top1[m], m))
    if val_top1[chosen] <= hits(decoded["public-val"], None, 1).mean():
        chosen = None  # no margin helps where choices are made: the lexicon alone
    dev_d = decoded["dev"]
    users = [d.user for d in dev_d]
    alone1, alone4 = hits(dev_d, None, 1), hits(dev_d, None, 4)
    outside = [d for d in dev_d if d.word not in decoder.lexicon]
    spelled = sum(collapse_repeats(d.spelling) == collapse_repeats(d.word) for d in outside)
    exact = sum(d.spelling == d.word for d in outside)
    oracle = sum(d.spelling == d.word and d.words[:1] != [d.word] for d in dev_d)
    offered = sum(bool(d.spelling) for d in dev_d)
    lines = report_header("A lexicon-free spelling", "free_spelling.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Model `{shown_path(args.model)}`; lexicon: {AS_SHIPPED.label}; fusion weights "
        f"{decoder.fusion.to_dict()} (tuned on public-val). {parts_sentence(val, dev)} "
        f"Beam: {args.beam} prefixes, {args.classes} letters a frame.",
        "",
        f"- dev swipes of words outside the lexicon: {len(outside)} "
        f"({len(outside) / len(dev_d):.3f}); the model's spelling is the word's letters "
        f"(doubled letters collapsed) for {spelled} of them ({spelled / max(len(outside), 1):.2f})"
        f", the word itself for {exact};",
        f"- a spelling that is no lexicon word is offered on {offered} of {len(dev_d)} dev "
        f"swipes ({offered / len(dev_d):.2f}): the model's best reading of most traces is no "
        "word at all;",
        f"- a rule that knew when to switch (the spelling right, the lexicon's first word "
        f"wrong) would gain {100 * oracle / len(dev_d):.1f} points of dev top-1.",
        "",
        "| spelling first when it beats the best word by (nats) | public-val top-1 | dev top-1 "
        "| dev top-1 vs the lexicon alone | dev top-4 (the spelling 4th when not first) "
        "| dev top-4 vs the lexicon alone |",
        "|---|---:|---:|---|---:|---|",
    ]
    shown = [None, *SHOWN_MARGINS] + ([chosen] if chosen not in (None, *SHOWN_MARGINS) else [])
    for margin in shown:
        top1, top4 = hits(dev_d, margin, 1), hits(dev_d, margin, 4)
        label = "never (the lexicon alone)" if margin is None else f"{margin:g}"
        if margin == chosen:
            label += " (chosen on public-val)"
        val1 = hits(decoded["public-val"], margin, 1).mean()
        lines.append(
            f"| {label} | {val1:.3f} | {top1.mean():.3f} | {paired_points(users, top1, alone1)} "
            f"| {top4.mean():.3f} | {paired_points(users, top4, alone4)} |"
        )
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}", ""]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
