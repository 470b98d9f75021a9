"""Where the synthetic-only twin loses to the shipped base on real people: a guide for the
generator, measured on the public-val users (where choices are made).

    python bench/sim_to_real_gap.py [--users 150] [--limit N] [--twin DIR]

Two tables:

- *marginals*: each per-swipe quantity of `fl_app/synthetic/stats.py` (plus how far a trace
  strays from the polyline through its word's key centres) at the 1st to 99th percentile, for
  the recipe's generator (its training seed, `--users` users x 20 swipes), the same users
  replaying public-train people's habits (`fl_app/synthetic/habits.py`, in the recipe's
  `data.habit_share` of their swipes), and the real public-train people the generator was
  calibrated on. Where they agree, matching that quantity's spread is done;
- *the gap by quintile*: top-1 of the shipped base and of the synthetic-only twin
  (`bench/models/synthetic-only`, or `--twin`) on public-val under "10k + evaluated words", each decoded
  with its own manifest's weights, in five equal bins of each quantity. The twin never saw a
  real trace, so the bins where it falls furthest behind are the real swiping the generator
  does not yet produce.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report_header import report_header, shown_path, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, load_real
from fl_app.datasets.real_eval import LexiconCondition, ranks
from fl_app.decoder.features import collapse_repeats
from fl_app.decoder.lexicon import load_lexicon
from fl_app.decoder.spec import read_model_dir
from fl_app.decoder.swipe import Swipe
from fl_app.pretrain.config import DataSettings
from fl_app.synthetic.habits import HabitBank, build_bank
from fl_app.synthetic.stats import swipe_quantities
from fl_app.synthetic.users import iter_users

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "sim-to-real-gap.md"
TWIN = ROOT / "models" / "synthetic-only"
CONDITION = LexiconCondition(10_000, True)
RECIPE_DATA = DataSettings()  # the recipe's synthetic users: its seed and vocabulary
SWIPES_PER_USER = 20
QUANTITIES = (
    "ms_per_letter",
    "speed_kw_s",
    "path_ratio",
    "start_dist_kw",
    "end_dist_kw",
    "polyline_dev_kw",
    "word_length",
)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def polyline_deviation_kw(swipe: Swipe) -> float:
    """Mean distance (key widths) from each trace point to the polyline through the word's
    key centres: how loosely the finger follows the keys, wherever along the word."""
    kb = swipe.keyboard
    centres = kb.word_centres(collapse_repeats(swipe.word)) / kb.key_width
    xy = np.asarray(swipe.points, dtype=np.float64)[:, :2] / kb.key_width
    if len(centres) < 2:
        return float(np.hypot(*(xy - centres[0]).T).mean())
    a, ab = centres[:-1], np.diff(centres, axis=0)
    along = ((xy[:, None] - a[None]) * ab[None]).sum(2) / ((ab**2).sum(1) + 1e-12)[None]
    nearest = a[None] + np.clip(along, 0.0, 1.0)[..., None] * ab[None]
    return float(np.linalg.norm(xy[:, None] - nearest, axis=2).min(1).mean())


def quantities(swipes: list[Swipe]) -> dict[str, np.ndarray]:
    rows = [swipe_quantities(s) | {"polyline_dev_kw": polyline_deviation_kw(s)} for s in swipes]
    return {q: np.array([r[q] for r in rows]) for q in QUANTITIES}


def generated(users: int, lexicon, habits: HabitBank | None = None, share: float = 0.0):
    """The recipe's synthetic users (its seed), SWIPES_PER_USER swipes each."""
    made = iter_users(users, RECIPE_DATA.synthetic_seed, lexicon, habits=habits, habit_share=share)
    return [s for user in made for s in user.swipes(SWIPES_PER_USER)]


def top1_hits(directory: Path, swipes, lexicon) -> np.ndarray:
    spec, model, _ = read_model_dir(directory)
    return np.array([r == 1 for r in ranks(spec.build_decoder(model, lexicon).decode_many, swipes)])


def marginal_rows(columns: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """One row per quantity and source (real, generator, generator replaying habits)."""
    rows = []
    for q in QUANTITIES:
        for name, source in columns.items():
            values = source[q]
            cells = " | ".join(f"{v:.2f}" for v in np.nanpercentile(values, PERCENTILES))
            rows.append(f"| {q} | {name} | {cells} |")
    return rows


def gap_rows(values: dict[str, np.ndarray], base: np.ndarray, twin: np.ndarray) -> list[str]:
    rows = []
    for q in QUANTITIES:
        v = values[q]
        edges = np.nanpercentile(v, np.linspace(0, 100, 6))
        bins = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, 4)
        cells = []
        for b in range(5):
            inside = np.isfinite(v) & (bins == b)
            gap = 100 * (base[inside].mean() - twin[inside].mean())
            cells.append(f"{twin[inside].mean():.3f} / {base[inside].mean():.3f} ({gap:+.1f})")
        bounds = "/".join(f"{e:.2f}" for e in edges[1:-1])
        rows.append(f"| {q} | {bounds} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=150, help="synthetic users, 20 swipes each")
    parser.add_argument("--limit", type=int, default=0, help="public-val swipes (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--twin", type=Path, default=TWIN, help="the synthetic-only model set against the base"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    lexicon = load_lexicon("en", RECIPE_DATA.lexicon_size)
    train_rows = load_real("public-train")
    train = [r.swipe for r in train_rows]
    habits = build_bank((r.user, r.swipe) for r in train_rows)
    synthetic = generated(args.users, lexicon)
    replaying = generated(args.users, lexicon, habits, RECIPE_DATA.habit_share)
    val = load_real("public-val")[: args.limit or None]
    val_lexicon = CONDITION.build([r.swipe.word for r in val])
    base, twin = (top1_hits(d, val, val_lexicon) for d in (base_dir("en"), args.twin))

    lines = report_header("Where the synthetic-only twin loses", "sim_to_real_gap.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Marginals: {len(synthetic)} generated swipes against {len(train)} real ones; "
        f"the generator with habits replays {len(habits)} public-train people in "
        f"{RECIPE_DATA.habit_share:.0%} of its swipes (fl_app/synthetic/habits.py).",
        "",
        "| quantity | swipes | " + " | ".join(f"p{p}" for p in PERCENTILES) + " |",
        "|---|---|" + "---:|" * len(PERCENTILES),
        *marginal_rows(
            {
                "real public-train": quantities(train),
                "generator": quantities(synthetic),
                "generator + habits": quantities(replaying),
            }
        ),
        "",
        f"Top-1 on {len(val)} public-val swipes ({CONDITION.label}): twin "
        f"(`{shown_path(args.twin)}`) {twin.mean():.3f}, "
        f"base {base.mean():.3f}. Each cell: twin / base (the base's lead in points), "
        "quintile 1 holding the lowest values.",
        "",
        "| quantity | quintile bounds | q1 | q2 | q3 | q4 | q5 |",
        "|---|---|---|---|---|---|---|",
        *gap_rows(quantities([r.swipe for r in val]), base, twin),
        "",
        f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
