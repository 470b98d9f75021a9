"""Federation over real people (issue 14): every device user of the real swipes its own node.

    python bench/real_federation.py

The 747 *device* users of ../shared/real-swipes (docs/data.md) are imported into one swipe
store each, and a Flower simulation runs one SuperNode per store (`data=stores`; a census leaves
out nodes with too few swipes). Every figure is measured on the *dev* users, never trained on,
under two lexicon conditions (the 100,000-word lexicon as shipped, and with the dev words
added), with decoding weights tuned on public-val, and every difference gets a paired
bootstrap over dev users.

1. From the synthetic-only model (no real trace in its training): federating over the device
   users, against centralized training on the union of the same users' training swipes at
   equal passes from the same start (centralized learning rate chosen on public-val).
2. From the shipped base: the gain, and whether the release rule let the result replace the
   base (a round must beat the release devices serve, on the run's public-val evaluator).
3. Personalization: the sidecar's own code (`serve.services`) on device users with enough
   swipes, trained on each user's earlier 80% and judged on their newest 20%.
4. Rounds, clients per round, wall time, peak memory of the whole process tree.

Figures from this data cite Leiva et al., How We Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/real_federation.py`, bench/ comes first on sys.path, and bench/serve.py
# (the sidecar benchmark) would shadow the sidecar package `serve` that personalization uses.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from memory import PeakMemory  # noqa: E402
from personalization import personalize  # noqa: E402
from report_header import report_header, write_report

from fl_app.base import base_dir
from fl_app.checkpoints.format import read_checkpoint_dir
from fl_app.datasets.importer import import_file
from fl_app.datasets.measure import conditions_named
from fl_app.datasets.real import CITATION, load_real, real_swipes_file, stratified_sample
from fl_app.datasets.real_eval import measure_on_real, paired_points
from fl_app.decoder.spec import DecoderSpec, model_arrays
from fl_app.decoder.training import SwipeDataset, TrainConfig, train
from fl_app.federation.config import compose, finalize
from fl_app.federation.evaluation import Evaluator
from fl_app.federation.experiment import run_experiment
from fl_app.federation.server import make_store
from fl_app.swipes.store import SwipeStore

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "real-federation.md"
# The pretraining recipe with `data.real_parts=[]` (docs/pretraining.md): never saw a real trace.
SYNTHETIC_ONLY = Path(__file__).resolve().parent / "models" / "synthetic-only"
CONDITION_KEYS = ("100k", "100k+words")  # as shipped, then with the evaluated words
CONDITIONS = tuple(conditions_named(",".join(CONDITION_KEYS)))
RELEASED = "shipped base + federation, the round released"
HELDOUT = 0.2  # each store's held-out share (federated evaluation; not used for figures)


def parse_args(argv: list[str]) -> argparse.Namespace:
    return build_parser(__doc__.split("\n\n")[0], DEFAULT_OUT).parse_args(argv)


def build_parser(description: str, out: Path) -> argparse.ArgumentParser:
    """The federation's settings, shared with bench/word_level_federation.py."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--synthetic-only",
        type=Path,
        default=SYNTHETIC_ONLY,
        help="a checkpoint folder (default: the committed twin of the base without real traces)",
    )
    p.add_argument("--base", type=Path, default=base_dir("en"), help="the shipped base")
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--clients-per-round", type=int, default=10)
    p.add_argument("--epochs", type=float, default=1.0, help="local epochs per round")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--central-lrs", default="1e-3,3e-4", help="chosen on public-val")
    p.add_argument("--eval-swipes", type=int, default=500, help="public-val swipes per round")
    p.add_argument("--personalize-users", type=int, default=80)
    p.add_argument("--stores", type=Path, help="reuse imported device stores (default: temp)")
    p.add_argument("--users", type=int, default=0, help="only the first N device users (a look)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=out)
    return p


# -- data ----------------------------------------------------------------------------------


def device_stores(folder: Path | None, users: int = 0) -> Path:
    """One swipe store per device user (imported once; importing again adds nothing); with
    `users`, a folder linking the first `users` of them."""
    folder = folder or Path(tempfile.mkdtemp(prefix="swipefl-devices-"))
    import_file(real_swipes_file(), stores_dir=folder, parts="device", progress=False)
    if not users:
        return folder
    subset = Path(tempfile.mkdtemp(prefix="swipefl-devices-subset-"))
    for path in sorted(folder.glob("*.sqlite"))[:users]:
        (subset / path.name).symlink_to(path.resolve())  # a relative --stores too
    return subset


def union_of_training_swipes(stores: Path, min_swipes: int) -> list:
    """Every training-split row of every store that the census would sample."""
    out = []
    for path in sorted(stores.glob("*.sqlite")):
        with SwipeStore(path, heldout_fraction=HELDOUT) as store:
            rows = store.load(split="train")
        if len(rows) >= min_swipes:
            out.extend(r.swipe for r in rows)
    return out


# -- the three kinds of training -----------------------------------------------------------


def federate(
    args, init_dir: Path, stores: Path, work: Path, label: str, extra: tuple[str, ...] = ()
) -> dict:
    """A simulated federation from `init_dir` over every store (`extra`: further overrides);
    its last round's tensors."""
    n = len(list(stores.glob("*.sqlite")))
    overrides = [
        "init=base",
        f"init_from={init_dir.resolve()}",  # paths.root is the work folder
        "data=stores",
        f"data.stores_dir={stores.resolve()}",
        f"data.heldout_fraction={HELDOUT}",
        f"paths.root={work / label}",
        f"simulation.num_supernodes={n}",
        f"federation.num_rounds={args.rounds}",
        f"federation.fraction_train={args.clients_per_round / n}",
        f"federation.min_train_nodes={args.clients_per_round}",
        f"federation.min_available_nodes={n}",
        "federation.fraction_evaluate=0",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch}",
        f"train.lr={args.lr}",
        "evaluation.source=real",
        f"evaluation.real_swipes={args.eval_swipes}",
        "evaluation.report_dev=false",
        "train.word_weight=0",  # CTC clients, as the centralized arm trains (extra may change it)
        *extra,
    ]
    cfg = finalize(compose(overrides))
    t0 = time.perf_counter()
    summary = run_experiment(cfg, echo=lambda line: print(f"[{label}] {line}", flush=True))
    wall = time.perf_counter() - t0
    store = make_store(cfg.checkpoints)
    last = max(summary.rounds)
    release = store.read_release()
    # The round this run released, or None when devices keep what they served before.
    released = release["round"] if release and release["run_id"] == summary.run_id else None
    return {
        "summary": summary,
        "cfg": cfg,
        "tensors": store.load(summary.run_id, last).tensors,
        "released_round": released,
        "released_tensors": store.load(summary.run_id, released).tensors if released else None,
        "wall": wall,
        "min_swipes": cfg.train.min_swipes,
    }


