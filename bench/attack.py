"""Hostile clients whose replies pass every check: what each aggregation rule loses to them.

    python bench/attack.py          # 100 users, 10 attackers, 10 a round, 200 rounds (about 1 h)
    python bench/attack.py --attack labels --out bench/results/attack-labels.md
    python bench/attack.py --rules mean,trimmed_mean,krum,multikrum,median,mean+clip_norm=5
    python bench/attack.py --users 10 --clients-per-round 5 --rounds 2 --swipes 30 \
        --eval-users 2 --final-eval-users 4 --rules mean,krum --out /tmp/attack.md   # a quick look

For each aggregation rule (`aggregation=`; `rule+key=value` sets `aggregation.key`), two
federations of the same synthetic users from the same initial weights: one where every node
behaves, and one where `--attackers` of the users (partitions 0..k-1) attack in every round they
are sampled. The attack
(fl_app/federation/attacks.py) passes the server's reply checks: `flip-scaled` (default) sends
the honest update negated and scaled to `--margin` x the reply checks' update bound
(`reply_checks.max_update_ratio` x the global model's norm), `flip` the negated update, `labels`
an honest update trained on the node's swipes with their words shuffled. The final models are
compared on `--final-eval-users` held-out users (25 swipes each: 2,500 by default). The issue's
goal: the best robust rule ends within 2 points of its attack-free run; FedAvg's loss is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from report_header import report_header, write_report

from fl_app.federation.attacks import PASSING_ATTACKS, hostile_client_app
from fl_app.federation.config import compose, finalize
from fl_app.federation.evaluation import Evaluator, evaluation_swipes
from fl_app.federation.experiment import run_experiment
from fl_app.federation.robust_config import AGGREGATION_RULES
from fl_app.federation.run_config import RunConfig
from fl_app.federation.server import RunSummary, make_store

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "attack.md"
GOAL_POINTS = 2.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--attackers", type=float, default=0.1, help="share of the users")
    p.add_argument("--attack", choices=PASSING_ATTACKS, default="flip-scaled")
    p.add_argument("--margin", type=float, default=0.95, help="flip-scaled: share of the bound")
    p.add_argument(
        "--rules",
        default="mean,trimmed_mean+beta=0.3+clip_norm=median,krum,"
        "multikrum+malicious_share=0.3+clip_norm=median",
        help="aggregation= choices, `rule+key=value` for aggregation.key",
    )
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--clients-per-round", type=int, default=10)
    p.add_argument("--epochs", type=float, default=1.0, help="local epochs per round")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--swipes", type=int, default=60, help="swipes per user (before the split)")
    p.add_argument("--eval-users", type=int, default=8, help="held-out users, every round")
    p.add_argument("--final-eval-users", type=int, default=100, help="25 swipes each")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = p.parse_args(argv)
    unknown = sorted({r.split("+")[0] for r in args.rules.split(",")} - set(AGGREGATION_RULES))
    if unknown:
        p.error(f"unknown rules {unknown}; known: {AGGREGATION_RULES}")
    return args


def rule_overrides(rule: str) -> list[str]:
    """`trimmed_mean+beta=0.3` -> aggregation=trimmed_mean aggregation.beta=0.3."""
    name, *settings = rule.split("+")
    return [f"aggregation={name}", *(f"aggregation.{kv}" for kv in settings)]


def overrides(args: argparse.Namespace, work: Path, rule: str) -> list[str]:
    return [
        "init=random",  # both arms from the same random weights of the `model` group
        "train.word_weight=0",  # CTC clients, as its committed results were measured
        *rule_overrides(rule),
        f"simulation.num_supernodes={args.users}",
        f"federation.num_rounds={args.rounds}",
        f"federation.fraction_train={args.clients_per_round / args.users}",
        f"federation.min_train_nodes={args.clients_per_round}",
        f"federation.min_available_nodes={args.users}",
        "federation.fraction_evaluate=0",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch}",
        f"data.swipes_per_user={args.swipes}",
        f"evaluation.users={args.eval_users}",
        f"paths.root={work}",  # checkpoints and metrics of the bench stay out of the way
        *args.overrides,
    ]


def attackers(args: argparse.Namespace) -> frozenset[int]:
    return frozenset(range(round(args.attackers * args.users)))


@dataclass(frozen=True)
class Attackers:
    """Nodes that mount `attack` whenever sampled; each attack appends `round node` to `log`
    (the ClientApps run in Ray workers: a file is what they share with the bench)."""

    nodes: frozenset[int]
    attack: str
    log: Path

    def __call__(self, node: int, rnd: int) -> str | None:
        if node not in self.nodes:
            return None
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(f"{rnd} {node}\n")
        return self.attack

    def per_round(self) -> Counter[int]:
        """Attackers sampled in each round."""
        if not self.log.exists():
            return Counter()
        return Counter(int(line.split()[0]) for line in self.log.read_text().splitlines())


def run_arm(
    rule: str, cfg: RunConfig, args: argparse.Namespace, chooser: Attackers | None, work: Path
) -> RunSummary:
    app = None
    if chooser is not None:
        app = hostile_client_app(
            chooser,
            checks=cfg.reply_checks,
            margin=args.margin,
            poison_dir=work / "poisoned",
        )
    label = f"{rule}, {'attacked' if chooser is not None else 'clean'}"
    return run_experiment(
        cfg, echo=lambda line: print(f"[{label}] {line}", flush=True), client_app=app
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="swipefl-attack-"))
    rules = args.rules.split(",")
    arms: dict[tuple[str, bool], dict] = {}
    final_eval: Evaluator | None = None
    t0 = time.perf_counter()
    for rule in rules:
        ov = overrides(args, work, rule)
        cfg = finalize(compose(ov))
        if final_eval is None:
            big = finalize(compose([*ov, f"evaluation.users={args.final_eval_users}"]))
            final_eval = Evaluator(big.decoder, evaluation_swipes(big, big.decoder))
        for attacked in (False, True):
            t1 = time.perf_counter()
            chooser = None
            if attacked:
                log = work / f"attacks-{len(arms)}.log"
                chooser = Attackers(attackers(args), args.attack, log)
            summary = run_arm(rule, cfg, args, chooser, work)
            final = make_store(cfg.checkpoints).load(summary.run_id, summary.rounds[-1]).tensors
            arms[(rule, attacked)] = {
                "summary": summary,
                "final": final_eval(final),
                "seconds": time.perf_counter() - t1,
                "attackers": chooser.per_round() if chooser else Counter(),
            }
            print(
                f"{rule} {'attacked' if attacked else 'clean'}: {arms[(rule, attacked)]['final']}"
            )
    report = render(args, argv, cfg, rules, arms, time.perf_counter() - t0)
    write_report(args.out, report, echo=False)
    print(report.split("## Result", 1)[1].split("## Rounds", 1)[0])
    print(f"wrote {args.out}")
    return 0


def _loss(arms: dict, rule: str) -> float:
    return 100.0 * (arms[(rule, False)]["final"]["top1"] - arms[(rule, True)]["final"]["top1"])


def _rejected(summary: RunSummary) -> int:
    return sum(r["clients"].get("rejected", 0) for r in summary.records)


def _histogram(per_round: Counter[int], rounds: int) -> str:
    """`60/25/10/4/1`: how many rounds had 0, 1, 2, 3 and 4 or more attackers."""
    counts = [min(per_round.get(r, 0), 4) for r in range(1, rounds + 1)]
    return "/".join(str(counts.count(k)) for k in range(5))


def render(args, argv, cfg: RunConfig, rules: list[str], arms: dict, seconds: float) -> str:
    n = int(arms[(rules[0], False)]["final"]["n"])
    header = report_header(
        "Hostile clients that pass the reply checks",
        "attack.py",
        f"; Flower simulation engine (Ray), one CPU per ClientApp; lexicon "
        f"{cfg.data.language}-{cfg.data.lexicon_size}",
        argv,
    )
    rows = []
    for rule in rules:
        clean, hit = arms[(rule, False)], arms[(rule, True)]
        rows.append(
            f"| {rule} | {clean['final']['top1']:.3f} | {hit['final']['top1']:.3f} | "
            f"{_loss(arms, rule):+.1f} | {_rejected(hit['summary'])} | "
            f"{_histogram(hit['attackers'], args.rounds)} | "
            f"{clean['seconds']:.0f} / {hit['seconds']:.0f} |"
        )
    robust = [r for r in rules if r != "mean"]
    verdict = ""
    if robust:
        best = min(robust, key=lambda r: _loss(arms, r))
        meets = "meets" if _loss(arms, best) <= GOAL_POINTS else "does NOT meet"
        verdict = (
            f"Best robust rule: **{best}**, {_loss(arms, best):+.1f} points against its "
            f"attack-free run; the goal (within {GOAL_POINTS:g} points) — this run {meets} it."
        )
    if "mean" in rules:
        verdict += (
            f" FedAvg's mean loses **{_loss(arms, 'mean'):+.1f} points** "
            f"({arms[('mean', False)]['final']['top1']:.3f} -> "
            f"{arms[('mean', True)]['final']['top1']:.3f})."
        )
    stderr = 100.0 * (0.25 / max(1, n)) ** 0.5
    every = max(1, args.rounds // 10)
    curve_head = "| round | " + " | ".join(f"{r} clean | {r} attacked" for r in rules) + " |"
    curve_rule = "|---|" + "---|---|" * len(rules)
    curve = []
    for rnd in range(0, args.rounds + 1):
        if rnd % every and rnd != args.rounds:
            continue
        cells = []
        for rule in rules:
            for attacked in (False, True):
                rec = next(
                    r for r in arms[(rule, attacked)]["summary"].records if r["round"] == rnd
                )
                cells.append(f"{rec['central']['top1']:.3f}")
        curve.append(f"| {rnd} | " + " | ".join(cells) + " |")
    checks = cfg.reply_checks
    absolute = f" and {checks.max_update_norm:g}" if checks.max_update_norm else ""
    return (
        "\n".join(header)
        + f"""
