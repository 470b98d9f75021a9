"""Where the shipped base loses real people's words: before the model scores them, or in the
ranking. A lever that only pays if the first is large: widening the cuts.

    python bench/shortlist_recall.py [--lexicon 100k] [--cuts 2000:800:96 2000:1600:96 ...]
        [--limit N]

Decoding narrows the lexicon in four steps: the template pass keeps the words whose first and
last keys lie near the trace's ends, then `coarse_keep` of them by a coarse location distance;
the best `wide` of those by template score and prior reach the model's cut, which keeps
`shortlist` by template, prior and the model's positional letter score for CTC scoring.
For each part of the real users (public-val, dev) under one lexicon condition (`--lexicon`:
"10k + the evaluated words", the issue's 0.90 condition, unless told) this reports how often
the true word survives each step with the base's own cuts, then decodes with each
`--cuts COARSE:WIDE:SHORTLIST`, the fusion weights re-tuned on public-val for each and dev
paired by user against the base's own cuts. Each is timed too: one dev swipe at a time (batch
of one), every setting in turn on the same swipe, as a multiple of the base's own cuts in the
same minutes. Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from real import percentiles_ms
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.datasets.measure import CONDITION_NAMES, conditions_named
from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import paired_points, ranks
from fl_app.decoder.evaluation import metrics_from_ranks
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, read_model_dir
from fl_app.decoder.tuning import tune_fusion

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "shortlist-recall.md"
DEFAULT_CUTS = ("2000:800:96", "2000:800:192", "2000:800:400", "2000:800:800")
EVERY_WORD = 10**9  # a coarse_keep no lexicon reaches: the ends filter alone


@dataclass(frozen=True)
class Cuts:
    """How many words each step of the narrowing keeps."""

    coarse: int
    wide: int
    shortlist: int

    @classmethod
    def parse(cls, text: str) -> Cuts:
        try:
            coarse, wide, shortlist = (int(n) for n in text.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: want COARSE:WIDE:SHORTLIST, three whole numbers"
            ) from None
        if not 0 < shortlist <= wide <= coarse:
            raise argparse.ArgumentTypeError(f"{text!r}: want 0 < SHORTLIST <= WIDE <= COARSE")
        return cls(coarse, wide, shortlist)

    @classmethod
    def of(cls, spec: DecoderSpec) -> Cuts:
        return cls(spec.template.coarse_keep, spec.fusion.wide, spec.fusion.shortlist)

    def apply(self, decoder: LearnedDecoder) -> LearnedDecoder:
        """`decoder` narrowing by these cuts (its fusion weights otherwise kept)."""
        decoder.template.params = replace(decoder.template.params, coarse_keep=self.coarse)
        decoder.fusion = replace(decoder.fusion, wide=self.wide, shortlist=self.shortlist)
        return decoder

    def __str__(self) -> str:
        return f"{self.coarse} / {self.wide} / {self.shortlist}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cuts",
        nargs="+",
        type=Cuts.parse,
        default=[Cuts.parse(c) for c in DEFAULT_CUTS],
        help="COARSE:WIDE:SHORTLIST settings to decode with (the base's own are always added)",
    )
    p.add_argument(
        "--lexicon",
        default=CONDITION_NAMES[0],
        choices=CONDITION_NAMES,
        help="the lexicon condition (default: 10k + the evaluated words, the 0.90 target's)",
    )
    p.add_argument("--limit", type=int, default=0, help="swipes per part (0: all; a quick check)")
    p.add_argument("--latency-swipes", type=int, default=500, help="dev swipes timed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def survival(decoder: LearnedDecoder, swipes: list[RealSwipe]) -> dict[str, float]:
    """Share of swipes whose word is in the lexicon, passes the ends filter, stays in the
    coarse pass, the template's wide list and the CTC-scored shortlist (each cut as `decoder`
    makes it)."""
    lex, template = decoder.lexicon, decoder.template
    truth = [lex.index(r.swipe.word) if r.swipe.word in lex else -1 for r in swipes]
    ends_only = replace(template.params, coarse_keep=EVERY_WORD)
    kept: dict[str, list[bool]] = {"ends": [], "coarse": [], "wide": [], "shortlist": []}
    for (s, logp), t in zip(decoder.batched_log_probs([r.swipe for r in swipes]), truth):
        kept["ends"].append(t in template.score_candidates(s.points, s.keyboard, ends_only)[0])
        kept["coarse"].append(t in template.score_candidates(s.points, s.keyboard)[0])
        wide = decoder.shortlist(s.points, s.keyboard)  # one template pass, both later cuts
        cut = decoder.candidate_scores(s.points, s.keyboard, logp, shortlist=wide)
        kept["wide"].append(t in wide.lexicon_index)
        kept["shortlist"].append(t in cut.lexicon_index)
    return {"lexicon": float(np.mean([t >= 0 for t in truth]))} | {
        step: float(np.mean(flags)) for step, flags in kept.items()
    }


def latencies(decoders: list[LearnedDecoder], swipes: list[RealSwipe]) -> list[dict]:
    """p50 / p99 ms of each decoder on the same swipes, each swipe decoded by all in turn."""
    for decoder in decoders:
        for r in swipes[:20]:
            decoder.decode(r.swipe.points, r.swipe.keyboard)
    gc.collect()
    times: list[list[float]] = [[] for _ in decoders]
    for r in swipes:
        for decoder, mine in zip(decoders, times):
            decoder.template.templates(r.swipe.keyboard)  # a device's keyboard: built once
            t = time.perf_counter()
            decoder.decode(r.swipe.points, r.swipe.keyboard)
            mine.append((time.perf_counter() - t) * 1e3)
    return [percentiles_ms(mine) for mine in times]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    (condition,) = conditions_named(args.lexicon)
    spec, model, _ = read_model_dir(base_dir("en"))
    shipped = Cuts.of(spec)
    settings = [shipped, *dict.fromkeys(c for c in args.cuts if c != shipped)]
    parts = {p: load_real(p)[: args.limit or None] for p in ("public-val", "dev")}
    lexicons = {p: condition.build([r.swipe.word for r in rows]) for p, rows in parts.items()}
    steps = {p: survival(spec.build_decoder(model, lexicons[p]), parts[p]) for p in parts}
    print(f"survival {steps} ({time.perf_counter() - t0:.0f} s)", flush=True)

    dev_rows, users = parts["dev"], [r.user for r in parts["dev"]]
    rows, hits, dev_decoders = [], {}, []
    for cuts in settings:
        val = cuts.apply(spec.build_decoder(model, lexicons["public-val"]))
        weights, val_top1 = tune_fusion(val, [r.swipe for r in parts["public-val"]])
        dev = spec.build_decoder(model, lexicons["dev"])
        dev.fusion = weights
        dev_decoders.append(cuts.apply(dev))
        dev_ranks = ranks(dev.decode_many, dev_rows)
        hits[cuts] = np.array([r == 1 for r in dev_ranks])
        m = metrics_from_ranks(dev_ranks)
        diff = "" if cuts == shipped else paired_points(users, hits[cuts], hits[shipped])
        rows.append(
            f"| {cuts}{' (the base)' if cuts == shipped else ''} | {val_top1:.3f} "
            f"| {m['top1']:.3f} | {m['top4']:.3f} | {diff} | {weights.template:g}/"
            f"{weights.prior:g}/{weights.letters:g}/{weights.length_bonus:g}"
        )
        print(rows[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    timed = dev_rows[: args.latency_swipes]
    times = latencies(dev_decoders, timed)
    base_p50, base_p99 = times[0]["p50"], times[0]["p99"]
    rows = [
        f"{row} | {t['p50']:.1f} / {t['p99']:.1f} | "
        f"{t['p50'] / base_p50:.2f}x / {t['p99'] / base_p99:.2f}x |"
        for row, t in zip(rows, times)
    ]

    lines = report_header("Where the base loses the word", "shortlist_recall.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Lexicon: {condition.label}. The base's own cuts (coarse / wide / shortlist): {shipped}.",
        "",
        "| part | swipes | word in the lexicon | ... passes the ends filter "
        "| ... in the coarse pass | ... in the wide list | ... in the shortlist |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {part} | {len(parts[part])} | {c['lexicon']:.3f} | {c['ends']:.3f} "
            f"| {c['coarse']:.3f} | {c['wide']:.3f} | {c['shortlist']:.3f} |"
            for part, c in steps.items()
        ],
        "",
        "Cuts (coarse / wide / shortlist), weights template / prior / letters / length bonus "
        f"chosen on public-val; decode time over {len(timed)} dev swipes on "
        f"{torch.get_num_threads()} threads:",
        "",
        "| cuts | public-val top-1 | dev top-1 | dev top-4 | dev vs the base's cuts, points "
        "| weights | p50 / p99 ms | p50 / p99 vs the base's cuts |",
        "|---|---:|---:|---:|---|---|---:|---:|",
        *rows,
        "",
        f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