def centralized(args, spec, init, swipes, passes: float, lr: float, seed: int) -> dict:
    model = spec.model_with(init)
    data = SwipeDataset.from_swipes(swipes, spec.features)
    config = TrainConfig(
        epochs=passes, lr=lr, batch_size=args.batch, weight_decay=1e-4, grad_clip=1.0, seed=seed
    )
    t0 = time.perf_counter()
    train(model, data, config)
    return {"tensors": model_arrays(model), "wall": time.perf_counter() - t0, "lr": lr}


# -- figures -------------------------------------------------------------------------------


def dev_figures(
    models: dict[str, tuple[DecoderSpec, dict]], dev, val, conditions=CONDITIONS
) -> dict:
    """label -> condition -> figure (in `conditions`' order), every weight tuned on public-val."""
    built = {}
    for label, (spec, tensors) in models.items():
        built[label] = (spec, spec.model_with(tensors))
    out: dict[str, dict] = {}
    for fig in measure_on_real(built, dev, val, conditions, template=False, log=print):
        out.setdefault(fig.decoder, {})[fig.condition] = fig
    return out


def difference(dev, a, b) -> str:
    """`a - b` top-1 in points with its paired 95% interval over dev users."""
    return paired_points([r.user for r in dev], a.hits, b.hits)


# -- personalization -----------------------------------------------------------------------


def personalization(args, stores: Path, work: Path) -> list[dict]:
    """The sidecar's personalization (serve.services, no HTTP) on device users with 60+
    swipes: trained on their earlier 80% from the shipped base, judged on their newest 20%."""
    eligible = []
    for path in sorted(stores.glob("*.sqlite")):
        with SwipeStore(path) as store:
            if store.count() >= 60:
                eligible.append(path)
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(len(eligible), min(len(eligible), args.personalize_users), False))
    results = []
    for i in chosen:
        src = eligible[i]
        # CTC personalization: the objective this file's committed result measured
        result = personalize(
            src, work / "personal" / src.stem, train_min_swipes=50, train_word_weight=0.0
        )
        results.append(dict(result, user=src.stem))
        print(f"[personalize] {src.stem}: {result.get('outcome')}", flush=True)
    return results


# -- the report ----------------------------------------------------------------------------


