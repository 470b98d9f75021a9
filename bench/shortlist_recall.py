"""Where the shipped base loses real people's words: before the model scores them, or in the
ranking. A lever that only pays if the first is large: CTC-scoring more candidates.

    python bench/shortlist_recall.py [--sizes 96 192 400 800] [--limit N]

Decoding narrows the lexicon in three cuts: the template pass keeps `coarse_keep` words by
location, the best `wide` of those by template score and prior reach the model's cut, which
keeps `shortlist` by template, prior and the model's positional letter score for CTC scoring.
For each part of the real users (public-val, dev) under "10k + the evaluated words" (the
issue's 0.90 condition) this reports how often the true word survives each cut, then decodes
with the shortlist grown (up to every wide candidate), the fusion weights re-tuned on
public-val for each size and dev paired by user against the shipped size. Figures from this
data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import LexiconCondition, paired_points, ranks
from fl_app.decoder.evaluation import metrics_from_ranks
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import read_model_dir
from fl_app.decoder.tuning import tune_fusion

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "shortlist-recall.md"
CONDITION = LexiconCondition(10_000, True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[96, 192, 400, 800])
    p.add_argument("--limit", type=int, default=0, help="swipes per part (0: all; a quick check)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def survival(decoder: LearnedDecoder, swipes: list[RealSwipe]) -> dict[str, float]:
    """Share of swipes whose word is in the lexicon, the template's wide list and the
    CTC-scored shortlist (each cut as the decoder makes it)."""
    lex = decoder.lexicon
    truth = [lex.index(r.swipe.word) if r.swipe.word in lex else -1 for r in swipes]
    in_wide, in_shortlist = [], []
    for (s, logp), t in zip(decoder.batched_log_probs([r.swipe for r in swipes]), truth):
        wide = decoder.shortlist(s.points, s.keyboard)  # one template pass, both cuts
        cut = decoder.candidate_scores(s.points, s.keyboard, logp, shortlist=wide)
        in_wide.append(t in wide.lexicon_index)
        in_shortlist.append(t in cut.lexicon_index)
    return {
        "lexicon": float(np.mean([t >= 0 for t in truth])),
        "wide": float(np.mean(in_wide)),
        "shortlist": float(np.mean(in_shortlist)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec, model, _ = read_model_dir(base_dir("en"))
    shipped = spec.fusion.shortlist
    sizes = sorted({shipped, *(min(n, spec.fusion.wide) for n in args.sizes)})
    parts = {p: load_real(p)[: args.limit or None] for p in ("public-val", "dev")}
    decoders = {
        part: spec.build_decoder(model, CONDITION.build([r.swipe.word for r in swipes]))
        for part, swipes in parts.items()
    }
    cuts = {part: survival(decoders[part], parts[part]) for part in parts}
    print(f"survival {cuts} ({time.perf_counter() - t0:.0f} s)", flush=True)

    val, dev = decoders["public-val"], decoders["dev"]
    rows, hits = [], {}
    for n in sizes:
        val.fusion = replace(spec.fusion, shortlist=n)
        weights, val_top1 = tune_fusion(val, [r.swipe for r in parts["public-val"]])
        dev.fusion = weights
        dev_ranks = ranks(dev.decode_many, parts["dev"])
        hits[n] = np.array([r == 1 for r in dev_ranks])
        m = metrics_from_ranks(dev_ranks)
        if n == shipped:
            diff = ""
        else:
            users = [r.user for r in parts["dev"]]
            diff = paired_points(users, hits[n], hits[shipped])
        rows.append(
            f"| {n}{' (shipped)' if n == shipped else ''} | {val_top1:.3f} | {m['top1']:.3f} "
            f"| {m['top4']:.3f} | {diff} | {weights.template:g}/{weights.prior:g}/"
            f"{weights.letters:g}/{weights.length_bonus:g} |"
        )
        print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)

    lines = report_header("Where the base loses the word", "shortlist_recall.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Lexicon: {CONDITION.label}. Template pass: {spec.template.coarse_keep} candidates by "
        f"location, {spec.fusion.wide} wide.",
        "",
        "| part | swipes | word in the lexicon | ... in the wide list | ... in the shortlist |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {part} | {len(parts[part])} | {c['lexicon']:.3f} | {c['wide']:.3f} | "
            f"{c['shortlist']:.3f} |"
            for part, c in cuts.items()
        ],
        "",
        "Shortlist size (candidates CTC-scored), weights template / prior / letters / length "
        "bonus chosen on public-val:",
        "",
        "| shortlist | public-val top-1 | dev top-1 | dev top-4 | dev vs shipped, points | weights |",
        "|---:|---:|---:|---:|---|---|",
        *rows,
        "",
        f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
