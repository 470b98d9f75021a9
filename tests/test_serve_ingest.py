"""Swipe ingest over real HTTP: no acknowledged swipe is lost when the server is killed, and
concurrent requests share commits (group commit)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
from serve_helpers import SidecarProcess, metric_value, publish, synthetic_swipes

from fl_app.swipes.store import SwipeStore


@pytest.fixture(scope="module")
def swipes():
    return synthetic_swipes(40, seed=3)


def _post_loop(url, swipes, worker, stop, acked, attempted):
    """Post singles and small batches with unique idempotency keys until the server dies."""
    n = 0
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            n += 1
            key = f"w{worker}-{n}"
            batch = n % 3 == 0
            body = {"swipes": swipes[n % 30 : n % 30 + 4]} if batch else swipes[n % 40]
            attempted[key] = body
            try:
                resp = c.post("/api/v1/swipes", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                return  # the server is gone; this request's fate is unknown
            if resp.status_code == 202:
                acked[key] = resp.json()["ids"]
            else:
                return


def _rows_by_key(path):
    with SwipeStore(path) as store:
        rows = store.load()
    out: dict[str, list[int]] = {}
    for row in rows:
        assert row.idempotency_key is not None
        out.setdefault(row.idempotency_key, []).append(row.id)
    return out


def _stored_keys(key, body):
    return [f"{key}/{i}" for i in range(len(body["swipes"]))] if "swipes" in body else [key]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_no_acknowledged_swipe_lost(tmp_path, swipes, sig):
    proc = SidecarProcess(tmp_path)
    proc.start()
    stop = threading.Event()
    acked: dict[str, list[int]] = {}
    attempted: dict[str, dict] = {}
    threads = [
        threading.Thread(target=_post_loop, args=(proc.url, swipes, w, stop, acked, attempted))
        for w in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert len(acked) > 20  # commits were in flight
    if sig == signal.SIGKILL:
        proc.kill()
    else:
        proc.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after a graceful shutdown: -15 (or 0) is a clean exit.
        assert proc.proc.wait(30) in (0, -signal.SIGTERM)
        proc.proc = None
        assert '"sidecar stopped"' in proc.logs()
    stop.set()
    for t in threads:
        t.join()

    proc.start()  # restart on the same device directory
    try:
        store_path = proc.device_dir / "swipes.sqlite"
        rows = _rows_by_key(store_path)
        # Every acknowledged swipe is stored exactly once, under the id that was returned.
        for key, ids in acked.items():
            body = attempted[key]
            for stored_key, rid in zip(_stored_keys(key, body), ids, strict=True):
                assert rows.get(stored_key) == [rid]
        # Nothing without a key (nothing invented) and no key twice.
        assert all(len(v) == 1 for v in rows.values())
        # Retrying every request (acknowledged or not) with its key stores nothing twice.
        with proc.client() as c:
            for key, body in attempted.items():
                resp = c.post("/api/v1/swipes", json=body, headers={"Idempotency-Key": key})
                assert resp.status_code == 202
                if key in acked:
                    assert resp.json()["ids"] == acked[key]
        rows = _rows_by_key(store_path)
        expected = {k for key, body in attempted.items() for k in _stored_keys(key, body)}
        assert set(rows) == expected
        assert all(len(v) == 1 for v in rows.values())
    finally:
        proc.stop()


def test_group_commit(tmp_path, swipes):
    proc = SidecarProcess(tmp_path)
    publish(proc.checkpoints())
    proc.start()
    try:

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=proc.url, limits=limits, timeout=30) as c:
                resps = await asyncio.gather(
                    *(c.post("/api/v1/swipes", json=swipes[i % 40]) for i in range(128))
                )
            return [r.status_code for r in resps]

        assert asyncio.run(burst()) == [202] * 128
        with proc.client() as c:
            text = c.get("/metrics").text
            assert c.get("/api/v1/stats").json()["swipes"]["total"] == 128
        commits = metric_value(text, "swipefl_ingest_commit_swipes_count")
        swiped = metric_value(text, "swipefl_ingest_commit_swipes_sum")
        assert swiped == 128
        assert commits < 128  # some commits carried several requests
        assert metric_value(text, "swipefl_swipes_stored_total") == 128
    finally:
        proc.stop()
