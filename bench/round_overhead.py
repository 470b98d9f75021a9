"""Round overhead in simulation: a warm round's wall time against its clients' training time.

    python bench/round_overhead.py                       # 10 users, 5 rounds, conf/ defaults
    python bench/round_overhead.py --users 10 --rounds 5 --out /tmp/overhead.md
    python bench/round_overhead.py -- model.hidden=128   # extra Hydra overrides after `--`

The federation of `conf/` (the main job's model and data) in Flower's simulation engine, every
user every round, no federated evaluation. The ClientApp is the project's own, wrapped to log,
per message, the training time measured in-process (`train-seconds`: `fl_app.decoder.training.train`,
the loop only) and the whole handler's time (store read, features, model build, training,
reply). A round's wall time is the ServerApp's (`metrics.jsonl` `seconds`: sending, waiting,
aggregation, centralized evaluation, checkpoint, release). Round 1 is the warm-up (Ray actors
start, torch loads); rounds 2.. are warm.

Two schedules: `sequential` (a ClientApp gets both cores' worth of Ray CPUs, so one trains at a
time: the ratio wall / sum(train) is the overhead itself; the target is <= 1.5x) and `parallel`
(one CPU each: two at a time on 2 cores, as the main job runs). Writes `--out` with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from report_header import report_header, write_report

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "round_overhead.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--schedules", default="sequential,parallel", help="sequential and/or parallel")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    return p.parse_args(argv)


def timed_client_app(log_path: str):
    """The project's ClientApp, logging each message's timings to `log_path` (JSON lines)."""
    from flwr.clientapp import ClientApp

    from fl_app.federation import protocol as P
    from fl_app.federation.client import evaluate_on_store, train_on_store

    app = ClientApp()

    @app.train()
    def train(message, context):
        start = time.time()
        t0 = time.perf_counter()
        reply = train_on_store(message, context)
        handler = time.perf_counter() - t0
        cfg = message.content[P.CONFIG]
        line = {
            "round": int(cfg.get("server-round", 0)),
            "node": int(context.node_id),
            "start": start,
            "end": time.time(),
            "handler_seconds": handler,
            "train_seconds": float(reply.content[P.METRICS][P.TRAIN_SECONDS]),
            "pid": os.getpid(),
        }
        with open(log_path, "a", encoding="utf-8") as fh:  # one short line: an atomic append
            fh.write(json.dumps(line) + "\n")
        return reply

    app.evaluate()(evaluate_on_store)
    return app


def run_schedule(args, schedule: str, work: Path, cache: str) -> dict:
    from flwr.simulation import run_simulation

    from fl_app.federation.config import compose, finalize
    from fl_app.federation.data import ensure_synthetic_store
    from fl_app.federation.metrics import read_lines
    from fl_app.federation.server import make_server_app

    cpus = 2.0 if schedule == "sequential" else 1.0
    root = work / schedule
    cfg = finalize(
        compose(
            [
                "init=random",
                "train.word_weight=0",  # CTC clients, as its committed results were measured
                f"paths.root={root}",
                f"data.cache_dir={cache}",
                f"simulation.num_supernodes={args.users}",
                f"simulation.client_cpus={cpus}",
                f"federation.num_rounds={args.rounds}",
                "federation.fraction_train=1.0",
                "federation.fraction_evaluate=0",
                f"federation.min_available_nodes={args.users}",
                f"run_id=overhead-{schedule}",
                *args.overrides,
            ]
        )
    )
    spec = cfg.decoder
    for p in range(args.users):  # generated before timing (cached across runs)
        ensure_synthetic_store(
            cache, spec, cfg.data.seed + p, cfg.data.swipes_per_user, cfg.data.regime
        )
    log_path = root / "clients.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    outputs = root / "outputs"
    t0 = time.perf_counter()
    run_simulation(
        server_app=make_server_app(cfg, outputs_dir=outputs, echo=print),
        client_app=timed_client_app(str(log_path)),
        num_supernodes=args.users,
        backend_config={
            "client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
            "init_args": {"log_to_driver": True},
        },
    )
    total = time.perf_counter() - t0
    rounds = {r["round"]: r for r in read_lines(outputs / "metrics.jsonl")}
    clients = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    rows = []
    for rnd in range(1, args.rounds + 1):
        mine = [c for c in clients if c["round"] == rnd]
        if rnd not in rounds or not mine:
            continue
        wall = float(rounds[rnd]["seconds"])
        train_sum = sum(c["train_seconds"] for c in mine)
        rows.append(
            {
                "round": rnd,
                "clients": len(mine),
                "ok": rounds[rnd]["clients"]["ok"],
                "wall": wall,
                "train_sum": train_sum,
                "handler_sum": sum(c["handler_seconds"] for c in mine),
                "span": max(c["end"] for c in mine) - min(c["start"] for c in mine),
                "ratio": wall / train_sum if train_sum else float("nan"),
            }
        )
    warm = [r for r in rows if r["round"] >= 2]
    return {
        "schedule": schedule,
        "cpus": cpus,
        "rows": rows,
        "total": total,
        "median_ratio": statistics.median(r["ratio"] for r in warm) if warm else float("nan"),
        "max_ratio": max((r["ratio"] for r in warm), default=float("nan")),
        "cfg": cfg,
    }


def render(args, results: list[dict]) -> str:
    cfg = results[0]["cfg"]
    out = [
        *report_header(
            "Round overhead in simulation", "round_overhead.py", "; Flower simulation engine (Ray)"
        ),
        "## Setup",
        "",
        f"- {args.users} simulated users, every user every round, {args.rounds} rounds, no "
        "federated evaluation; conf/ defaults otherwise: model conv "
        f"{cfg.decoder.conv_channels}, GRU {cfg.decoder.hidden} x {cfg.decoder.gru_layers}, lexicon "
        f"{cfg.data.language}-{cfg.data.lexicon_size}, {cfg.data.swipes_per_user} swipes per user "
        f"({1 - cfg.data.heldout_fraction:.0%} train split), {cfg.train.epochs:g} local "
        f"epochs, batch {cfg.train.batch_size}; centralized evaluation on {cfg.evaluation.users} x "
        f"{cfg.evaluation.swipes_per_user} held-out swipes and a local checkpoint every round.",
        "- `train` = sum over the round's clients of `train-seconds` (the training loop, timed "
        "inside the ClientApp); `handler` = sum of the whole ClientApp handler (store read, "
        "features, model build, training, reply); `client span` = first client start to last "
        "client end; `wall` = the ServerApp's round time (`metrics.jsonl` `seconds`).",
        "- `sequential`: 2 Ray CPUs per ClientApp on 2 cores, one trains at a time, so wall / "
        "train is the overhead. `parallel`: 1 CPU each, two at a time (the main job's setting).",
        "",
        "## Result",
        "",
        "| schedule | warm rounds | median wall / train | worst warm wall / train |",
        "|---|---|---|---|",
    ]
    for res in results:
        warm = [r for r in res["rows"] if r["round"] >= 2]
        out.append(
            f"| {res['schedule']} | {len(warm)} | {res['median_ratio']:.2f}x | "
            f"{res['max_ratio']:.2f}x |"
        )
    out += ["", "Target (issue 5): wall <= 1.5x train for warm rounds in simulation.", ""]
    for res in results:
        out += [
            f"### {res['schedule']} ({res['cpus']:g} Ray CPU per ClientApp; whole simulation "
            f"{res['total']:.0f} s)",
            "",
            "| round | clients | wall s | train s | handler s | client span s | wall / train |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            warm = "" if r["round"] >= 2 else " (warm-up)"
            out.append(
                f"| {r['round']}{warm} | {r['ok']}/{r['clients']} | {r['wall']:.1f} | "
                f"{r['train_sum']:.1f} | {r['handler_sum']:.1f} | {r['span']:.1f} | "
                f"{r['ratio']:.2f}x |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    torch.set_num_threads(1)  # the ServerApp's centralized evaluation
    work = Path(tempfile.mkdtemp(prefix="swipefl-overhead-"))
    from fl_app.federation.config import default_cache_dir

    cache = str(default_cache_dir() / "synthetic")
    try:
        results = [
            run_schedule(args, s.strip(), work, cache)
            for s in args.schedules.split(",")
            if s.strip()
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)  # checkpoints and logs of the bench runs
    text = render(args, results)
    write_report(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
