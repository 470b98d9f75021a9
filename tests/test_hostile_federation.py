"""Hostile nodes in a real Flower simulation (experiment=smoke, 5 simulated users): the run
completes every round, counts bad replies as failed clients with their reasons in metrics.jsonl,
and the global model (and FedAdam's checkpointed state) stays finite.

The hostile node is a real ClientApp (fl_app/federation/attacks.py): the project's ClientApp
trains on its store, then partition 0 corrupts its reply the way a broken or malicious node
would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load

from fl_app.federation.attacks import EXTRA_METRIC, hostile_client_app
from fl_app.federation.config import compose, finalize
from fl_app.federation.experiment import run_experiment
from fl_app.federation.metrics import read_lines
from fl_app.federation.server import make_store
from fl_app.federation.strategies import STATE_FILE

FORM_ATTACKS_BY_ROUND = {1: "nan", 2: "huge-examples", 3: "wrong-shape", 4: "extra-metric"}


def _cfg(root: Path, cache: str, *extra: str):
    return finalize(
        compose(
            ["experiment=smoke", f"paths.root={root}", f"data.cache_dir={cache}",
             "federation.fraction_evaluate=0", *extra]
        )
    )  # fmt: skip


def _finite_run(cfg, run_id: str, rounds: list[int]) -> None:
    store = make_store(cfg.checkpoints)
    for rnd in rounds:
        saved = store.load(run_id, rnd)
        assert all(np.isfinite(t).all() for t in saved.tensors.values()), rnd
        for blob in saved.extra.values():
            assert all(np.isfinite(v).all() for v in st_load(blob).values()), rnd


@pytest.mark.slow
def test_one_hostile_node_a_round_cannot_stop_or_poison_the_federation(tmp_path, synth_cache):
    cfg = _cfg(tmp_path, synth_cache, "strategy=fedadam", "federation.num_rounds=4")
    app = hostile_client_app(lambda node, rnd: FORM_ATTACKS_BY_ROUND[rnd] if node == 0 else None)
    lines: list[str] = []
    summary = run_experiment(cfg, echo=lines.append, client_app=app)

    assert summary.rounds == [0, 1, 2, 3, 4] and summary.rejected == []
    records = {r["round"]: r for r in read_lines(summary.metrics_path)}
    expected = {1: "has NaN or infinite values", 2: "num-examples 1e+12 is outside", 3: "has shape"}
    for rnd, reason in expected.items():
        rec = records[rnd]
        assert rec["clients"] == {"sampled": 5, "ok": 4, "failed": 1, "rejected": 1, "clipped": 0}
        assert rec["accepted"] is True and len(rec["failures"]) == 1
        assert "reply rejected" in rec["failures"][0] and reason in rec["failures"][0], rec
    # A node of a newer version (an extra metric key) is heard, not refused.
    assert records[4]["clients"]["ok"] == 5 and records[4]["failures"] == []
    assert EXTRA_METRIC not in records[4]["train"]
    assert any(line.strip().startswith("node ") and "reply rejected" in line for line in lines)
    _finite_run(cfg, summary.run_id, [1, 2, 3, 4])
    assert STATE_FILE in make_store(cfg.checkpoints).load(summary.run_id, 4).extra
    assert records[4]["central"]["loss"] < records[0]["central"]["loss"]  # it still learned


@pytest.mark.slow
def test_attacks_that_pass_the_checks_meet_robust_aggregation(tmp_path, synth_cache):
    """Wrong labels and a flipped update scaled to just under the bound pass every check; with
    FedProx + Multi-Krum and server-side clipping both rounds aggregate, clipped, and finite."""
    cfg = _cfg(
        tmp_path, synth_cache, "strategy=fedprox", "aggregation=multikrum",
        "aggregation.clip_norm=2.0", "federation.num_rounds=2",
    )  # fmt: skip
    attacks = {1: "labels", 2: "flip-scaled"}
    app = hostile_client_app(
        lambda node, rnd: attacks[rnd] if node == 0 else None,
        checks=cfg.reply_checks,
        poison_dir=tmp_path / "poisoned",
    )
    summary = run_experiment(cfg, echo=lambda line: None, client_app=app)
    records = {r["round"]: r for r in read_lines(summary.metrics_path)}
    for rnd in (1, 2):
        assert records[rnd]["clients"]["ok"] == 5 and records[rnd]["accepted"] is True
    assert records[2]["clients"]["clipped"] >= 1  # at least the scaled-up flip was clipped
    assert list((tmp_path / "poisoned").glob("labels-*.sqlite"))  # it trained on wrong labels
    _finite_run(cfg, summary.run_id, [1, 2])
