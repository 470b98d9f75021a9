"""Can one network learn an ensemble's choices? The word-level stage with teachers, measured.

    python bench/word_level_teachers.py --teachers DIR [DIR ...] [--shares 0.5 1.0]

Two or three separately trained models, each shortlisted word's CTC score averaged, beat the
shipped base on dev by +0.5 to +0.8 points (`bench/results/decoding-levers-path.md`), for two or
three networks' work per swipe. Distillation asks whether one network can learn their choices:
the word-level stage (`fl_app/decoder/discriminative.py`) with `teachers`, whose averaged
choice among each training swipe's candidates is `teacher_share` of the target.

Every arm starts from the shipped base and runs the recipe's word-level stage once more on the
same mined close calls (public-train and the stage's fresh synthetic users, mined once by the
base's own decoder), the same seed and steps: a control with the truth as the whole target,
then one arm per share. The fusion weights are re-tuned on public-val after each, and each
lexicon condition's figures are measured as the recipe measures them (weights re-tuned on
public-val per condition; dev reported, paired by user against the control). About 15 minutes
per arm on two threads. Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.datasets.real import CITATION, RealSwipe, load_real
from fl_app.datasets.real_eval import CONDITIONS, RealFigure, measure_on_real, paired_points
from fl_app.decoder.discriminative import fine_tune, mine_choices
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, read_model_dir
from fl_app.decoder.tuning import tune_fusion
from fl_app.pretrain.config import PretrainConfig
from fl_app.pretrain.recipe import SHIPPED, calibration, load_teachers, synthetic_swipes

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "word-level-teachers.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teachers", nargs="+", required=True, help="checkpoint folders")
    p.add_argument("--shares", nargs="+", type=float, default=[0.5, 1.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if any(not 0.0 < s <= 1.0 for s in args.shares):
        p.error("--shares must lie in (0, 1]: the control (share 0) always runs")
    return args


def arm(
    cfg: PretrainConfig,
    spec: DecoderSpec,
    base: SwipeModel,
    mined: tuple[list, list],
    teachers: list,
    share: float,
    val: list[RealSwipe],
    dev: list[RealSwipe],
) -> tuple[list[RealFigure], float]:
    """The base after one more word-level stage with `share` of the target the teachers'
    (0: none), then its figures; returns them and the stage's seconds."""
    model = copy.deepcopy(base)
    dc = replace(cfg.discriminative, teacher_share=share)
    t0 = time.perf_counter()
    fine_tune(
        model,
        spec.features,
        *mined,
        dc,
        cfg.data.augment,
        seed=cfg.seed,
        teachers=teachers,
    )
    seconds = time.perf_counter() - t0
    decoder = LearnedDecoder(model, spec.features, SHIPPED.build([]), spec.template, spec.fusion)
    fusion, _ = tune_fusion(decoder, [r.swipe for r in val])
    tuned = replace(spec, fusion=fusion)
    return measure_on_real(
        {"m": (tuned, model)}, dev, val, CONDITIONS, False, lambda _: None
    ), seconds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    cfg = PretrainConfig()
    spec, base, manifest = read_model_dir(base_dir("en"))
    teachers, records = load_teachers(replace(cfg.discriminative, teachers=args.teachers), spec)
    val, dev = load_real("public-val"), load_real("dev")
    real = load_real(cfg.data.real_parts)

    t0 = time.perf_counter()
    decoder = LearnedDecoder(base, spec.features, SHIPPED.build([]), spec.template, spec.fusion)
    dc = cfg.discriminative
    synthetic = synthetic_swipes(cfg, spec, dc.synthetic_users, dc.synthetic_seed, calibration(cfg))
    mined = (
        mine_choices(decoder, [r.swipe for r in real], dc.candidates),
        mine_choices(decoder, synthetic, dc.candidates),
    )
    print(
        f"mined {len(mined[0])} real, {len(mined[1])} synthetic ({time.perf_counter() - t0:.0f} s)"
    )

    arms: dict[str, tuple[list[RealFigure], float]] = {}
    for share in [0.0, *args.shares]:
        label = "control: the truth alone" if not share else f"teachers' share {share:g}"
        arms[label] = arm(cfg, spec, base, mined, teachers, share, val, dev)
        print(f"{label}: done ({arms[label][1]:.0f} s of fine-tuning)", flush=True)

    lines = report_header("The word-level stage with teachers", "word_level_teachers.py", argv=argv)
    lines += [
        f"The shipped base (sha256 `{manifest['sha256'][:12]}`) after one more word-level stage "
        f"({dc.steps} steps, batches of {dc.batch_size}, on {len(mined[0])} real and "
        f"{len(mined[1])} synthetic mined swipes) per arm. Teachers:",
        "",
        *[
            f"- `{r['dir']}` (sha256 `{r['sha256'][:12]}`, frames: {r['resample']})"
            for r in records
        ],
        "",
        "Top-1 on public-val (weights tuned there) and dev (reported); dev's difference against "
        "the control in points, paired by user (95% interval). The shipped base's own manifest: "
        + ", ".join(
            f"{c} public-val {manifest['metrics']['public_val'][c]['top1']:.3f} / dev "
            f"{manifest['metrics']['dev'][c]['top1']:.3f}"
            for c in manifest["metrics"]["dev"]
        )
        + ".",
        "",
        "| arm | lexicon | public-val | dev | dev top-4 | dev vs control |",
        "|---|---|---:|---:|---:|---|",
    ]
    control = next(iter(arms.values()))[0]
    users = [r.user for r in dev]
    for label, (figures, _) in arms.items():
        for fig, ref in zip(figures, control):
            diff = "" if fig is ref else paired_points(users, fig.hits, ref.hits)
            lines.append(
                f"| {label} | {fig.condition} | {fig.tuned['val_top1']:.3f} | "
                f"{fig.metrics['top1']:.3f} | {fig.metrics['top4']:.3f} | {diff} |"
            )
    lines += ["", f"Real swipes: {CITATION}.", ""]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
