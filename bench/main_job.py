"""What the main job's release does to real people, under the two release gates.

    python bench/main_job.py

The main job (conf/ defaults: 10 synthetic users, 3 rounds from the shipped base, word-level
clients) runs once per `--seeds` value (`data.seed`: which synthetic users) in each of two
arms that differ only in what every round is measured on, and so what a release must beat the
base on:

- `synthetic`: 100 swipes of 4 held-out synthetic users (`evaluation.source=synthetic`, the
  main job's gate before this benchmark);
- `real`: 2,000 swipes of real public-val users (`evaluation.source=real`, the default for
  init=base since).

Then the model each arm leaves devices serving (its release, else the shipped base) is
measured as served (its own decoding weights, the lexicon as shipped) on the public-val and
the dev users of ../shared/real-swipes, paired by user against the base; every round of the
run is measured on public-val as well. Differences get a 95% interval from resampling users.
Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.checkpoints.format import read_checkpoint_dir
from fl_app.datasets.real import CITATION, load_real
from fl_app.datasets.real_eval import ranks, user_bootstrap
from fl_app.decoder.evaluation import metrics_from_ranks
from fl_app.decoder.spec import DecoderSpec
from fl_app.federation.config import compose, finalize
from fl_app.federation.experiment import run_experiment
from fl_app.federation.server import make_store

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "main-job.md"
ARMS = {"synthetic": "evaluation.source=synthetic", "real": "evaluation.source=real"}
BASE = "base"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4", help="data.seed values, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override for every run of both arms (repeatable), e.g. train.word_weight=3",
    )
    return p.parse_args(argv)


class RealJudge:
    """Top-1 hits of models as served on real users, each model decoded once per part."""

    def __init__(self) -> None:
        self.parts = {"public-val": load_real("public-val"), "dev": load_real("dev")}
        self.hits: dict[tuple[str, str], list[bool]] = {}  # (sha256, part) -> per swipe

    def __call__(self, sha: str, spec: DecoderSpec, tensors: dict, part: str) -> list[bool]:
        if (sha, part) not in self.hits:
            decoder = spec.build_decoder(spec.model_with(tensors))
            rk = ranks(decoder.decode_many, self.parts[part])
            self.hits[sha, part] = [r == 1 for r in rk]
            top1 = metrics_from_ranks(rk)["top1"]
            print(f"[judge] {sha[:12]} on {part}: top-1 {top1:.3f}", flush=True)
        return self.hits[sha, part]

    def versus(self, hits: list[bool], base: list[bool], part: str) -> tuple[float, float, float]:
        """Mean top-1 difference in points with its 95% interval over users."""
        users = [r.user for r in self.parts[part]]
        mean, low, high = user_bootstrap(users, hits, base)
        return 100 * mean, 100 * low, 100 * high


def run_arm(seed: int, arm: str, work: Path, extra: list[str]) -> dict:
    """One main job: its run summary, the round it released (None) and its rounds' tensors."""
    overrides = [*extra, f"paths.root={work / f'{arm}-{seed}'}", f"data.seed={seed}", ARMS[arm]]
    overrides.append("evaluation.report_dev=false")  # the bench measures dev itself
    cfg = finalize(compose(overrides))
    t0 = time.perf_counter()
    summary = run_experiment(cfg, echo=lambda line: print(f"[{arm} {seed}] {line}", flush=True))
    store = make_store(cfg.checkpoints)
    release = store.read_release()
    released = release["round"] if release and release["run_id"] == summary.run_id else None
    rounds = {r: store.load(summary.run_id, r, extras=False) for r in summary.rounds}
    return {
        "seed": seed,
        "arm": arm,
        "wall": time.perf_counter() - t0,
        "released": released,
        "floor": summary.incumbent.metrics["top1"] if summary.incumbent.metrics else None,
        "gate": {
            rec["round"]: rec["central"]["top1"] for rec in summary.records if "central" in rec
        },
        "rounds": {r: (c.manifest["sha256"], c.tensors) for r, c in rounds.items()},
        "spec": DecoderSpec.from_manifest(rounds[0].manifest["decoder"]),
    }


