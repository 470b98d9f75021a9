"""Faults a deployment meets in production, each against real processes on loopback
(fl_app/deploy/): a ClientApp that raises every round, a SuperNode killed mid-round, the S3
server down for part of a run, and down for all of it. Each run must still complete
(`finished:completed`) and say what went wrong.

Every message starts a fresh ClientApp process (Python, Flower and torch imports), so these use
two SuperNodes, one or two rounds and no federated evaluation: each takes 25-45 s on 2 cores.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from serve_helpers import wait_for

from fl_app.decoder.lexicon import load_lexicon
from fl_app.deploy.processes import cmdline, marked_processes
from fl_app.federation.metrics import read_lines
from fl_app.swipes.store import SwipeStore
from fl_app.synthetic.users import make_user

pytestmark = pytest.mark.slow

# Quick to give up on a dead S3 server; the end-of-run flush waits long enough for a restart.
FAST_S3 = [
    "checkpoints.max_attempts=2",
    "checkpoints.max_retry_s=2",
    "checkpoints.max_wait_s=2",
]


def fill(dep, devices, n: int = 110) -> None:
    lexicon = load_lexicon("en", 1000)
    for i in devices:
        with SwipeStore(dep.store_path(i)) as store:
            store.append_many(make_user(300 + i, lexicon).swipes(n), source="synthetic")


def rounds_recorded(dep, run_id: str) -> list[int]:
    return [r["round"] for r in read_lines(dep.runs_dir / run_id / "metrics.jsonl")]


def test_clientapp_raising_every_round_is_counted_and_the_run_completes(deployment_factory):
    dep = deployment_factory(nodes=2, sidecars=False)
    fill(dep, [0])
    # Device 1's store is not a database: its ClientApp raises on every message.
    for suffix in ("", "-wal", "-shm"):
        dep.store_path(1).with_name(f"swipes.sqlite{suffix}").unlink(missing_ok=True)
    dep.store_path(1).write_bytes(b"not a swipe store; " * 200)
    dep.start()

    result = dep.run(["federation.num_rounds=2", "federation.fraction_evaluate=0"], timeout_s=400)
    log = result.log()
    assert result.ok, (result.status, result.details, log[-4000:])
    records = result.records()
    assert [r["round"] for r in records] == [0, 1, 2]
    for r in records[1:]:
        assert r["clients"] == {"sampled": 2, "ok": 1, "failed": 1, "rejected": 0, "clipped": 0}, r
        assert r["accepted"] is True  # 1 of 2 meets min_success_share 0.5
    assert "round 1/2 | clients ok 1 failed 1" in log and "round 2/2 | clients ok 1 failed 1" in log
    store = dep.checkpoint_store()
    for rnd in (1, 2):
        metrics = store.load_manifest(result.run_id, rnd)["metrics"]
        counts = [metrics[f"clients_{k}"] for k in ("sampled", "ok", "failed")]
        assert counts == [2, 1, 1], metrics
    assert store.read_release()["run_id"] == result.run_id  # the healthy node's updates count


def test_supernode_killed_mid_round_the_round_completes_within_the_timeout(deployment_factory):
    # Flower notices a dead node on its own once it has missed heartbeats (36-60 s after the
    # kill). The timeout is below that, so a round that ends before 36 s ended by the timeout.
    timeout_s = 25
    dep = deployment_factory(nodes=2, sidecars=False)
    fill(dep, [0, 1])
    dep.start()
    flwr_run_id, run_id = dep.submit(
        ["federation.num_rounds=1", "federation.fraction_evaluate=0",
         f"federation.round_timeout_s={timeout_s}"]
    )  # fmt: skip

    def clientapp_of_node_1():
        return [
            pid
            for pid in marked_processes(dep.id, "supernode-1")
            if any("flwr-clientapp" in part for part in cmdline(pid))
        ]

    wait_for(clientapp_of_node_1, 240, 0.2, "SuperNode 1's ClientApp to start round 1")
    dep.kill("supernode-1")  # SuperNode, SuperExec and the ClientApp at once: a device gone
    assert marked_processes(dep.id, "supernode-1") == {}
    killed_at = time.monotonic()

    result = dep.wait(flwr_run_id, run_id, timeout_s=300)
    done_at = time.monotonic()
    log = result.log()
    assert result.ok, (result.status, result.details, log[-4000:])
    records = result.records()
    assert [r["round"] for r in records] == [0, 1]
    r1 = records[1]
    assert (
        r1["clients"] == {"sampled": 2, "ok": 1, "failed": 1, "rejected": 0, "clipped": 0}
        and r1["accepted"]
    ), r1
    # The round waited for the dead node no longer than the configured timeout (then central
    # evaluation and a checkpoint), not until the heartbeat noticed it (36 s at the earliest).
    assert r1["seconds"] < timeout_s + 10 < 36, r1
    assert done_at - killed_at < timeout_s + 45
    store = dep.checkpoint_store()
    assert store.list_rounds(run_id) == [0, 1]
    assert store.read_release()["run_id"] == run_id


def test_s3_down_for_part_of_the_run_every_checkpoint_ends_up_stored(deployment_factory):
    dep = deployment_factory(nodes=2, sidecars=False)
    fill(dep, [0, 1])
    dep.start()
    flwr_run_id, run_id = dep.submit(
        ["federation.num_rounds=2", "federation.fraction_evaluate=0", "checkpoints.flush_s=90",
         *FAST_S3]
    )  # fmt: skip
    dep.kill("s3")  # before the ServerApp has even imported torch

    # The outage lasts through round 1; the server comes back (same port, same data) during
    # round 2, whose save drains the queue in order: rounds 0, 1, their release checks, 2.
    wait_for(lambda: 1 in rounds_recorded(dep, run_id), 300, 0.2, "round 1 to finish without S3")
    dep.start(["s3"])

    result = dep.wait(flwr_run_id, run_id, timeout_s=300)
    log = result.log()
    assert result.ok, (result.status, result.details, log[-4000:])
    records = result.records()
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[0]["stored"] is False and records[1]["stored"] is False  # the outage was hit
    assert "NOT STORED" not in log
    store = dep.checkpoint_store()
    assert store.list_rounds(run_id) == [0, 1, 2]
    for rnd in (0, 1, 2):
        manifest = store.load_manifest(run_id, rnd)
        tensors = store.backend.get_bytes(f"runs/{run_id}/round-{rnd:04d}/model.safetensors")
        assert hashlib.sha256(tensors).hexdigest() == manifest["sha256"]
    release = store.read_release()
    assert release is not None and release["run_id"] == run_id  # the pending checks ran too


def test_s3_down_for_the_whole_run_completes_and_reports_what_was_not_stored(
    deployment_factory,
):
    dep = deployment_factory(nodes=2, sidecars=False)
    fill(dep, [0, 1])
    dep.start()
    dep.kill("s3")
    result = dep.run(
        ["federation.num_rounds=1", "federation.fraction_evaluate=0", "checkpoints.flush_s=3",
         *FAST_S3],
        timeout_s=300,
    )  # fmt: skip
    log = result.log()
    assert result.ok, (result.status, result.details, log[-4000:])
    records = result.records()
    assert [r["stored"] for r in records] == [False, False]
    assert "NOT STORED:" in log
    for rnd in (0, 1):
        assert f"pending checkpoint runs/{result.run_id}/round-{rnd:04d}" in log
    assert "release check (auto-best)" in log  # the pending pointer move is reported too
    dep.start(["s3"])
    assert dep.checkpoint_store().list_runs() == []  # nothing was written behind the report
