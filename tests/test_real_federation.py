"""Federation over real people's swipe stores (data=stores): one node per imported store, and
nodes too small for a round left out of sampling instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.datasets.importer import import_file
from fl_app.datasets.real import load_real
from fl_app.federation.config import ConfigError, compose, finalize
from fl_app.federation.experiment import run_experiment
from fl_app.federation.metrics import read_lines
from fl_app.swipes.store import SwipeStore

MIN_SWIPES = 20


@pytest.fixture(scope="module")
def ten_device_stores(tmp_path_factory, real_swipes_dir) -> Path:
    """Stores of 10 real device users: 8 with plenty of swipes, 2 cut below the minimum."""
    rows = load_real("device")
    by_user: dict[str, list] = {}
    for r in rows:
        by_user.setdefault(r.user, []).append(r)
    big = [u for u in sorted(by_user) if len(by_user[u]) >= 60][:8]
    small = [u for u in sorted(by_user) if len(by_user[u]) >= 10 and u not in big][:2]
    lines = []
    for user in big + small:
        keep = by_user[user] if user in big else by_user[user][:8]  # 8 rows: < MIN_SWIPES
        for r in keep:
            swipe = r.swipe.to_dict()
            lines.append(json.dumps({"user": user, "seq": r.seq, **swipe}))
    folder = tmp_path_factory.mktemp("device-stores")
    path = folder / "ten.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = import_file(path, stores_dir=folder / "stores", progress=False)
    assert summary.refused == {} and len(summary.stored) == 10
    return folder / "stores"


def overrides(root: Path, stores: Path, *extra: str) -> list[str]:
    return [
        "experiment=smoke",
        "data=stores",
        f"data.stores_dir={stores}",
        "data.lexicon_size=1000",
        f"paths.root={root}",
        "simulation.num_supernodes=10",
        f"train.min_swipes={MIN_SWIPES}",
        "federation.fraction_train=1.0",
        "federation.fraction_evaluate=0",
        "federation.num_rounds=2",
        *extra,
    ]


@pytest.mark.slow
def test_simulation_over_ten_real_stores_skips_small_nodes(tmp_path, ten_device_stores):
    small = [p for p in sorted(ten_device_stores.glob("*.sqlite")) if _train_rows(p) < MIN_SWIPES]
    assert len(small) == 2
    summary = run_experiment(finalize(compose(overrides(tmp_path, ten_device_stores))))
    rounds = [r for r in read_lines(summary.metrics_path) if r.get("round", 0) > 0]
    assert len(rounds) == 2
    for record in rounds:
        # Every eligible node sampled, the two small ones never, and nobody failed.
        assert record["clients"] == {
            "sampled": 8,
            "ok": 8,
            "failed": 0,
            "rejected": 0,
            "clipped": 0,
        }
        assert record["accepted"] is True
    assert rounds[0]["census"] == {"nodes": 10, "eligible": 8, "below_min": 2, "unanswered": 0}
    store = CheckpointStore(LocalDirBackend(tmp_path / "outputs" / "checkpoints"))
    manifest = store.load_manifest(summary.run_id, 2)
    assert manifest["config"]["data"]["kind"] == "stores"
    assert manifest["config"]["data"]["stores_dir"] == str(ten_device_stores)


def test_data_stores_needs_a_folder_of_stores(tmp_path):
    with pytest.raises(ConfigError, match="data.stores_dir"):
        finalize(compose(overrides(tmp_path, tmp_path / "empty")))


def _train_rows(path: Path) -> int:
    with SwipeStore(path, heldout_fraction=0.2) as store:
        return store.count(split="train")
