"""A checkpoint store the device cannot trust, over HTTP against the running sidecar: sizes
bounded before allocation, refusals remembered across restarts, downloads capped and bounded
in time, only the needed files fetched, malformed pointers refused (never a 5xx)."""

from __future__ import annotations

import json
import time

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
from slow_proxy import SlowProxy

from fl_app.checkpoints import RELEASE_KEY, CheckpointStore, S3Backend
from fl_app.checkpoints.format import encode_json
from fl_app.decoder.spec import DecoderSpec

PREDICT = {"points": trace_for("hello"), "keyboard": KEYBOARD}
TINY_SPEC = DecoderSpec(hidden=8, conv_channels=8, gru_layers=1, lexicon_size=2000)
DOWNLOADS = "swipefl_release_downloads_total"


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def status(c) -> dict:
    resp = c.get("/api/v1/model")
    assert resp.status_code == 200
    return resp.json()


def serves(c, header: str) -> bool:
    resp = c.post("/api/v1/predict", json=PREDICT)
    return resp.status_code == 200 and resp.headers["X-Model-Version"] == header


def test_huge_manifest_refused_without_memory_and_not_retried_after_restart(tmp_path):
    proc = SidecarProcess(tmp_path, reload_interval_s=0.2)
    store = proc.checkpoints()
    publish(store, "run-a", 1)
    proc.start(wait_ready=True)
    try:
        with proc.client() as c:
            assert serves(c, "run-a/1")
            before = peak_rss_mib(proc.proc.pid)
            huge = DecoderSpec(hidden=16384, conv_channels=32, gru_layers=1, lexicon_size=2000)
            # The small model's tensors under a manifest that asks for ~26 GB of GRU.
            publish(
                store,
                "run-evil",
                2,
                tensors=release_tensors(SMALL_SPEC),
                decoder=huge.to_manifest(),
            )
            refused = wait_for(lambda: status(c)["refused_releases"], 30, what="a refusal")
            grown = peak_rss_mib(proc.proc.pid) - before
            assert grown < 200, f"peak RSS grew {grown:.0f} MiB"
            assert refused[0]["run_id"] == "run-evil" and refused[0]["round"] == 2
            assert refused[0]["reason"] == "model_too_large"
            assert "3,000,000" in refused[0]["message"]
            assert status(c)["last_refused"]["reason"] == "model_too_large"
            assert serves(c, "run-a/1")
            downloads = metric_value(c.get("/metrics").text, DOWNLOADS)
            time.sleep(1.0)  # five watcher polls: none downloads it again
            assert metric_value(c.get("/metrics").text, DOWNLOADS) == downloads
        proc.stop()
        proc.start()  # a restart: the refusal is on the device, the release not fetched again
        with proc.client() as c:
            assert serves(c, "run-a/1")  # from the device cache
            wait_for(lambda: (status(c)["last_check"] or {}).get("reason") == "refused_before", 30)
            time.sleep(0.5)
            assert metric_value(c.get("/metrics").text, DOWNLOADS) == 0
            stats = c.get("/api/v1/stats").json()
            remembered = stats["model"]["refused_releases"]
            assert [(r["run_id"], r["reason"]) for r in remembered] == [
                ("run-evil", "model_too_large")
            ]
            # A forced reload tries again (bounded: refused before allocating, again).
            forced = c.post("/api/v1/model/reload").json()
            assert forced["result"] == "refused" and forced["reason"] == "model_too_large"
            # A good release afterwards is served and the pointer moves on.
            publish(store, "run-a", 3)
            wait_for(lambda: serves(c, "run-a/3"), 30)
    finally:
        proc.stop()
    evil_downloads = [
        line
        for line in proc.logs().splitlines()
        if "downloading release" in line and "run-evil" in line
    ]
    assert len(evil_downloads) == 2  # the first refusal and the forced reload, never a restart


# -- malformed pointers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    proc = SidecarProcess(tmp_path_factory.mktemp("pointers"), reload_interval_s=0.2)
    publish(proc.checkpoints(), "run-a", 1)
    proc.start(wait_ready=True)
    yield proc
    proc.stop()


def _pointer(**changes) -> bytes:
    good = {
        "format_version": 1,
        "run_id": "run-a",
        "round": 1,
        "path": "runs/run-a/round-0001",
        "sha256": "b" * 64,
    }
    return encode_json({**good, **changes})


POINTERS = {
    "round null": (_pointer(round=None), "POINTER_MALFORMED"),
    "round string": (_pointer(round="2"), "POINTER_MALFORMED"),
    "no sha256": (b'{"format_version": 1, "run_id": "run-a", "round": 1}', "POINTER_MALFORMED"),
    "run_id a number": (_pointer(run_id=7), "POINTER_MALFORMED"),
    "path traversal": (_pointer(path="../../../etc"), "POINTER_MALFORMED"),
    "sha256 not hex": (_pointer(sha256="z" * 64), "POINTER_MALFORMED"),
    "format_version 2": (_pointer(format_version=2), "UNSUPPORTED_FORMAT"),
    "not JSON": (b"{not json", "POINTER_MALFORMED"),
    "a JSON list": (b"[1, 2]", "POINTER_MALFORMED"),
    "100 KB": (_pointer(pad="p" * 100_000), "DOWNLOAD_TOO_LARGE"),
}


