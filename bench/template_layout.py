"""The template pass with coordinate-major path banks against the point-major layout it
replaced, in one process, on real dev swipes with the shipped 100,000-word lexicon.

    python bench/template_layout.py

The template pass (end-key filter, coarse pass, location and shape channels) runs on every
swipe before the model's cut, so its time is part of the 10 ms decode bound. Both layouts are
timed interleaved, round after round, on the same swipes and keyboards; the figure is their
ratio. The run also checks that both give the same candidates and distances to the bit.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
from report_header import report_header, write_report

from fl_app.base import base_spec
from fl_app.datasets.real import CITATION, load_real
from fl_app.decoder.keyboard import Keyboard
from fl_app.decoder.lexicon import load_lexicon
from fl_app.decoder.template import (
    COARSE_STRIDE,
    MIN_CANDIDATES,
    TemplateDecoder,
    TemplateParams,
    Templates,
    _row_norm,
    normalise_shape,
    resample_path,
)

OUT = Path(__file__).resolve().parent / "results" / "template_layout.md"


def point_major_distances(
    points: np.ndarray, keyboard: Keyboard, banks: dict[str, np.ndarray], tpl: Templates,
    p: TemplateParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The template pass as it was: (words, n, 2) banks, each distance a norm over the
    trailing pair of coordinates."""

    trace = resample_path(keyboard.to_key_units(points[:, :2]))
    d_start = _row_norm(tpl.key_centres - trace[0])[tpl.start_key]
    d_end = _row_norm(tpl.key_centres - trace[-1])[tpl.end_key]
    cand = np.flatnonzero((d_start <= p.start_radius) & (d_end <= p.end_radius))
    if len(cand) < MIN_CANDIDATES:
        m = min(MIN_CANDIDATES, len(d_start))
        cand = np.argpartition(d_start / p.start_radius + d_end / p.end_radius, m - 1)[:m]
    trace32 = trace.astype(np.float32)
    if len(cand) > p.coarse_keep:
        d_coarse = _row_norm(banks["coarse"][cand] - trace32[::COARSE_STRIDE]).mean(-1)
        cand = cand[np.argpartition(d_coarse, p.coarse_keep - 1)[: p.coarse_keep]]
    d_loc = _row_norm(banks["location"][cand] - trace32).mean(-1)
    d_shape = _row_norm(banks["shape"][cand] - normalise_shape(trace32)).mean(-1)
    return cand, d_shape.astype(np.float64), d_loc.astype(np.float64)


def point_major(tpl: Templates) -> dict[str, np.ndarray]:
    return {
        name: np.ascontiguousarray(getattr(tpl, name).transpose(0, 2, 1))
        for name in ("location", "coarse", "shape")
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--swipes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    spec = base_spec("en")
    decoder = TemplateDecoder(load_lexicon(spec.language, spec.lexicon_size), spec.template)
    dev = load_real("dev")
    swipes = [r.swipe for r in dev[:: max(1, len(dev) // args.swipes)]][: args.swipes]
    banks = {}
    for s in swipes:  # a device's keyboard: templates built once, off the timed path
        tpl = decoder.templates(s.keyboard)
        if s.keyboard.layout_key not in banks:
            banks[s.keyboard.layout_key] = point_major(tpl)
        new = decoder.channel_distances(s.points, s.keyboard)
        old = point_major_distances(s.points, s.keyboard, banks[s.keyboard.layout_key], tpl,
                                    decoder.params)  # fmt: skip
        if not all(np.array_equal(a, b) for a, b in zip(new, old)):
            raise SystemExit("the layouts disagree: the benchmark's premise is broken")
    gc.collect()
    times: dict[str, list[float]] = {"point-major (before)": [], "coordinate-major": []}
    for _ in range(args.rounds):
        for s in swipes:
            tpl = decoder.templates(s.keyboard)
            bank = banks[s.keyboard.layout_key]
            t = time.perf_counter()
            point_major_distances(s.points, s.keyboard, bank, tpl, decoder.params)
            times["point-major (before)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            decoder.channel_distances(s.points, s.keyboard)
            times["coordinate-major"].append(time.perf_counter() - t)
    base = np.mean(times["point-major (before)"])
    rows = [
        f"| {name} | {np.mean(t) * 1e3:.2f} | {np.percentile(t, 50) * 1e3:.2f} | "
        f"{np.percentile(t, 99) * 1e3:.2f} | {np.mean(t) / base:.2f} |"
        for name, t in times.items()
    ]
    lines = [
        *report_header("Template pass: path-bank layout", "template_layout.py", argv=argv),
        f"{len(swipes)} dev swipes x {args.rounds} rounds, interleaved; the shipped base's "
        f"template weights and {spec.lexicon_size:,}-word lexicon; both layouts gave the same "
        f"candidates and distances to the bit. Data: {CITATION}.",
        "",
        "| layout | mean ms | p50 ms | p99 ms | time vs before |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    write_report(OUT, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
