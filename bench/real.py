"""Decoders on real people (issues 12 and 13): the dev users of the real phone swipes.

    python bench/real.py --model "synthetic-only (bench/accuracy.py recipe)=bench/models/accuracy"
    python bench/real.py --model "shipped base=fl_app/base/en" --model "synthetic-only=..."

Dev users (docs/data.md) are never trained on and never used to choose anything: every weight
of every decoder here (the template baseline's sigmas and prior, the learned decoder's fusion
weights) is tuned on public-val users first, with the same lexicon condition built from their
words. Reported: top-1/top-4/MRR with a 95% interval from resampling users, under each lexicon
condition (fl_app/datasets/real_eval.py), the lexicons' coverage of the dev words, and the
learned decoders' single-swipe decode latency with the shipped lexicon. Figures from this data
cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report_header import report_header, write_report

from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import coverage, figures_table, measure_on_real
from fl_app.decoder.lexicon import load_lexicon
from fl_app.decoder.model import SwipeModel, count_parameters
from fl_app.decoder.spec import DecoderSpec, read_model_dir

OUT = Path(__file__).resolve().parent / "results" / "real.md"


def decode_latency(spec: DecoderSpec, model: SwipeModel, swipes: list[RealSwipe]) -> dict:
    """Milliseconds to decode one swipe (batch of one) with the shipped lexicon, and the same for
    the decoder's own template pass alone, timed on the same swipes in turn with it: a baseline
    from the same minutes, so a day when the machine runs slow shows in both (the ratio holds)."""
    decoder = spec.build_decoder(model, load_lexicon(spec.language, 100_000))
    for r in swipes[:20]:
        decoder.decode(r.swipe.points, r.swipe.keyboard)
    gc.collect()
    learned, template = [], []
    for r in swipes:
        decoder.template.templates(r.swipe.keyboard)  # a device's keyboard: built once
        for times, decode in ((learned, decoder.decode), (template, decoder.template.decode)):
            t = time.perf_counter()
            decode(r.swipe.points, r.swipe.keyboard)
            times.append((time.perf_counter() - t) * 1e3)
    return {"decode": percentiles_ms(learned), "template": percentiles_ms(template)}


def percentiles_ms(times: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def latency_line(label: str, parameters: int, latency: dict, n: int) -> str:
    d, t = latency["decode"], latency["template"]
    return (
        f"- {label} ({parameters:,} parameters): decode p50 {d['p50']:.1f} ms, "
        f"p99 {d['p99']:.1f} ms per swipe (batch of one, 100,000-word lexicon, "
        f"{n} dev swipes, {torch.get_num_threads()} threads); "
        f"its template pass alone, timed in turn with it: p50 {t['p50']:.1f} ms, "
        f"p99 {t['p99']:.1f} ms (the whole decode {d['p50'] / t['p50']:.1f}x "
        f"that at p50, {d['p99'] / t['p99']:.1f}x at p99)"
    )


def coverage_table(dev: list[RealSwipe]) -> list[str]:
    words = {r.swipe.word for r in dev}
    lines = ["| lexicon | dev swipes covered | distinct dev words covered |", "|---|---:|---:|"]
    for size in (10_000, 20_000, 50_000, 100_000):
        lex = load_lexicon("en", size)
        share = sum(w in lex for w in words) / len(words)
        lines.append(f"| {size:,} most frequent | {coverage(dev, lex):.3f} | {share:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="LABEL=checkpoint folder")
    p.add_argument("--latency-swipes", type=int, default=500)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    models = {}
    for item in args.model:
        label, _, path = item.rpartition("=")
        models[label or path] = read_model_dir(path)[:2]
    t0 = time.perf_counter()
    dev, val = load_real("dev"), load_real("public-val")
    rows = measure_on_real(models, dev, val)
    latency = {
        label: decode_latency(spec, model, dev[: args.latency_swipes])
        for label, (spec, model) in models.items()
    }
    header = report_header(
        "Decoders on real users",
        "real.py",
        f"; {len(dev):,} swipes of {len({r.user for r in dev})} dev users, decoding weights "
        f"tuned on {len(val):,} swipes of {len({r.user for r in val})} public-val users. "
        f"Data: {CITATION}",
        argv,
    )
    lat = [
        latency_line(
            label, count_parameters(model), latency[label], n=len(dev[: args.latency_swipes])
        )
        for label, (_, model) in models.items()
    ]
    text = "\n".join(
        [
            *header,
            "## Accuracy on dev users",
            "",
            *figures_table(rows),
            "",
            "## Lexicon coverage of the dev users' words",
            "",
            *coverage_table(dev),
            "",
            "## Decode latency",
            "",
            *(lat or ["- (no learned decoder given)"]),
            "",
            f"Wall time {time.perf_counter() - t0:.0f} s.",
            "",
            "## Tuned weights (public-val)",
            "",
            "```json",
            json.dumps(
                [{"decoder": r.decoder, "lexicon": r.condition, **r.tuned} for r in rows], indent=1
            ),
            "```",
            "",
        ]
    )
    write_report(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