def start(args, prefix: str) -> tuple[Path, PeakMemory, float, Path, list, list]:
    """What a real-federation benchmark sets up first: threads, a work folder, the memory
    probe, the clock, the device stores and the dev and public-val users."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    memory = PeakMemory()
    memory.start()
    t0 = time.perf_counter()
    stores = device_stores(args.stores, args.users)
    return work, memory, t0, stores, load_real("dev"), load_real("public-val")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    work, memory, t0, stores, dev, val = start(args, "swipefl-realfed-")
    synth_tensors, synth_manifest = read_checkpoint_dir(args.synthetic_only)
    synth_spec = DecoderSpec.from_manifest(synth_manifest["decoder"])

    fed_s = federate(args, args.synthetic_only, stores, work, "from-synthetic")
    swipes = union_of_training_swipes(stores, fed_s["min_swipes"])
    eligible_users = fed_s["summary"].records[1]["census"]["eligible"]
    passes = args.rounds * args.clients_per_round * args.epochs / eligible_users
    # Centralized learning rate: the best on public-val (a subsample), never on dev.
    val_eval = Evaluator(synth_spec, [r.swipe for r in stratified_sample(val, args.eval_swipes)])
    central_runs = [
        centralized(args, synth_spec, synth_tensors, swipes, passes, float(lr), 0)
        for lr in args.central_lrs.split(",")
    ]
    for run in central_runs:
        run["val_top1"] = val_eval(run["tensors"])["top1"]
    central = max(central_runs, key=lambda r: r["val_top1"])

    base_tensors, base_manifest = read_checkpoint_dir(args.base)
    base_spec = DecoderSpec.from_manifest(base_manifest["decoder"])
    fed_b = federate(args, args.base, stores, work, "from-base")

    models = {
        "synthetic-only (start)": (synth_spec, synth_tensors),
        "synthetic-only + federation": (synth_spec, fed_s["tensors"]),
        "synthetic-only + centralized": (synth_spec, central["tensors"]),
        "shipped base (start)": (base_spec, base_tensors),
        "shipped base + federation": (base_spec, fed_b["tensors"]),
    }
    if fed_b["released_tensors"] is not None:
        models[RELEASED] = (base_spec, fed_b["released_tensors"])
    figures = dev_figures(models, dev, val)
    personal = personalization(args, stores, work) if args.personalize_users else []
    memory.stop()
    text = render(args, argv, figures, dev, fed_s, fed_b, central, central_runs, passes,
                  len(swipes), personal, memory, time.perf_counter() - t0)  # fmt: skip
    write_report(args.out, text)
    return 0


def render(args, argv, figures, dev, fed_s, fed_b, central, central_runs, passes, n_central,
           personal, memory, total) -> str:  # fmt: skip
    cond_labels = [c.label for c in CONDITIONS]
    diffs = []
    verdicts = []
    for c in cond_labels:
        start = figures["synthetic-only (start)"][c]
        fed = figures["synthetic-only + federation"][c]
        cen = figures["synthetic-only + centralized"][c]
        gap = cen.metrics["top1"] - start.metrics["top1"]
        closed = (fed.metrics["top1"] - start.metrics["top1"]) / gap if gap > 0 else float("nan")
        behind = 100 * (cen.metrics["top1"] - fed.metrics["top1"])
        share = (
            f"closes {closed:.0%} of the gap to centralized"
            if gap > 0
            else "has no gap to close (centralized training did not beat the start)"
        )
        verdicts.append(
            f"- {c}: federation {share} (bar: at least 50%) and ends {behind:+.1f} points "
            "behind centralized (bar: within 1)."
        )
        base, fb = figures["shipped base (start)"][c], figures["shipped base + federation"][c]
        diffs += [
            f"| {c} | federated - start (synthetic-only) | {difference(dev, fed, start)} |",
            f"| {c} | centralized - federated (synthetic-only) | {difference(dev, cen, fed)} |",
            f"| {c} | federated - start (shipped base) | {difference(dev, fb, base)} |",
        ]
        if RELEASED in figures:
            rel = figures[RELEASED][c]
            diffs.append(f"| {c} | release - start (shipped base) | {difference(dev, rel, base)} |")
    rnd = fed_b["released_round"]
    released = (
        f"the run released round {rnd} (run {fed_b['summary'].run_id}; public-val "
        f"top-1 {fed_b['summary'].records[rnd]['central']['top1']:.3f}), which "
        "replaced the shipped base on devices"
        if rnd is not None
        else "no round beat the shipped base on the public-val evaluator, so nothing was "
        "released and devices keep the base"
    )
    inc = fed_b["summary"].incumbent
    inc_text = "-"
    if inc is not None and inc.metrics:
        inc_text = f"{inc.label}, top-1 {inc.metrics['top1']:.3f}"
    pers = personal_lines(personal)
    header = report_header(
        "Federation over real people",
        "real_federation.py",
        f". Data: {CITATION}",
        argv,
    )
    census = fed_s["summary"].records[1]["census"]
    return "\n".join(
        [
            *header,
            "## Setup",
            "",
            f"- {census['nodes']} SuperNodes, one per device user's swipe store; the census left "
            f"{census['below_min']} with fewer than train.min_swipes training swipes out of "
            f"sampling ({census['eligible']} eligible).",
            f"- Federation: {args.rounds} rounds, {args.clients_per_round} clients a round, "
            f"{args.epochs:g} local epoch(s), batch {args.batch}, lr {args.lr}, FedAvg: "
            f"{passes:.2f} passes over the eligible users' training swipes. Each round measured "
            f"on {args.eval_swipes} public-val swipes.",
            f"- Centralized: the union of the same users' training swipes ({n_central:,}), "
            f"{passes:.2f} epochs, batch {args.batch}, from the same start; learning rate chosen "
            "on public-val: "
            + ", ".join(f"{r['lr']:g} -> {r['val_top1']:.3f}" for r in central_runs)
            + f" (chose {central['lr']:g}).",
            "",
            "## Dev users: top-1 (95% interval over users)",
            "",
            *figure_table(figures, with_interval),
            "",
            *verdicts,
            "",
            *differences_table(diffs),
            "",
            "## Release from the shipped base",
            "",
            f"The current release measured on the run's evaluator: {inc_text}; {released}.",
            "",
            "## Personalization (the sidecar's code, newest 20% of each user held out)",
            "",
            *pers,
            "",
            "## Cost",
            "",
            f"- Federated wall time: {fed_s['wall'] / 60:.1f} min (from synthetic-only), "
            f"{fed_b['wall'] / 60:.1f} min (from the base); centralized training "
            f"{central['wall'] / 60:.1f} min per learning rate.",
            *round_overhead(fed_s["summary"].records),
            f"- Peak memory of the whole process tree (PSS): {memory.peak / 2**30:.2f} GiB "
            f"({memory.peak_procs} processes).",
            f"- Total wall time {total / 60:.0f} min.",
            "",
        ]
    )


def with_interval(fig) -> str:
    """A dev figure's top-1 with its 95% interval over users."""
    return f"{fig.metrics['top1']:.3f} ({fig.top1_ci[0]:.3f}-{fig.top1_ci[1]:.3f})"