## Setup

- {args.users} synthetic users (non-IID), {args.swipes} swipes each; {args.clients_per_round}
  sampled a round, {args.epochs:g} local epoch(s) at batch {args.batch}, {args.rounds} rounds,
  strategy {cfg.strategy.name}, model conv {cfg.decoder.conv_channels}, GRU
  {cfg.decoder.hidden} x {cfg.decoder.gru_layers}, from random weights.
- Attackers: {len(attackers(args))} of the {args.users} users (partitions {sorted(attackers(args))}),
  attacking whenever sampled (about {args.attackers:.0%} of a round's clients, more in some
  rounds). Attack `{args.attack}`{f", scaled to {args.margin:g} x the update bound" if args.attack == "flip-scaled" else ""}.
- Reply checks: num-examples at most {checks.max_num_examples}, update norm at most
  {checks.max_update_ratio} x the global model's norm{absolute}; server-side clipping only where
  a rule names it (`+clip_norm=`).
- Each rule runs twice from the same initial weights: clean, and with the attackers (which
  users a round samples differs between simulations: the table counts the attacked run's rounds
  by their number of attackers). Final models scored on {n} held-out swipes ({args.final_eval_users} users
  never seen by any node; one top-1 has a standard error of at most {stderr:.1f} points).

## Result

| aggregation | top-1 without attackers | top-1 with attackers | loss (points) | replies rejected (attacked run) | rounds with 0/1/2/3/4+ attackers | seconds (clean / attacked) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{verdict}

Total wall time {seconds / 60:.0f} min.

## Rounds

Top-1 on the per-round evaluation set ({args.eval_users} users x 25 swipes), every {every} rounds:

{curve_head}
{curve_rule}
{chr(10).join(curve)}
"""
    )


if __name__ == "__main__":
    sys.exit(main())
