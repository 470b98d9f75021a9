"""Accuracy benchmark of the decoder core (issue 2).

Trains the learned model centrally on synthetic training users, tunes the SHARK2-style template
baseline and the learned decoder's fusion weights on separate tuning users, then evaluates both
on held-out users, on a shifted population (style outside the training ranges) and on words
kept out of every training user. Also: parameter count, single-swipe decode latency, training
wall time, and the generator's swipe statistics beside the real ones.

    python bench/accuracy.py                 # the committed figures (about 30 minutes)
    python bench/accuracy.py --quick         # a few minutes, smaller and less accurate
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fl_app.checkpoints.format import write_checkpoint_dir
from fl_app.decoder.evaluation import evaluate_decoder
from fl_app.decoder.model import count_parameters
from fl_app.decoder.spec import DecoderSpec, model_arrays
from fl_app.decoder.training import TrainConfig
from fl_app.synthetic.centralized import CentralConfig, make_datasets, train_central, tuned_decoders
from fl_app.synthetic.stats import CALIBRATED, compare_table, compute_stats, within_real_iqr
from fl_app.synthetic.users import make_users

RESULTS = Path(__file__).resolve().parent / "results"


def decode_latency(decoder, swipes, n: int = 500) -> dict[str, float]:
    """Milliseconds to decode one swipe (batch of one), after a warm-up."""
    for s in swipes[:20]:
        decoder.decode(s.points, s.keyboard, k=4)
    times = []
    template = getattr(decoder, "template", decoder)
    for s in swipes[:n]:
        # A device decodes on its own keyboard: its templates are built once, off this path.
        template.templates(s.keyboard)
        t = time.perf_counter()
        decoder.decode(s.points, s.keyboard, k=4)
        times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def generator_table(lexicon, users: int = 200, per_user: int = 20) -> tuple[str, dict]:
    swipes, ids = [], []
    for u in make_users(users, 77, lexicon):
        for s in u.swipes(per_user):
            swipes.append(s)
            ids.append(u.user_id)
    stats = compute_stats(swipes, user_ids=ids)
    return compare_table(stats), within_real_iqr(stats, CALIBRATED)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    p.add_argument("--train-users", type=int, default=3000)
    p.add_argument("--swipes-per-user", type=int, default=60)
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--test-users", type=int, default=300, help="per test set, 10 swipes each")
    p.add_argument(
        "--no-budget",
        action="store_true",
        help="no training time budget: the step count follows from --epochs (reproducible)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "accuracy.md")
    p.add_argument(
        "--save", type=Path, help="also write the trained model here (a checkpoint folder)"
    )
    p.add_argument(
        "--no-real", action="store_true", help="skip the real dev users' rows (../shared needed)"
    )
    args = p.parse_args()
    if args.quick:
        args.minutes, args.train_users, args.swipes_per_user, args.epochs = 4.0, 300, 40, 2.0
    cfg = CentralConfig(
        spec=DecoderSpec(lexicon_size=10000),
        train=TrainConfig(
            epochs=args.epochs, lr=2e-3, batch_size=64, cosine=True, warmup_steps=200
        ),
        train_users=args.train_users,
        swipes_per_user=args.swipes_per_user,
        tune_users=max(10, args.test_users // 3),
        test_users=args.test_users,
        test_swipes_per_user=10,
        time_budget_s=None if args.no_budget else args.minutes * 60,
    )
    lexicon = cfg.spec.lexicon()
    t0 = time.perf_counter()
    data = make_datasets(cfg, lexicon)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(data.train)} training swipes in {gen_s:.0f} s", flush=True)
    model, train_info = train_central(cfg, data.train, log=lambda m: print(m, flush=True))
    template, learned, tuned = tuned_decoders(cfg, model, lexicon, data.tune)
    rows = {}
    for name in ("test", "shifted", "unseen"):
        swipes = getattr(data, name)
        rows[name] = {
            "learned": evaluate_decoder(learned, swipes),
            "template": evaluate_decoder(template, swipes),
        }
        print(name, json.dumps(rows[name]), flush=True)
    real = [] if args.no_real else real_rows(cfg.spec, model)
    latency = decode_latency(learned, data.test)
    tpl_latency = decode_latency(template, data.test)
    table, calibrated = generator_table(lexicon)
    results = {
        "command": "python bench/accuracy.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "training_swipes": len(data.train),
        "parameters": count_parameters(model),
        "train": train_info,
        "tuned": tuned,
        "accuracy": rows,
        "latency_learned": latency,
        "latency_template": tpl_latency,
        "calibrated_within_real_iqr": calibrated,
        "real": real,
    }
    if args.save:
        spec = replace(cfg.spec, template=learned.template.params, fusion=learned.fusion)
        manifest = {"decoder": spec.to_manifest(), "recipe": results["command"], "kind": "bench"}
        write_checkpoint_dir(args.save, model_arrays(model), manifest)
    write_report(args.out, results, table)
    print(args.out.read_text())


def real_rows(spec: DecoderSpec, model) -> list[dict]:
    """The model and the tuned template on the dev users of the real swipes (bench/real.py's
    protocol: every weight tuned on public-val, each lexicon condition)."""
    from fl_app.datasets.real import load_real
    from fl_app.datasets.real_eval import measure_on_real

    figures = measure_on_real({"learned": (spec, model)}, load_real("dev"), load_real("public-val"))
    return [
        {"decoder": f.decoder, "lexicon": f.condition, **f.metrics, "top1_ci": f.top1_ci}
        for f in figures
    ]


def write_report(path: Path, r: dict, table: str) -> None:
    acc = r["accuracy"]
    lines = [
        "# Decoder accuracy benchmark",
        "",
        f"Command: `{r['command']}` — {r['machine']}, 10,000-word English lexicon.",
        f"Training: {r['training_swipes']} synthetic swipes of training users "
        f"({r['train']['steps']} steps, {r['train']['examples']} examples), "
        f"wall time {r['train']['wall_seconds'] / 60:.1f} min (features {r['train']['feature_seconds']:.0f} s). "
        f"Parameters: {r['parameters']:,}.",
        "",
        "| set | decoder | top-1 | top-4 | MRR | n |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "test": "held-out users",
        "shifted": "shifted users",
        "unseen": "words absent from training",
    }
    for key, label in names.items():
        for kind in ("learned", "template"):
            m = acc[key][kind]
            lines.append(
                f"| {label} | {kind} | {m['top1']:.3f} | {m['top4']:.3f} | {m['mrr']:.3f} | {m['n']} |"
            )
    t_err = 1 - acc["test"]["template"]["top1"]
    l_err = 1 - acc["test"]["learned"]["top1"]
    lines += [
        "",
        f"Held-out users: learned errors / template errors = {l_err / max(t_err, 1e-9):.2f}.",
        f"Decode latency, one swipe (batch of one): learned p50 {r['latency_learned']['p50_ms']:.1f} ms, "
        f"p99 {r['latency_learned']['p99_ms']:.1f} ms; template p50 {r['latency_template']['p50_ms']:.1f} ms, "
        f"p99 {r['latency_template']['p99_ms']:.1f} ms.",
        f"Tuned template params: `{json.dumps(r['tuned']['template'])}`; fusion: `{json.dumps(r['tuned']['fusion'])}`.",
        "",
        "## Real users (dev users of ../shared/real-swipes; weights tuned on public-val)",
        "",
        "The same trained model on real phone swipes of people it never saw (Leiva et al., How",
        "We Swipe, MobileHCI 2021), under each lexicon condition (bench/real.py explains them).",
        "",
        "| decoder | lexicon | top-1 | 95% CI (users) | top-4 | MRR | n |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {x['decoder']} | {x['lexicon']} | {x['top1']:.3f} | {x['top1_ci'][0]:.3f}-"
            f"{x['top1_ci'][1]:.3f} | {x['top4']:.3f} | {x['mrr']:.3f} | {x['n']} |"
            for x in r.get("real", [])
        ],
        "",
        "## Generator vs real swipes (200 training-regime users x 20 swipes)",
        "",
        "Calibrated quantities with the generator's median inside the real interquartile range: "
        + ", ".join(
            f"{k}: {'yes' if v else 'NO'}" for k, v in r["calibrated_within_real_iqr"].items()
        ),
        "",
        table,
        "",
        "## Raw",
        "",
        "```json",
        json.dumps(r, indent=1),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
