"""Hot reload over real HTTP: start without a release, follow the pointer, refuse bad
checkpoints while the old model keeps answering, serve the device cache after a restart, and
change the release 10 times under prediction load without a failed request."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
from serve_helpers import (
    KEYBOARD,
    SMALL_SPEC,
    SidecarProcess,
    metric_value,
    publish,
    release_tensors,
    trace_for,
    wait_for,
)

from fl_app.checkpoints import RELEASE_KEY, CheckpointStore
from fl_app.checkpoints.format import encode_json
from fl_app.decoder.spec import DecoderSpec

PREDICT = {"points": trace_for("hello"), "keyboard": KEYBOARD}


def served_round(client) -> int | None:
    version = client.get("/api/v1/model").json()["version"]
    return None if version is None else version["round"]


def test_starts_without_release_then_loads(tmp_path):
    proc = SidecarProcess(tmp_path)
    proc.start()
    try:
        with proc.client() as c:
            resp = c.post("/api/v1/predict", json=PREDICT)
            assert resp.status_code == 503 and resp.json()["code"] == "MODEL_NOT_LOADED"
            assert c.get("/ready").status_code == 503
            assert c.get("/health").status_code == 200
            stats = c.get("/api/v1/stats").json()
            assert stats["model"]["loaded"] is False
            assert c.post("/api/v1/model/reload").json()["result"] == "no_release"
            publish(proc.checkpoints(), "run-a", 1)
            wait_for(lambda: c.get("/ready").status_code == 200, 30)  # the watcher
            resp = c.post("/api/v1/predict", json=PREDICT)
            assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "run-a/1"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def reloading(tmp_path_factory):
    proc = SidecarProcess(tmp_path_factory.mktemp("reload"), reload_interval_s=0.2)
    publish(proc.checkpoints(), "run-a", 1)
    proc.start(wait_ready=True)
    yield proc
    proc.stop()


def _corrupt_bytes(store, run_id, rnd):
    publish_unpointed(store, run_id, rnd)
    path = store.backend.root / f"runs/{run_id}/round-{rnd:04d}/model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    point_at(store, run_id, rnd)


def _shape_mismatch(store, run_id, rnd):
    # Tensors of the small model, a manifest describing a bigger one.
    bigger = DecoderSpec(hidden=64, conv_channels=32, gru_layers=1, lexicon_size=2000)
    publish(store, run_id, rnd, tensors=release_tensors(SMALL_SPEC), decoder=bigger.to_manifest())


def _table_mismatch(store, run_id, rnd):
    publish_unpointed(store, run_id, rnd)
    path = store.backend.root / f"runs/{run_id}/round-{rnd:04d}/manifest.json"
    manifest = json.loads(path.read_text())
    name = next(iter(manifest["tensors"]))
    manifest["tensors"][name]["shape"] = [1, 2, 3]
    path.write_text(json.dumps(manifest))
    point_at(store, run_id, rnd)


def _no_decoder(store, run_id, rnd):
    tensors = release_tensors(SMALL_SPEC)
    store.save(run_id, rnd, tensors, manifest={"metrics": {}})
    point_at(store, run_id, rnd)


def _nan_weights(store, run_id, rnd):
    tensors = release_tensors(SMALL_SPEC)
    name = next(k for k, v in tensors.items() if v.dtype.kind == "f")
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = np.nan
    publish(store, run_id, rnd, tensors=tensors)


def _pointer_mismatch(store, run_id, rnd):
    publish_unpointed(store, run_id, rnd)
    point_at(store, run_id, rnd, sha256="0" * 64)


def _missing_checkpoint(store, run_id, rnd):
    point_at(store, run_id, rnd, sha256="1" * 64, exists=False)


def publish_unpointed(store, run_id, rnd):
    store.save(
        run_id,
        rnd,
        release_tensors(SMALL_SPEC),
        manifest={"decoder": SMALL_SPEC.to_manifest(), "metrics": {}},
    )


def point_at(store, run_id, rnd, sha256=None, exists=True):
    path = f"runs/{run_id}/round-{rnd:04d}"
    if sha256 is None:
        sha256 = store.load_manifest(run_id, rnd)["sha256"]
    pointer = {
        "format_version": 1,
        "run_id": run_id,
        "round": rnd,
        "path": path,
        "sha256": sha256,
        "metrics": {},
        "reason": "promote",
        "pinned": True,
    }
    store.backend.put_bytes(RELEASE_KEY, encode_json(pointer))


BAD = [
    (_corrupt_bytes, "CHECKPOINT_CORRUPT"),
    (_shape_mismatch, "mismatch"),
    (_table_mismatch, "mismatch"),
    (_no_decoder, "mismatch"),
    (_nan_weights, "non_finite"),
    (_pointer_mismatch, "pointer_mismatch"),
    (_missing_checkpoint, "CHECKPOINT_NOT_FOUND"),
]


@pytest.mark.parametrize("make_bad, reason", BAD, ids=[f.__name__.strip("_") for f, _ in BAD])
def test_bad_checkpoint_refused_old_keeps_answering(reloading, make_bad, reason):
    store = reloading.checkpoints()
    with reloading.client() as c:
        good_round = served_round(c)
        refused0 = c.get("/api/v1/model").json()["refused"]
        bad_round = good_round + 100
        make_bad(store, "run-bad", bad_round)
        wait_for(lambda: c.get("/api/v1/model").json()["refused"] > refused0, 30)
        status = c.get("/api/v1/model").json()
        assert status["last_refused"]["reason"] == reason
        assert status["version"]["round"] == good_round
        for _ in range(3):  # the old model keeps answering
            resp = c.post("/api/v1/predict", json=PREDICT)
            assert resp.status_code == 200
            assert resp.json()["model_version"]["round"] == good_round
        # The watcher does not retry a refused pointer; a forced reload checks again.
        time.sleep(0.5)
        assert c.get("/api/v1/model").json()["refused"] == refused0 + 1
        forced = c.post("/api/v1/model/reload").json()
        assert forced["result"] == "refused" and forced["reason"] == reason
        text = c.get("/metrics").text
        assert metric_value(text, "swipefl_model_reloads_refused_total", {"reason": reason}) >= 1
        # A good release afterwards is served.
        publish(store, "run-a", good_round + 1)
        wait_for(lambda: served_round(c) == good_round + 1, 30)


def test_restart_serves_device_cache_without_store(reloading):
    with reloading.client() as c:
        rnd = served_round(c)
    reloading.stop()
    shutil.rmtree(reloading.checkpoint_dir)  # the store is gone (offline device)
    try:
        reloading.start()
        with reloading.client() as c:
            # Ready as soon as it answers: the cached release is loaded during startup.
            assert c.get("/ready").status_code == 200
            assert served_round(c) == rnd
            assert c.post("/api/v1/predict", json=PREDICT).status_code == 200
            assert c.post("/api/v1/model/reload").json()["result"] == "no_release"
            assert served_round(c) == rnd
    finally:
        reloading.checkpoint_dir.mkdir(exist_ok=True)
        publish(reloading.checkpoints(), "run-a", 500)


def test_ten_release_changes_under_load(tmp_path):
    proc = SidecarProcess(tmp_path, reload_interval_s=0.1)
    store = proc.checkpoints()
    publish(store, "run-l", 1, seed=1)
    proc.start(wait_ready=True)
    stop = threading.Event()
    results: list[list[tuple[int, int]]] = [[] for _ in range(4)]
    errors: list[str] = []

    def load(i: int) -> None:
        with proc.client() as c:
            while not stop.is_set():
                try:
                    resp = c.post("/api/v1/predict", json=PREDICT)
                except Exception as exc:  # a connection error is a failed request too
                    errors.append(repr(exc))
                    continue
                rnd = (
                    resp.json().get("model_version", {}).get("round", -1)
                    if (resp.status_code == 200)
                    else -1
                )
                results[i].append((resp.status_code, rnd))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        with proc.client() as c:
            for rnd in range(2, 12):  # 10 release changes
                time.sleep(0.3)
                publish(store, "run-l", rnd, seed=rnd)
                wait_for(lambda r=rnd: served_round(c) == r, 30, 0.05)
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        proc.stop()
    flat = [r for per in results for r in per]
    assert not errors
    assert len(flat) > 100
    assert {status for status, _ in flat} == {200}
    for per in results:
        rounds = [rnd for _, rnd in per]
        assert rounds == sorted(rounds)  # never back to an older release
        assert rounds[-1] == 11
    assert len({rnd for _, rnd in flat}) >= 5  # answers switched along the way


def test_serves_release_from_s3(s3_server, s3_bucket, sidecar_factory):
    """The MinIO/S3 checkpoint store by settings (a real S3 server on loopback, SigV4)."""
    from fl_app.checkpoints import S3Backend

    backend = S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket)
    store = CheckpointStore(backend)
    publish(store, "run-s3", 2)
    proc = sidecar_factory(
        checkpoint_store="s3", extra_env=s3_server.env(s3_bucket), reload_interval_s=3600
    )  # the forced reload below must be what loads round 3, not the watcher racing it
    proc.start(wait_ready=True)
    with proc.client() as c:
        resp = c.post("/api/v1/predict", json=PREDICT)
        assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "run-s3/2"
        publish(store, "run-s3", 3, seed=3)
        assert c.post("/api/v1/model/reload").json()["result"] == "loaded"
        assert c.post("/api/v1/predict", json=PREDICT).headers["X-Model-Version"] == "run-s3/3"
    logs = proc.logs()
    assert s3_server.secret_key not in logs and s3_server.access_key not in logs
