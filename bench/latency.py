"""Single-swipe decode latency of the production-size decoder, in a process that holds
nothing but the decoder (as the sidecar does).

    python bench/latency.py [--out FILE]

Each table row also gives its p50 and p99 as multiples of the template baseline's p50 in the
same process: the machines are noisy, and a ratio says what a slow hour does not.

Compute cost does not depend on the weights' values, so an untrained model of the same
architecture stands in for a trained one: the same shapes, shortlist and CTC work per swipe.
bench/accuracy.py measures latency too, but inside a process holding 180,000 training swipes,
whose garbage collector and memory traffic inflate the figures.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fl_app.decoder.model import count_parameters
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.template import TemplateDecoder
from fl_app.synthetic.centralized import TEST_SEED, user_swipes

OUT = Path(__file__).resolve().parent / "results" / "latency.md"


def measure(decoder, swipes) -> list[float]:
    template = getattr(decoder, "template", decoder)
    for s in swipes[:20]:
        decoder.decode(s.points, s.keyboard, k=4)
    times = []
    for s in swipes:
        template.templates(s.keyboard)  # a device's keyboard: templates built once, off-path
        t = time.perf_counter()
        decoder.decode(s.points, s.keyboard, k=4)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the report (default {OUT})")
    out = parser.parse_args().out
    spec = DecoderSpec(lexicon_size=10000)
    lexicon = spec.lexicon()
    model = spec.build_model(seed=0, device=torch.device("cpu"))
    learned = spec.build_decoder(model, lexicon)
    template = TemplateDecoder(lexicon, spec.template)
    swipes = user_swipes(100, 10, TEST_SEED, lexicon)
    gc.collect()
    gc.freeze()
    times = {
        name: np.array(measure(dec, swipes))
        for name, dec in (
            ("learned (CTC + template shortlist)", learned),
            ("template baseline", template),
        )
    }
    baseline = np.percentile(times["template baseline"], 50)
    rows = [
        f"| {name} | {np.percentile(t, 50):.1f} | {np.percentile(t, 90):.1f} | "
        f"{np.percentile(t, 99):.1f} | {t.max():.1f} | {len(t)} | "
        f"{np.percentile(t, 50) / baseline:.1f}x / {np.percentile(t, 99) / baseline:.1f}x |"
        for name, t in times.items()
    ]
    frames = [min(96, max(32, round(s.duration_ms / 15) + 1)) for s in swipes]
    text = "\n".join(
        [
            "# Decode latency, one swipe at a time (batch of one)",
            "",
            "Command: `python bench/latency.py` — " + f"{platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; "
            f"{count_parameters(model):,}-parameter model, 10,000-word lexicon, "
            f"{len(swipes)} swipes of 100 held-out synthetic users (median {np.median(frames):.0f} frames).",
            "",
            "| decoder | p50 ms | p90 ms | p99 ms | max ms | n | p50 / p99 vs template p50 |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