def arms_identity_note(runs: list[dict]) -> str:
    """Say whether the two arms trained the same rounds: they differ only in the gate, but the
    simulation does not fix the order of the clients' work, so bit-identity is counted, not
    assumed."""
    shas: dict[tuple[int, int], set[str]] = {}  # (data.seed, round) -> the arms' sha256s
    for run in runs:
        for rnd, (sha, _) in run["rounds"].items():
            if rnd:
                shas.setdefault((run["seed"], rnd), set()).add(sha)
    same = sum(len(arm_shas) == 1 for arm_shas in shas.values())
    return (
        f"{same} of {len(shas)} rounds were bit-identical across the arms (same sha256; the "
        "simulation does not fix the order of the clients' work), so each arm's rounds are "
        "measured."
    )


def fmt(diff: tuple[float, float, float]) -> str:
    return f"{diff[0]:+.1f} ({diff[1]:+.1f} to {diff[2]:+.1f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="swipefl-mainjob-"))
    judge = RealJudge()
    base_tensors, base_manifest = read_checkpoint_dir(base_dir("en"))
    base_spec, base_sha = (
        DecoderSpec.from_manifest(base_manifest["decoder"]),
        base_manifest["sha256"],
    )
    base_hits = {p: judge(base_sha, base_spec, base_tensors, p) for p in judge.parts}

    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [run_arm(seed, arm, work, args.override) for seed in seeds for arm in ARMS]
    rows, served_rows = [], []
    for seed in seeds:
        arms = {r["arm"]: r for r in runs if r["seed"] == seed}
        cells = [str(seed)]
        for arm, run in arms.items():
            for rnd, (sha, tensors) in sorted(run["rounds"].items()):
                if rnd == 0:
                    continue
                hits = judge(sha, run["spec"], tensors, "public-val")
                rows.append(
                    f"| {seed} | {arm} | {rnd} | {run['gate'][rnd]:.3f} | {run['floor']:.3f} | "
                    f"{'yes' if rnd == run['released'] else 'no'} | "
                    f"{fmt(judge.versus(hits, base_hits['public-val'], 'public-val'))} |"
                )
            rnd = run["released"]
            if rnd is None:
                cells += ["none (base)", "+0.0", "+0.0"]
                continue
            sha, tensors = run["rounds"][rnd]
            diffs = [
                fmt(judge.versus(judge(sha, run["spec"], tensors, p), base_hits[p], p))
                for p in judge.parts
            ]
            cells += [f"round {rnd}", *diffs]
        served_rows.append("| " + " | ".join(cells) + " |")

    walls = {arm: [r["wall"] for r in runs if r["arm"] == arm] for arm in ARMS}
    base_top1 = {p: sum(h) / len(h) for p, h in base_hits.items()}
    lines = report_header("The main job's release on real people", "main_job.py", argv=argv)
    lines += [
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        *([f"Every run also had `{' '.join(args.override)}`.", ""] if args.override else []),
        f"Shipped base as served: public-val top-1 {base_top1['public-val']:.3f} "
        f"({len(base_hits['public-val'])} swipes), dev {base_top1['dev']:.3f} "
        f"({len(base_hits['dev'])} swipes).",
        "",
        "## What devices serve after the main job",
        "",
        "Top-1 against the shipped base in points (95% interval over users); a run that released "
        "nothing leaves the base.",
        "",
        "| data.seed | synthetic gate releases | public-val | dev | real gate releases "
        "| public-val | dev |",
        "|---:|---|---:|---:|---|---:|---:|",
        *served_rows,
        "",
        "Releases: "
        + ", ".join(
            f"{arm} gate {sum(r['released'] is not None for r in runs if r['arm'] == arm)} "
            f"of {len(seeds)} runs"
            for arm in ARMS
        )
        + ".",
        "",
        "## Every round: what its gate saw, and real public-val users",
        "",
        "Gate: the round's top-1 on the arm's evaluation swipes, and the base's on the same "
        "swipes (a round is released only above it and above the run's earlier rounds). Last "
        "column: the round as served on every public-val user, against the base. "
        + arms_identity_note(runs),
        "",
        "| data.seed | gate | round | round on gate | base on gate | released "
        "| public-val vs base |",
        "|---:|---|---:|---:|---:|---|---:|",
        *rows,
        "",
        "Main job wall time per run (in process, no SuperLink): synthetic gate "
        f"{sum(walls['synthetic']) / len(seeds):.0f} s, real gate "
        f"{sum(walls['real']) / len(seeds):.0f} s (ratio "
        f"{sum(walls['real']) / sum(walls['synthetic']):.2f}); the whole benchmark "
        f"{(time.perf_counter() - t0) / 60:.0f} min.",
        "",
        f"Data: {CITATION}",
        "",
    ]
    write_report(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
