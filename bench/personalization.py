"""On-device personalization of the shipped base on real people: CTC against word-level.

    python bench/personalization.py

Every *public-val* and *dev* user of ../shared/real-swipes (docs/data.md) with at least
`--min-swipes` swipes gets a swipe store of their own (their swipes in the order they made
them), and the sidecar's own personalization (`serve.services`, no HTTP) runs on it twice from
the shipped base, identical but for the objective: `train_word_weight` 0 (CTC only) and 1
(the word-level objective beside CTC: the release's decoder mines the user's close calls). Each
run trains on the user's earlier 80% and is judged on the newest 20%, the accept rule swaps
the personalized model in only if its held-out MRR beats the release's, and "served" is what
the user then gets (personalized if swapped in, else the release).

The choice of the default objective is made on public-val; dev is reported. Differences get a
paired 95% interval from resampling users. Figures from this data cite Leiva et al., How We
Swipe, MobileHCI 2021.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/personalization.py`, bench/ comes first on sys.path, and bench/serve.py
# (the sidecar benchmark) would shadow the sidecar package `serve` that personalization uses.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from report_header import report_header, write_report  # noqa: E402

from fl_app.datasets.importer import import_file  # noqa: E402
from fl_app.datasets.real import CITATION, real_swipes_file  # noqa: E402
from fl_app.datasets.real_eval import paired_points, user_bootstrap  # noqa: E402
from fl_app.swipes.store import SwipeStore  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "personalization.md"
HELDOUT = 0.2  # each user's newest share, judged on
ARMS = {"CTC": 0.0, "word-level": 1.0}  # train_word_weight


def personalize(store: Path, device: Path, **settings) -> dict:
    """One personalization job of the sidecar's code on a copy of `store`, from the shipped
    base (no release published), judged on the store's newest rows; the job's result."""
    from serve.core.config import Settings
    from serve.services import Services
    from serve.services.metrics import Metrics

    device.mkdir(parents=True, exist_ok=True)
    shutil.copy(store, device / "swipes.sqlite")
    config = Settings(
        device_dir=device,
        checkpoint_dir=device / "no-releases",
        auth="none",
        heldout_fraction=HELDOUT,
        heldout_split="newest",
        **settings,
    )
    services = Services.build(config, Metrics())
    try:
        services.manager.load_cached()  # no release: the shipped base
        job = services.personalizer.start()
        while job.state in ("queued", "running"):
            time.sleep(0.1)
        return dict(job.result or {}, state=job.state)
    finally:
        services.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="public-val,dev", help="user-split parts, in this order")
    p.add_argument("--min-swipes", type=int, default=50, help="users with at least this many")
    p.add_argument("--users", type=int, default=0, help="at most N users a part (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def user_stores(part: str, min_swipes: int, users: int, work: Path) -> list[Path]:
    """One store per user of `part` with `min_swipes` or more (the first `users` by id)."""
    folder = work / "stores" / part
    import_file(real_swipes_file(), stores_dir=folder, parts=part, progress=False)
    eligible = []
    for path in sorted(folder.glob("*.sqlite")):
        with SwipeStore(path) as store:
            if store.count() >= min_swipes:
                eligible.append(path)
    return eligible[:users] if users else eligible


def run_part(part: str, stores: list[Path], min_swipes: int, work: Path) -> list[dict]:
    """Both arms on every store of one part: a row per user."""
    rows = []
    for store in stores:
        row = {"user": store.stem}
        for arm, weight in ARMS.items():
            t0 = time.perf_counter()
            result = personalize(
                store,
                work / "devices" / arm / store.stem,
                train_min_swipes=min_swipes,
                train_word_weight=weight,
            )
            if result["state"] != "succeeded":
                raise RuntimeError(f"{part} {store.stem} {arm}: {result}")
            result["seconds"] = time.perf_counter() - t0
            row[arm] = result
        rows.append(row)
        print(
            f"[{part}] {store.stem}: "
            + ", ".join(f"{a} {row[a]['outcome']} ({row[a]['seconds']:.1f} s)" for a in ARMS),
            flush=True,
        )
    return rows


def top1(result: dict, which: str) -> float:
    """The held-out top-1 of the release ("before"), of the personalized model ("after"), or
    of what the accept rule leaves the user with ("served")."""
    if which == "served":
        which = "after" if result["accepted"] else "before"
    key = "release_metrics" if which == "before" else "personalized_metrics"
    return result[key]["top1"]


def per_swipe_hits(rows: list[dict], arm: str, which: str) -> tuple[list[str], list[float]]:
    """Each held-out swipe's top-1 hit, as the user-level figure implies (for the bootstrap,
    which only needs each user's hit count and swipe count)."""
    users, hits = [], []
    for row in rows:
        n = row[arm]["n_heldout"]
        k = round(top1(row[arm], which) * n)
        users += [row["user"]] * n
        hits += [1.0] * k + [0.0] * (n - k)
    return users, hits


def part_lines(part: str, rows: list[dict]) -> list[str]:
    n_swipes = sum(r["CTC"]["n_heldout"] for r in rows)
    lines = [
        f"## {part}: {len(rows)} users, {n_swipes} held-out swipes",
        "",
        "| objective | release (before) | personalized (after) | served | swapped in | "
        "swaps that lost top-1 | train s / user |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        figs = []
        for which in ("before", "after", "served"):
            users, hits = per_swipe_hits(rows, arm, which)
            mean, low, high = user_bootstrap(users, hits)
            figs.append(f"{mean:.3f} ({low:.3f}-{high:.3f})")
        swapped = [r[arm] for r in rows if r[arm]["accepted"]]
        lost = sum(top1(r, "after") < top1(r, "before") for r in swapped)
        seconds = np.mean([r[arm]["train_seconds"] for r in rows])
        lines.append(
            f"| {arm} | {' | '.join(figs)} | {len(swapped)}/{len(rows)} | {lost} | {seconds:.1f} |"
        )
    lines += ["", "Word-level minus CTC, top-1 points (95% interval over users):", ""]
    for which in ("after", "served"):
        users, word = per_swipe_hits(rows, "word-level", which)
        _, ctc = per_swipe_hits(rows, "CTC", which)
        lines.append(f"- {which}: {paired_points(users, word, ctc)}")
    mined = sum(r["word-level"].get("mined", 0) for r in rows)
    trained = sum(r["word-level"]["n_train"] for r in rows)
    lines += [
        f"- the word-level runs trained on {mined} of {trained} training swipes (the rest: the "
        "release's shortlist misses the word, or it is outside the lexicon)",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="swipefl-personal-"))
    try:
        results = {}
        for part in args.parts.split(","):
            stores = user_stores(part, args.min_swipes, args.users, work)
            results[part] = run_part(part, stores, args.min_swipes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    setup = (
        f". Data: {CITATION}. The shipped base (fl_app/base/en) personalized by the sidecar's "
        f"code with its defaults (epochs, learning rate, batch, accept margin; "
        f"`serve/core/config.py`), users with {args.min_swipes}+ swipes, newest "
        f"{HELDOUT:.0%} of each held out, 100,000-word lexicon as shipped. Top-1 with a 95% "
        "interval from resampling users"
    )
    lines = report_header(
        "Personalization on real people: CTC vs word-level", "personalization.py", setup, argv
    )
    for part, rows in results.items():
        lines += part_lines(part, rows)
    lines.append(f"Total wall time {(time.perf_counter() - t0) / 60:.0f} min.")
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
