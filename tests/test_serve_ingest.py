"""Swipe ingest over real HTTP: no acknowledged swipe is lost when the server is killed,
concurrent requests share commits (group commit), idempotency keys cannot collide and name one
body (409 otherwise), a batch the store cannot keep is refused whole, and deleted swipes leave
no trace in the store's files while the sidecar runs."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx
import pytest
from serve_helpers import SidecarProcess, metric_value, publish, synthetic_swipes

from fl_app.decoder.swipe import parse_swipe
from fl_app.swipes.store import SwipeStore
from serve.errors import ApiError
from serve.services.ingest import Ingest
from serve.services.metrics import Metrics


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
    """The keys the store keeps a request's rows under (fl_app/swipes/keys.py)."""
    if "swipes" in body:
        return [f"batch:{key}/{i}" for i in range(len(body["swipes"]))]
    return [f"single:{key}"]


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


def _error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    return body


def test_idempotency_keys_over_http(sidecar_factory, swipes):
    proc = sidecar_factory()
    proc.start()
    with proc.client() as c:

        def post(body, key):
            return c.post("/api/v1/swipes", json=body, headers={"Idempotency-Key": key})

        single = post(swipes[0], "s/0")
        batch = post({"swipes": swipes[1:3]}, "s")
        assert single.status_code == batch.status_code == 202
        ids = single.json()["ids"] + batch.json()["ids"]
        assert len(set(ids)) == 3  # `s/0` alone is not batch `s`'s first swipe
        # The same key with the same body: the same ids, nothing stored twice.
        assert post({"swipes": swipes[1:3]}, "s").json()["ids"] == batch.json()["ids"]
        assert post(swipes[0], "s/0").json()["ids"] == single.json()["ids"]
        # The same key with another body: 409, nothing stored.
        for other, key in [
            ({"swipes": [swipes[1], swipes[3]]}, "s"),
            ({"swipes": swipes[1:4]}, "s"),
            (swipes[3], "s/0"),
            ({**swipes[0], "word": "other"}, "s/0"),
        ]:
            body = _error(post(other, key), 409, "IDEMPOTENCY_CONFLICT")
            assert "other" not in body["message"]
        assert c.get("/api/v1/stats").json()["swipes"]["total"] == 3
    with SwipeStore(proc.device_dir / "swipes.sqlite") as store:
        keys = {r.idempotency_key: r.id for r in store.load()}
    assert keys == {"single:s/0": ids[0], "batch:s/0": ids[1], "batch:s/1": ids[2]}


def test_a_batch_the_store_cannot_keep_is_refused_whole(sidecar_factory, swipes):
    proc = sidecar_factory(retention_max_rows=3)
    proc.start()
    store_path = proc.device_dir / "swipes.sqlite"
    with proc.client() as c:
        first = c.post("/api/v1/swipes", json={"swipes": swipes[:2]}).json()["ids"]
        body = _error(
            c.post("/api/v1/swipes", json={"swipes": swipes[2:6]}), 413, "PAYLOAD_TOO_LARGE"
        )
        assert body["reason"] == "EXCEEDS_STORE_CAPACITY"
        stats = c.get("/api/v1/stats").json()["swipes"]
        assert (stats["total"], stats["max_rows"]) == (2, 3)  # nothing stored, nothing lost
        # Every id a 202 lists is in the store when the answer arrives; the oldest make room.
        for body in ({"swipes": swipes[2:5]}, swipes[5], {"swipes": swipes[6:8]}):
            resp = c.post("/api/v1/swipes", json=body)
            assert resp.status_code == 202, resp.text
            with SwipeStore(store_path) as store:
                assert set(resp.json()["ids"]) <= {r.id for r in store.load()}
        with SwipeStore(store_path) as store:
            assert store.count() == 3 and not set(first) & {r.id for r in store.load()}


def test_deleted_swipes_leave_no_trace_while_the_sidecar_runs(sidecar_factory, swipes):
    from store_helpers import files_holding

    proc = sidecar_factory()
    proc.start()
    store_path = proc.device_dir / "swipes.sqlite"
    gone = [{**s, "word": w} for s, w in zip(swipes[:2], ["jukebox", "zigzag"], strict=True)]
    with proc.client() as c:
        assert c.post("/api/v1/swipes", json={"swipes": gone}).status_code == 202
        parsed = [parse_swipe(s, require_word=True) for s in gone]
        assert all(files_holding(store_path, s) for s in parsed)
        assert c.delete("/api/v1/swipes").json() == {"deleted": 2}
        assert [files_holding(store_path, s) for s in parsed] == [[], []]
        assert c.post("/api/v1/swipes", json=swipes[2]).status_code == 202
        assert [files_holding(store_path, s) for s in parsed] == [[], []]


def test_one_group_commit_answers_each_request_alone(tmp_path, swipes):
    """A conflicting key and a batch over the store's capacity, in one group with good requests
    on a real store: each bad request gets its own error and stores nothing; the others commit."""
    parsed = [parse_swipe(s, require_word=True) for s in swipes[:6]]
    with SwipeStore(tmp_path / "s.sqlite", max_rows=3) as store:
        taken = store.append(parsed[0])
        ingest = Ingest(store, Metrics())

        async def scenario():
            futs = [
                asyncio.ensure_future(ingest.submit(parsed[1:2], "a", batch=False)),
                asyncio.ensure_future(ingest.submit(parsed[2:3], "a", batch=False)),
                asyncio.ensure_future(ingest.submit(parsed[:4], None, batch=True)),
                asyncio.ensure_future(ingest.submit(parsed[4:6], "b", batch=True)),
            ]
            await asyncio.sleep(0.05)  # all queued before the writer starts: one group
            ingest.start()
            return await asyncio.gather(*futs, return_exceptions=True)

        ok, conflict, too_big, batch = asyncio.run(scenario())
        ingest.close()
        assert isinstance(conflict, ApiError) and conflict.code == "IDEMPOTENCY_CONFLICT"
        assert isinstance(too_big, ApiError) and too_big.status == 413
        assert {r.id for r in store.load()} == set(ok + batch)
        assert [r.swipe.word for r in store.load()] == [
            swipes[1]["word"],
            swipes[4]["word"],
            swipes[5]["word"],
        ]
        assert taken not in ok + batch
