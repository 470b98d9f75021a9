"""Deployment round time on loopback with 2 and 4 SuperNodes (fl_app/deploy/).

    python bench/deployment.py                          # 2 and 4 SuperNodes, 3 rounds each
    python bench/deployment.py --nodes 2 --rounds 2 --out /tmp/deploy.md
    python bench/deployment.py -- federation.fraction_evaluate=0.5   # extra overrides after `--`

For each node count: a fresh deployment (SeaweedFS S3 server, SuperLink, N SuperNodes, no
sidecars: each device's swipe store is filled directly with one synthetic user's `--swipes`
swipes), one `flwr run` of `--rounds` rounds with the `deploy` experiment (small model, no
federated evaluation), then everything is stopped. Round time is the ServerApp's
(`metrics.jsonl` `seconds`: sending, every node's ClientApp process start, training, reply,
aggregation, centralized evaluation, checkpoint to S3). Writes `--out` with the command.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report_header import report_header, write_report

from fl_app.decoder.lexicon import load_lexicon
from fl_app.deploy.deployment import Deployment
from fl_app.swipes.store import SwipeStore
from fl_app.synthetic.users import make_user

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "deployment.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="2,4", help="comma-separated SuperNode counts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--swipes", type=int, default=120, help="swipes per device")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    return p.parse_args(argv)


def bench_one(n: int, args, work: Path) -> dict:
    dep = Deployment.create(work / f"nodes-{n}", nodes=n, sidecars=False)
    lexicon = load_lexicon("en", 1000)
    for i in range(n):
        with SwipeStore(dep.store_path(i)) as store:
            store.append_many(make_user(2000 + i, lexicon).swipes(args.swipes), source="synthetic")
    try:
        t0 = time.perf_counter()
        dep.start()
        startup = time.perf_counter() - t0
        result = dep.run(
            [f"federation.num_rounds={args.rounds}", "federation.fraction_evaluate=0",
             *args.overrides],
            timeout_s=1800,
        )  # fmt: skip
    finally:
        survivors = dep.stop()
    if not result.ok:
        raise SystemExit(
            f"{n} nodes: run {result.status}: {result.details}\n{result.log()[-3000:]}"
        )
    records = [r for r in result.records() if r["round"] >= 1]
    return {
        "nodes": n,
        "startup": startup,
        "run": result.seconds,
        "records": records,
        "warm": statistics.median(r["seconds"] for r in records[1:]) if len(records) > 1 else None,
        "survivors": survivors,
    }


def render(args, results: list[dict]) -> str:
    out = [
        *report_header("Deployment round time on loopback", "deployment.py"),
        "## Setup",
        "",
        "- `python -m fl_app.deploy` layout: SeaweedFS S3 server, `flower-superlink --insecure`, N "
        "`flower-supernode`s on 127.0.0.1, each with its own swipe store (one synthetic user, "
        f"{args.swipes} swipes; 80% train split), no sidecars.",
        f"- `flwr run` with `experiment=deploy` (conv 32, GRU 32 x 1, lexicon en-1000, 3 local "
        f"epochs), {args.rounds} rounds, every node every round, no federated evaluation; "
        "checkpoints to the S3 bucket.",
        "- Each message starts a fresh ClientApp process (`flwr-clientapp`: Python, Flower, torch "
        "imports) on its SuperNode; the ServerApp polls for replies every 3 s.",
        "",
        "## Result",
        "",
        "| SuperNodes | start-up s | round 1 s | warm round s (median) | client train s (mean) "
        "| whole run s |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        recs = res["records"]
        train = [
            (r.get("train") or {}).get("train-seconds")
            for r in recs
            if (r.get("train") or {}).get("train-seconds") is not None
        ]
        warm = f"{res['warm']:.1f}" if res["warm"] is not None else "-"
        mean_train = f"{statistics.mean(train):.1f}" if train else "-"
        out.append(
            f"| {res['nodes']} | {res['startup']:.1f} | {recs[0]['seconds']:.1f} | {warm} | "
            f"{mean_train} | {res['run']:.0f} |"
        )
    out += [
        "",
        "`start-up s`: from the first process started until every one answers (S3 over HTTP, "
        "the SuperLink's `/health`, each SuperNode's runtime port); the run then waits until "
        "every SuperNode has connected. `client train s` is FedAvg's example-weighted mean of "
        "the clients' `train-seconds` (the training loop inside the ClientApp); the rest of a "
        "round is the ClientApp processes' start-up (on 2 cores, 4 of them start at once), model "
        "transfer, Flower's 3 s reply polling and the server's evaluation and S3 checkpoint.",
        "",
        "Per round:",
        "",
        "| SuperNodes | round | clients ok / sampled | seconds | top-1 |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["records"]:
            c = r["clients"]
            out.append(
                f"| {res['nodes']} | {r['round']} | {c['ok']} / {c['sampled']} | "
                f"{r['seconds']:.1f} | {r['central']['top1']:.3f} |"
            )
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="swipefl-deploy-bench-"))
    try:
        results = [bench_one(int(n), args, work) for n in args.nodes.split(",") if n.strip()]
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the deployments' state, logs and bucket
    text = render(args, results)
    write_report(args.out, text)
    return 0 if not any(r["survivors"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