def figure_table(figures: dict, cell) -> list[str]:
    """Markdown: a row per model, a column per lexicon condition, `cell(figure)` in each."""
    labels = list(next(iter(figures.values())))  # the conditions, in the order measured
    return [
        f"| model | {' | '.join(labels)} |",
        f"|---|{'---|' * len(labels)}",
        *(
            f"| {name} | {' | '.join(cell(per[c]) for c in labels)} |"
            for name, per in figures.items()
        ),
    ]


def differences_table(rows: list[str]) -> list[str]:
    return [
        "Paired differences (top-1 points, 95% bootstrap interval over dev users):",
        "",
        "| lexicon | difference | points |",
        "|---|---|---|",
        *rows,
    ]


def round_overhead(records: list[dict]) -> list[str]:
    """What a round costs beyond the clients' own training, with every node in the simulation."""
    trained = [r for r in records if r["round"] > 0]
    census = [r["seconds"] for r in trained if r.get("census")]
    plain = [r["seconds"] for r in trained if not r.get("census")]
    local = [r["train"]["train-seconds"] for r in trained if r.get("train")]
    if not plain:
        return []
    with_census = (
        f"rounds that take the census of every node: median {np.median(census):.1f} s "
        f"({len(census)} of {len(trained)} rounds); "
        if census
        else ""
    )
    return [
        f"- Round wall time (from synthetic-only): median {np.median(plain):.1f} s; "
        f"{with_census}a client's local training, mean {np.mean(local):.2f} s. Each round also "
        "measures the model on the public-val sample.",
    ]


def personal_lines(personal: list[dict]) -> list[str]:
    done = [p for p in personal if p.get("release_metrics")]
    if not done:
        return ["- (not run)"]
    before = np.array([p["release_metrics"]["top1"] for p in done])
    after = np.array([p["personalized_metrics"]["top1"] for p in done])
    change = after - before
    accepted = [p for p in done if p.get("accepted")]
    worse = [
        p for p in accepted if p["personalized_metrics"]["top1"] < p["release_metrics"]["top1"]
    ]
    return [
        f"- {len(done)} device users with 60+ swipes (a seeded sample); each trained on the "
        "earlier 80% of their rows from the shipped base and judged on the newest 20%.",
        f"- Top-1 change on their own newest swipes: median {100 * np.median(change):+.1f}, "
        f"mean {100 * change.mean():+.1f} points (before {before.mean():.3f}, after "
        f"{after.mean():.3f}).",
        f"- The accept rule (swap only if MRR on the held-out rows improves) swapped for "
        f"{len(accepted)} of {len(done)} users; a swap made that user's top-1 worse for "
        f"{len(worse)}.",
    ]


if __name__ == "__main__":
    sys.exit(main())
