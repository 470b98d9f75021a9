"""Scale in simulation: 1,000 simulated SuperNodes, 10% of them sampled every round.

    python bench/scale.py                                 # 1000 nodes, 10% per round, 4 rounds
    python bench/scale.py --nodes 200 --rounds 2 --out /tmp/scale.md    # a quick look
    python bench/scale.py -- train.epochs=2               # extra Hydra overrides after `--`

The project's ServerApp and ClientApp in Flower's simulation engine (Ray, one CPU per ClientApp)
with a tiny per-user footprint: each node is one synthetic user with `--swipes` swipes in its
own cached swipe store (generated before the timed run, two processes), a small model, and a
1000-word lexicon. Reports seconds per round and the peak memory of the whole process tree
(this process, Ray's GCS, raylet and workers): the sum of every process's PSS (proportional set
size, so shared pages count once), sampled every 0.5 s. Writes `--out` with the command.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from memory import PeakMemory
from report_header import report_header, write_report

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "scale.md"
TINY = [
    "init=random",
    "train.word_weight=0",  # CTC clients, as its committed results were measured
    "model.conv_channels=16",
    "model.hidden=16",
    "data.lexicon_size=1000",
    "train.epochs=1",
    "train.batch_size=16",
    "train.min_swipes=8",
    "evaluation.users=2",
    "evaluation.swipes_per_user=25",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--fraction", type=float, default=0.1, help="share sampled per round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--swipes", type=int, default=20, help="swipes per user (before the split)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    return p.parse_args(argv)


# -- the run -----------------------------------------------------------------------------------


def _generate(job: tuple[str, dict, int, int]) -> None:
    from fl_app.decoder.spec import DecoderSpec
    from fl_app.federation.data import ensure_synthetic_store

    cache, spec_manifest, seed, n = job
    ensure_synthetic_store(cache, DecoderSpec.from_manifest(spec_manifest), seed, n)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    torch.set_num_threads(1)
    from flwr.simulation import run_simulation

    from fl_app.federation.config import compose, default_cache_dir, finalize
    from fl_app.federation.metrics import read_lines
    from fl_app.federation.server import make_server_app

    work = Path(tempfile.mkdtemp(prefix="swipefl-scale-"))
    cache = str(default_cache_dir() / "synthetic")
    cfg = finalize(
        compose(
            [
                *TINY,
                f"paths.root={work}",
                f"data.cache_dir={cache}",
                f"data.swipes_per_user={args.swipes}",
                f"simulation.num_supernodes={args.nodes}",
                f"federation.num_rounds={args.rounds}",
                f"federation.fraction_train={args.fraction}",
                "federation.fraction_evaluate=0",
                "federation.min_available_nodes=2",
                "run_id=scale",
                *args.overrides,
            ]
        )
    )
    spec = cfg.decoder
    seed = cfg.data.seed
    t0 = time.perf_counter()
    jobs = [(cache, spec.to_manifest(), seed + p, args.swipes) for p in range(args.nodes)]
    with multiprocessing.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        pool.map(_generate, jobs, chunksize=8)
    gen_seconds = time.perf_counter() - t0

    monitor = PeakMemory()
    monitor.start()
    t0 = time.perf_counter()
    try:
        run_simulation(
            server_app=make_server_app(cfg, outputs_dir=work / "outputs", echo=print),
            client_app=_client_app(),
            num_supernodes=args.nodes,
            backend_config={
                "client_resources": {
                    "num_cpus": cfg.simulation.client_cpus,
                    "num_gpus": 0.0,
                },
                "init_args": {"log_to_driver": True},
            },
        )
        total = time.perf_counter() - t0
        monitor.stop()
        records = read_lines(work / "outputs" / "metrics.jsonl")
    finally:
        shutil.rmtree(work, ignore_errors=True)  # checkpoints and metrics of the bench run
    text = render(args, cfg, records, monitor, total, gen_seconds)
    write_report(args.out, text)
    return 0


def _client_app():
    from fl_app.federation.client import make_client_app

    return make_client_app()


def render(args, cfg, records, monitor: PeakMemory, total: float, gen_seconds: float) -> str:
    trained = [r for r in records if r["round"] >= 1]
    warm = [r["seconds"] for r in trained if r["round"] >= 2]
    gib = monitor.peak / 2**30
    out = [
        *report_header(
            "1,000 simulated SuperNodes",
            "scale.py",
            f"; Flower simulation engine (Ray), {cfg.simulation.client_cpus:g} CPU per ClientApp",
        ),
        "## Setup",
        "",
        f"- {args.nodes} simulated SuperNodes, {args.fraction:.0%} sampled for training every "
        f"round ({int(args.nodes * args.fraction)} ClientApps a round), {args.rounds} rounds, no "
        "federated evaluation.",
        f"- Per node: one synthetic user, {args.swipes} swipes in its own SQLite swipe store "
        f"(generated before the run in {gen_seconds:.0f} s with 2 processes; cached); model conv "
        f"{cfg.decoder.conv_channels}, GRU {cfg.decoder.hidden} x {cfg.decoder.gru_layers}, lexicon "
        f"{cfg.data.language}-{cfg.data.lexicon_size}, {cfg.train.epochs:g} local epoch, batch "
        f"{cfg.train.batch_size}, `train.min_swipes` {cfg.train.min_swipes}.",
        f"- Centralized evaluation ({cfg.evaluation.users} x {cfg.evaluation.swipes_per_user} "
        "held-out swipes) and a local checkpoint every round, as in every run.",
        "- Peak memory: the largest sum of PSS over this process and all its descendants "
        "(Ray GCS, raylet, dashboard agent, workers), sampled every 0.5 s.",
        "",
        "## Result",
        "",
        "| | |",
        "|---|---|",
        f"| seconds per round (warm rounds 2..{args.rounds}, median) | "
        f"{statistics.median(warm):.1f} |"
        if warm
        else "| seconds per round | - |",
        f"| peak memory (PSS of the process tree) | {gib:.2f} GiB ({monitor.peak_procs} processes) |",
        f"| whole simulation (Ray start to shutdown) | {total:.0f} s |",
        f"| fits 24 GiB | {'yes' if gib < 24 else 'NO'} |",
        "",
        "| round | clients ok / sampled | seconds | top-1 | train loss |",
        "|---|---|---|---|---|",
    ]
    for r in trained:
        c = r["clients"]
        loss = (r.get("train") or {}).get("train-loss")
        out.append(
            f"| {r['round']}{' (warm-up)' if r['round'] == 1 else ''} | {c['ok']} / {c['sampled']} "
            f"| {r['seconds']:.1f} | {r['central']['top1']:.3f} | "
            + (f"{loss:.2f} |" if isinstance(loss, float) else "- |")
        )
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