@pytest.mark.parametrize("data, reason", POINTERS.values(), ids=POINTERS.keys())
def test_malformed_pointer_is_a_refusal_and_the_old_model_serves(serving, data, reason):
    store = serving.checkpoints()
    good = store.backend.get_bytes(RELEASE_KEY)
    with serving.client() as c:
        refused0 = status(c)["refused"]
        store.backend.put_bytes(RELEASE_KEY, data)
        try:
            resp = c.post("/api/v1/model/reload")
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["result"] == "refused" and body["reason"] == reason, body
            assert body["model_version"]["run_id"] == "run-a"
            time.sleep(0.6)  # the watcher meets it too: counted and logged once
            now = status(c)
            assert now["refused"] == refused0 + 1 and now["last_refused"]["reason"] == reason
            assert c.get("/api/v1/stats").status_code == 200
            assert serves(c, "run-a/1")
        finally:
            store.backend.put_bytes(RELEASE_KEY, good)
        wait_for(lambda: status(c)["last_check"]["result"] == "unchanged", 10)


# -- downloads: cap, needed files only, deadline -------------------------------------------


def test_download_cap_refuses_big_and_lying_checkpoints(tmp_path):
    proc = SidecarProcess(tmp_path, reload_interval_s=30, download_max_bytes=50_000)
    store = proc.checkpoints()
    publish(store, "run-t", 1, spec=TINY_SPEC)  # ~13 KB of tensors
    proc.start(wait_ready=True)
    try:
        with proc.client() as c:
            assert serves(c, "run-t/1")
            publish(store, "run-t", 2)  # ~100 KB: refused from its manifest, not downloaded
            body = c.post("/api/v1/model/reload").json()
            assert body["result"] == "refused" and body["reason"] == "DOWNLOAD_TOO_LARGE"
            # A manifest that under-states its tensors file: cut off at the stated size.
            store.save(
                "run-t", 3, release_tensors(), manifest={"decoder": SMALL_SPEC.to_manifest()}
            )
            manifest_path = store.backend.root / "runs/run-t/round-0003/manifest.json"
            manifest = json.loads(manifest_path.read_text())
            manifest["files"]["model.safetensors"]["size"] = 13_000
            manifest_path.write_text(json.dumps(manifest))
            store.promote("run-t", 3)
            body = c.post("/api/v1/model/reload").json()
            assert body["result"] == "refused" and body["reason"] == "DOWNLOAD_TOO_LARGE"
            # A manifest of a format this sidecar does not know.
            publish(store, "run-t", 4, spec=TINY_SPEC)
            manifest_path = store.backend.root / "runs/run-t/round-0004/manifest.json"
            manifest = json.loads(manifest_path.read_text())
            manifest_path.write_text(json.dumps({**manifest, "format_version": 2}))
            body = c.post("/api/v1/model/reload").json()
            assert body["result"] == "refused" and body["reason"] == "UNSUPPORTED_FORMAT"
            assert serves(c, "run-t/1")
            reasons = [r["reason"] for r in status(c)["refused_releases"]]
            assert reasons == ["UNSUPPORTED_FORMAT", "DOWNLOAD_TOO_LARGE", "DOWNLOAD_TOO_LARGE"]
    finally:
        proc.stop()


def test_only_the_files_the_sidecar_serves_are_fetched(tmp_path, s3_server, s3_bucket):
    """FedAdam's server state is never downloaded: a release whose state file is gone from
    the store (local directory and S3) still loads."""
    state = {"strategy_state.safetensors": b"\0" * 500_000}
    local = SidecarProcess(tmp_path / "local", reload_interval_s=30)
    s3_store = CheckpointStore(
        S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket)
    )
    on_s3 = SidecarProcess(
        tmp_path / "s3",
        reload_interval_s=30,
        checkpoint_store="s3",
        extra_env=s3_server.env(s3_bucket),
    )
    for proc, store in ((local, local.checkpoints()), (on_s3, s3_store)):
        store.save(
            "run-f", 1, release_tensors(), {"decoder": SMALL_SPEC.to_manifest()}, extra=state
        )
        store.promote("run-f", 1)
        store.backend.delete("runs/run-f/round-0001/strategy_state.safetensors")
        proc.start(wait_ready=True)
        try:
            with proc.client() as c:
                assert serves(c, "run-f/1")
        finally:
            proc.stop()


def test_a_trickling_store_is_cut_off_at_the_download_deadline(tmp_path, s3_server, s3_bucket):
    backend = S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket)
    store = CheckpointStore(backend)
    publish(store, "run-s", 1, spec=TINY_SPEC)
    host, port = s3_server.endpoint.split(":")
    with SlowProxy(host, int(port), bytes_per_s=200_000) as proxy:
        env = {**s3_server.env(s3_bucket), "SWIPEFL_S3_ENDPOINT": proxy.endpoint}
        proc = SidecarProcess(
            tmp_path,
            reload_interval_s=60,
            checkpoint_store="s3",
            download_deadline_s=2.0,
            extra_env=env,
        )
        proc.start(wait_ready=True)
        try:
            with proc.client() as c:
                assert serves(c, "run-s/1")
                base = DecoderSpec(lexicon_size=2000)  # ~2.4 MB: 12 s at this rate
                publish(store, "run-s", 2, spec=base)
                started = time.monotonic()
                body = c.post("/api/v1/model/reload").json()
                took = time.monotonic() - started
                assert body["result"] == "unavailable" and body["reason"] == "DOWNLOAD_TIMEOUT"
                assert took < 8, took
                assert serves(c, "run-s/1")
                assert status(c)["refused_releases"] == []  # a slow store is an outage
        finally:
            proc.stop()
