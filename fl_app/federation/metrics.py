"""Per-round metrics of a run: JSON lines, a progress line, and a PNG plot at the end.

One JSON object per round (round 0 is the initial or resumed model) in
``<outputs>/<run_id>/metrics.jsonl``::

    {"run_id": ..., "round": 3, "seconds": 12.1, "clients": {"sampled": 10, "ok": 9,
     "failed": 1}, "accepted": true, "released": false, "central": {"top1": .., "top4": ..,
     "mrr": .., "loss": .., "n": 100}, "federated": {"eval-loss": .., "eval-top1": ..},
     "train": {"train-loss": .., "train-seconds": ..}, "checkpoint": "runs/<id>/round-0003",
     "stored": true}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fl_app.checkpoints.format import to_jsonable

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "plot.png"


def append_line(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(to_jsonable(record), sort_keys=True) + "\n")


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _fmt(value: Any, spec: str = ".3f") -> str:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return format(float(value), spec)
    return "-"


def progress_line(record: dict[str, Any], num_rounds: int | None = None) -> str:
    """``round 3/5 | clients ok 9 failed 1 | top1 0.412 top4 0.650 | 12.3 s`` (+ notes)."""
    rnd = record["round"]
    head = f"round {rnd}" + (f"/{num_rounds}" if num_rounds is not None else "")
    clients = record.get("clients") or {}
    central = record.get("central") or {}
    parts = [
        head,
        f"clients ok {clients.get('ok', 0)} failed {clients.get('failed', 0)}",
        f"top1 {_fmt(central.get('top1'))} top4 {_fmt(central.get('top4'))}",
        f"{_fmt(record.get('seconds'), '.1f')} s",
    ]
    notes = []
    if record.get("note"):
        notes.append(str(record["note"]))
    if record.get("released"):
        notes.append("released")
    if record.get("stored") is False:
        notes.append("checkpoint pending")
    line = " | ".join(parts)
    return line + (" | " + ", ".join(notes) if notes else "")


def plot_metrics(records: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Accuracy (centralized top-1/top-4/MRR, federated top-1) and loss by round, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(section: str, key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for r in records:
            value = (r.get(section) or {}).get(key)
            if isinstance(value, int | float) and math.isfinite(float(value)):
                xs.append(int(r["round"]))
                ys.append(float(value))
        return xs, ys

    fig, (acc, loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for section, key, label in (
        ("central", "top1", "centralized top-1"),
        ("central", "top4", "centralized top-4"),
        ("central", "mrr", "centralized MRR"),
        ("federated", "eval-top1", "federated top-1"),
    ):
        xs, ys = series(section, key)
        if xs:
            acc.plot(xs, ys, marker="o", label=label)
    acc.set_xlabel("round")
    acc.set_ylabel("accuracy")
    acc.set_ylim(0, 1)
    acc.grid(alpha=0.3)
    acc.legend(loc="lower right", fontsize=8)
    for section, key, label in (
        ("train", "train-loss", "client train loss"),
        ("federated", "eval-loss", "federated eval loss"),
        ("central", "loss", "centralized loss"),
    ):
        xs, ys = series(section, key)
        if xs:
            loss.plot(xs, ys, marker="o", label=label)
    loss.set_xlabel("round")
    loss.set_ylabel("CTC loss")
    loss.set_yscale("log")
    loss.grid(alpha=0.3)
    loss.legend(loc="upper right", fontsize=8)
    for ax in (acc, loss):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
