"""How much each real person in training is worth: the recipe's models trained on 0, some and
all of public-train's people, decoded on the same dev users, so the team can tell whether more
real people (a federation over device users, a larger public set) could reach a target.

    python bench/real_people.py [--models DIR ...] [--limit N] [--threads 2]

Each model folder is one run of `python -m fl_app.pretrain`, labelled by the people its
manifest says it trained on (`data.real.users`; `data.real_users=N` samples them). Under
"10k + evaluated words" every model's fusion weights are re-tuned on public-val and its dev
ranks kept, so the differences are paired by swipe, with a 95% interval from resampling users;
that reproduces the manifests' own figures, whose other two lexicons are shown as recorded.
The fit of top-1 on log2(people) over the runs with real people is an extrapolation, and is
labelled as one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from real_parts import parts_sentence, real_bench_parser, val_and_dev
from report_header import report_header, shown_path, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, RealSwipe, real_users
from fl_app.datasets.real_eval import CONDITIONS, measure_on_real, paired_points
from fl_app.decoder.spec import read_model_dir

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "real-people.md"
TWIN = ROOT / "models" / "synthetic-only"
PAIRED = CONDITIONS[0]  # 10k + evaluated words: the headline target
# what the study recorded of each person (users.jsonl): where do the misses gather?
TRAITS = ("phone", "swipe_finger", "familiarity", "english_level")
EXTRAPOLATE_TO = (500, 997)  # twice public-train; public-train and the device users together


def people(manifest: dict) -> int:
    return int(manifest["data"]["real"]["users"])


def log_fit(counts: list[int], top1: list[float]) -> tuple[float, float] | None:
    """(intercept, slope per doubling) of top-1 on log2(people), over runs with real people."""
    pairs = [(np.log2(n), t) for n, t in zip(counts, top1) if n > 0]
    if len(pairs) < 2:
        return None
    x, y = np.array(pairs).T
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def trait_rows(dev: list[RealSwipe], hits: dict[str, np.ndarray]) -> list[str]:
    """Dev top-1 of every model for each group of users the study's answers make."""
    answers = real_users()
    rows = []
    for trait in TRAITS:
        values = np.array([_answer(answers[r.user].get(trait)) for r in dev])
        for value in sorted(set(values)):
            mask = values == value
            n_users = len({r.user for r, m in zip(dev, mask) if m})
            cells = " | ".join(f"{h[mask].mean():.3f}" for h in hits.values())
            rows.append(f"| {trait} | {value} | {n_users} | {int(mask.sum())} | {cells} |")
    return rows


def _answer(value: object) -> str:
    """An answer as a table shows it; a missing one as "-" (False is an answer)."""
    return "-" if value is None or value == "" else str(value)


def recorded(manifest: dict, part: str) -> str:
    """The manifest's top-1 under the three lexicons, as the recipe wrote them."""
    figures = manifest["metrics"].get(part, {})
    return " / ".join(
        f"{figures[c.label]['top1']:.3f}" if c.label in figures else "-" for c in CONDITIONS
    )


def main(argv: list[str] | None = None) -> int:
    parser = real_bench_parser(__doc__, DEFAULT_OUT)
    parser.add_argument(
        "--models", type=Path, nargs="+", default=[TWIN, base_dir("en")], help="recipe outputs"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    loaded = [read_model_dir(d) for d in args.models]
    runs = sorted(zip(args.models, loaded), key=lambda run: people(run[1][2]))
    counts = [people(manifest) for _, (_, _, manifest) in runs]
    if len(set(counts)) != len(counts):
        raise SystemExit(f"two models trained on as many people ({counts}): one run per count")
    val, dev = val_and_dev(args.limit)
    models = {str(n): (spec, model) for n, (_, (spec, model, _)) in zip(counts, runs)}
    figures = measure_on_real(models, dev, val, [PAIRED], template=False)
    hits = {f.decoder: f.hits for f in figures}
    users = [r.user for r in dev]
    most = str(counts[-1])

    lines = report_header("Real people in training", "real_people.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        parts_sentence(val, dev),
        "",
        f"| real people | model | public-val top-1, {PAIRED.label} | dev top-1 | dev top-4 "
        f"| dev vs {most} people (points) | recorded top-1, public-val; dev (three lexicons) |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for n, (directory, (_, _, manifest)), fig in zip(counts, runs, figures):
        if str(n) == most:
            diff = ""
        else:
            diff = paired_points(users, hits[str(n)], hits[most])
        lines.append(
            f"| {n} | `{shown_path(directory)}` | {fig.tuned['val_top1']:.3f} "
            f"| {fig.metrics['top1']:.3f} | {fig.metrics['top4']:.3f} | {diff} "
            f"| {recorded(manifest, 'public_val')}; {recorded(manifest, 'dev')} |"
        )
    lines += [
        "",
        f"Dev top-1 ({PAIRED.label}) by what the study recorded of each user (users.jsonl):",
        "",
        "| trait | answer | users | swipes | " + " | ".join(f"{n} people" for n in hits) + " |",
        "|---|---|---:|---:|" + "---:|" * len(hits),
        *trait_rows(dev, hits),
    ]
    fit = log_fit(counts, [f.metrics["top1"] for f in figures])
    if fit is not None:
        intercept, slope = fit
        guesses = ", ".join(
            f"{n} people {intercept + slope * np.log2(n):.3f}" for n in EXTRAPOLATE_TO
        )
        lines += [
            "",
            f"Dev top-1 ({PAIRED.label}) against log2(real people), fitted over the runs with "
            f"real people: {100 * slope:+.1f} points per doubling. Extrapolated, not measured: "
            f"{guesses}.",
        ]
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s. {CITATION}", ""]
    write_report(args.out, "\n".join(lines))
    print(json.dumps({"people": counts, "fit": fit}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
