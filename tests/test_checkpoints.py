"""Checkpoint store: both backends (local directory, real S3 via SeaweedFS), releases, outages, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from fl_app.checkpoints import (
    RELEASE_KEY,
    CheckpointAuthError,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    CheckpointStore,
    LocalDirBackend,
    ResilientCheckpointWriter,
    S3Backend,
    StoreUnavailable,
    store_from_config,
)
from fl_app.checkpoints.format import (
    REDACTED,
    decode_checkpoint,
    decode_json,
    encode_checkpoint,
    encode_json,
)

REPO = Path(__file__).resolve().parents[1]
FAST_S3 = {"connect_timeout": 1.0, "read_timeout": 5.0, "max_attempts": 3, "max_retry_s": 1.0}


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "encoder.bias": rng.standard_normal(8).astype(np.float32),
        "steps": np.arange(3, dtype=np.int64),
    }


def _s3_backend(server, bucket: str, prefix: str = "", **kwargs) -> S3Backend:
    options = {**FAST_S3, **kwargs}
    return S3Backend(
        server.endpoint, server.access_key, server.secret_key, bucket, prefix=prefix, **options
    )


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> CheckpointStore:
    if request.param == "local":
        return CheckpointStore(LocalDirBackend(tmp_path / "store"))
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return CheckpointStore(_s3_backend(server, bucket, prefix="swipefl/tests"))


def _save(store, run_id, server_round, top1=None, seed=None, **kw):
    manifest = {"model": {"arch": "gru", "hidden": 8}, "lexicon_id": "en-test"}
    if top1 is not None:
        manifest["metrics"] = {"top1": top1}
    return store.save(run_id, server_round, _tensors(seed or server_round), manifest, **kw)


# -- checkpoints ---------------------------------------------------------------------------------


def test_save_load_round_trip(store):
    tensors = _tensors(1)
    state = b"\x00fedadam-state\xff"
    manifest = {"model": {"arch": "gru", "hidden": 8}, "metrics": {"top1": np.float32(0.25)}}
    ref = store.save("run-a", 3, tensors, manifest, extra={"strategy_state.safetensors": state})
    assert ref.path == "runs/run-a/round-0003"
    stored = store.backend.get_bytes("runs/run-a/round-0003/model.safetensors")
    assert ref.sha256 == hashlib.sha256(stored).hexdigest()

    ckpt = store.load("run-a", 3)
    assert set(ckpt.tensors) == set(tensors)
    for name, array in tensors.items():
        assert ckpt.tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(ckpt.tensors[name], array)
    assert ckpt.extra == {"strategy_state.safetensors": state}
    m = ckpt.manifest
    assert m["format_version"] == 1 and m["run_id"] == "run-a" and m["round"] == 3
    assert m["path"] == ref.path and m["sha256"] == ref.sha256 and m["created_at"].endswith("Z")
    assert m["model"] == {"arch": "gru", "hidden": 8}
    assert m["metrics"]["top1"] == pytest.approx(0.25)
    assert m["tensors"]["encoder.weight"] == {"dtype": "float32", "shape": [8, 4]}
    assert m["files"]["strategy_state.safetensors"]["sha256"] == hashlib.sha256(state).hexdigest()
    # The manifest on the store is plain JSON (no pickle anywhere).
    raw = json.loads(store.backend.get_bytes("runs/run-a/round-0003/manifest.json"))
    assert raw == m
    # None = newest round.
    store.save("run-a", 10, _tensors(2), {})
    assert store.load("run-a").manifest["round"] == 10
    assert store.load_manifest("run-a", 3)["sha256"] == ref.sha256


def test_corrupt_tensors_named(store):
    _save(store, "run-c", 1)
    key = "runs/run-c/round-0001/model.safetensors"
    data = bytearray(store.backend.get_bytes(key))
    data[-1] ^= 0xFF
    store.backend.put_bytes(key, bytes(data))
    with pytest.raises(CheckpointCorrupt, match=r"runs/run-c/round-0001.*sha256"):
        store.load("run-c", 1)
    store.backend.delete(key)
    with pytest.raises(CheckpointCorrupt, match=r"runs/run-c/round-0001.*missing"):
        store.load("run-c", 1)
    store.backend.put_bytes("runs/run-c/round-0001/manifest.json", b"{not json")
    with pytest.raises(CheckpointCorrupt, match=r"runs/run-c/round-0001/manifest.json"):
        store.load_manifest("run-c", 1)


def test_checkpoint_format_round_trip_and_refusals():
    """The one format every writer and reader shares: the format fields are the encoder's,
    and a changed byte, a wrong table or a missing sha256 is CheckpointCorrupt."""
    tensors = _tensors(4)
    manifest = {"kind": "test", "score": np.float32(0.5), "nan": float("nan"), "sha256": "mine"}
    data, full = encode_checkpoint(tensors, manifest)
    assert full["format_version"] == 1 and full["sha256"] == hashlib.sha256(data).hexdigest()
    assert full["kind"] == "test" and full["score"] == 0.5 and full["nan"] is None
    assert full["tensors"]["encoder.weight"] == {"dtype": "float32", "shape": [8, 4]}
    assert decode_json(encode_json(full), "k", "manifest") == full
    loaded = decode_checkpoint(data, full, path="here")
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    with pytest.raises(CheckpointCorrupt, match=r"here is corrupt: sha256 of model.safetensors"):
        decode_checkpoint(bytes(bad), full, path="here")
    wrong = {**full, "tensors": {**full["tensors"], "steps": {"dtype": "int64", "shape": [4]}}}
    with pytest.raises(CheckpointCorrupt, match="tensor steps is int64\\[3\\], manifest says"):
        decode_checkpoint(data, wrong, path="here")
    decode_checkpoint(data, wrong, path="here", check_table=False)  # the store's bytes check
    with pytest.raises(CheckpointCorrupt, match="lacks sha256"):
        decode_checkpoint(data, {**full, "sha256": None}, path="here")
    with pytest.raises(CheckpointError, match="non-empty dict"):
        encode_checkpoint({}, {})
    with pytest.raises(CheckpointError, match="dtype object"):
        encode_checkpoint({"x": np.array([object()])}, {})


def test_list_runs_and_rounds(store):
    assert store.list_runs() == [] and store.latest_round("nope") is None
    for r in (0, 1, 2, 12):
        _save(store, "run-b", r)
    _save(store, "run-a", 5)
    # Tensors without a manifest: an unfinished write, not a checkpoint.
    store.backend.put_bytes("runs/run-d/round-0001/model.safetensors", b"partial")
    assert store.list_runs() == ["run-a", "run-b"]
    assert store.list_rounds("run-b") == [0, 1, 2, 12]
    assert store.latest_round("run-b") == 12 and store.latest_round("run-d") is None
    with pytest.raises(CheckpointNotFound):
        store.load("run-x")
    with pytest.raises(CheckpointNotFound, match="runs/run-b/round-0007"):
        store.load("run-b", 7)
    with pytest.raises(CheckpointError, match="invalid run id"):
        store.save("../escape", 1, _tensors(), {})


# -- releases --------------------------------------------------------------------------------------


def test_auto_release_only_on_best_round(store):
    assert store.read_release() is None
    _save(store, "run", 1, top1=0.30)
    assert store.auto_release("run", 1, {"top1": 0.30}) is True
    _save(store, "run", 2, top1=0.20)
    assert store.auto_release("run", 2, {"top1": 0.20}) is False
    _save(store, "run", 3, top1=0.50)
    assert store.auto_release("run", 3, {"top1": 0.50}) is True
    _save(store, "run", 4, top1=0.50)
    assert store.auto_release("run", 4, {"top1": 0.50}) is False  # a tie is not better
    _save(store, "run", 5)
    assert store.auto_release("run", 5, {"loss": 1.0}) is False  # no top1
    pointer = store.read_release()
    assert pointer["run_id"] == "run" and pointer["round"] == 3
    assert pointer["path"] == "runs/run/round-0003" and pointer["reason"] == "auto-best"
    assert pointer["pinned"] is False and pointer["format_version"] == 1
    assert pointer["sha256"] == store.load_manifest("run", 3)["sha256"]
    assert pointer["metrics"] == {"top1": 0.5}
    # Best of THAT run: a new run's first round releases even with a lower score.
    _save(store, "run-2", 1, top1=0.10)
    assert store.auto_release("run-2", 1) is True  # metrics from its manifest
    with pytest.raises(CheckpointNotFound):
        store.auto_release("run", 99, {"top1": 1.0})


def test_promote_pins_then_rollback_unpin_history(store):
    for r, top1 in ((1, 0.1), (2, 0.2), (3, 0.3)):
        _save(store, "run", r, top1=top1)
        assert store.auto_release("run", r, {"top1": top1}) is True
    pointer = store.promote("run", 1)
    assert (pointer["round"], pointer["reason"], pointer["pinned"]) == (1, "promote", True)
    _save(store, "run", 4, top1=0.9)
    assert store.auto_release("run", 4, {"top1": 0.9}) is False  # pinned
    assert store.read_release()["round"] == 1

    # Rollback undoes the promote (back to 3), then walks further back (2), pinned each time.
    pointer = store.rollback()
    assert (pointer["round"], pointer["reason"], pointer["pinned"]) == (3, "rollback", True)
    assert store.rollback()["round"] == 2
    assert store.rollback()["round"] == 1
    with pytest.raises(CheckpointError, match="nothing to roll back"):
        store.rollback()
    assert store.auto_release("run", 4, {"top1": 0.9}) is False  # still pinned

    unpinned = store.unpin()
    assert unpinned["pinned"] is False and store.read_release()["pinned"] is False
    _save(store, "run", 5, top1=0.95)
    assert store.auto_release("run", 5, {"top1": 0.95}) is True
    assert store.read_release()["round"] == 5

    history = store.history()
    assert [h["reason"] for h in history] == [
        "auto-best",
        "auto-best",
        "auto-best",
        "promote",
        "rollback",
        "rollback",
        "rollback",
        "auto-best",
    ]
    assert history[0]["from"] is None
    assert history[3]["from"]["path"] == "runs/run/round-0003"
    assert history[3]["to"] == {"run_id": "run", "round": 1, "path": "runs/run/round-0001"}
    assert all(h["when"].endswith("Z") for h in history)
    raw = store.backend.get_bytes("releases/history.jsonl").decode()
    assert len(raw.splitlines()) == len(history)


def test_promote_refuses_missing_or_corrupt(store):
    with pytest.raises(CheckpointNotFound):
        store.promote("ghost", 1)
    with pytest.raises(CheckpointNotFound):
        store.unpin()
    _save(store, "run", 1)
    store.backend.put_bytes("runs/run/round-0001/model.safetensors", b"garbage")
    with pytest.raises(CheckpointCorrupt, match="runs/run/round-0001"):
        store.promote("run", 1)
    assert not store.backend.exists(RELEASE_KEY)


def test_no_secret_in_manifests(store, monkeypatch):
    secret = "env-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("SWIPEFL_S3_SECRET_KEY", secret)
    backend_secrets = [v for v in getattr(store.backend, "_redact_values", tuple)()]
    manifest = {
        "config": {
            "store": {"kind": "s3", "secret_key": "literal-secret-value", "bucket": "b"},
            "sidecar": {"api_token": "tok-123456", "max_tokens": 5},
            "note": f"resolved ${{oc.env:SWIPEFL_S3_SECRET_KEY}} -> {secret}",
            "urls": [f"http://user:{s}@host" for s in backend_secrets],
        },
        "metrics": {"top1": 0.5},
    }
    _save(store, "run", 1, extra={"strategy_state.safetensors": b"x"})
    store.save("run", 2, _tensors(), manifest)
    m = store.load_manifest("run", 2)
    assert m["config"]["store"]["secret_key"] == REDACTED
    assert m["config"]["store"]["bucket"] == "b"
    assert m["config"]["sidecar"] == {"api_token": REDACTED, "max_tokens": 5}
    assert m["config"]["note"] == REDACTED
    assert all(u == REDACTED for u in m["config"]["urls"])
    assert store.auto_release("run", 2)
    for key in store.backend.list(""):
        blob = store.backend.get_bytes(key)
        for value in [secret, "literal-secret-value", "tok-123456", *backend_secrets]:
            assert value.encode() not in blob, key
    for value in backend_secrets:
        assert value not in repr(store) and value not in store.describe()


# -- S3 specifics ------------------------------------------------------------------------------------


def test_s3_wrong_credentials_refused_quickly(s3_server, s3_bucket):
    good = _s3_backend(s3_server, s3_bucket)
    good.put_bytes("probe", b"1")
    for access, secret in (
        (s3_server.access_key, "wrong-secret-" + uuid.uuid4().hex),
        ("unknown-access-key", s3_server.secret_key),
    ):
        bad = S3Backend(s3_server.endpoint, access, secret, s3_bucket, **FAST_S3)
        store = CheckpointStore(bad)
        t0 = time.monotonic()
        with pytest.raises(CheckpointAuthError) as info:
            store.save("run", 1, _tensors(), {})
        with pytest.raises(CheckpointAuthError):
            bad.get_bytes("probe")
        assert time.monotonic() - t0 < 3.0  # not retried
        assert secret not in str(info.value) and secret not in repr(bad)
        assert "SignatureDoesNotMatch" in str(info.value) or "InvalidAccessKeyId" in str(info.value)


def test_s3_dead_endpoint_is_unavailable_fast():
    from s3_server import free_ports

    (port,) = free_ports(1)
    backend = S3Backend(f"127.0.0.1:{port}", "ak-123456", "sk-123456", "bucket", **FAST_S3)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        backend.get_bytes("x")
    assert time.monotonic() - t0 < 5.0


def test_s3_hung_server_times_out():
    """A server that accepts connections but never answers: bounded by timeouts and retries."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accepted: the kernel completes connects, nothing answers
        port = listener.getsockname()[1]
        backend = S3Backend(
            f"127.0.0.1:{port}",
            "ak-123456",
            "sk-123456",
            "bucket",
            region="us-east-1",
            connect_timeout=0.5,
            read_timeout=0.5,
            max_attempts=5,
            max_retry_s=1.0,
        )
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable"):
            backend.put_bytes("x", b"1")
        assert time.monotonic() - t0 < 4.0


def test_s3_from_env_and_factory(monkeypatch, s3_server, s3_bucket):
    for name, value in s3_server.env(s3_bucket, prefix="prod").items():
        monkeypatch.setenv(name, value)
    store = store_from_config("s3", prefix="sweep-1")
    assert store.backend.prefix == "prod/sweep-1/" and store.backend.bucket == s3_bucket
    assert s3_server.secret_key not in repr(store.backend)
    assert s3_server.access_key not in repr(store.backend)
    _save(store, "run", 1)
    assert store.backend.list("") == [
        "runs/run/round-0001/manifest.json",
        "runs/run/round-0001/model.safetensors",
    ]
    monkeypatch.delenv("SWIPEFL_S3_SECRET_KEY")
    with pytest.raises(CheckpointError, match="SWIPEFL_S3_SECRET_KEY"):
        store_from_config("s3")
    with pytest.raises(CheckpointError, match="unknown checkpoint store"):
        store_from_config("gcs")


def test_local_factory_prefix(tmp_path):
    store = store_from_config("local", root=tmp_path, prefix="sweeps/a")
    _save(store, "run", 1)
    assert (tmp_path / "sweeps/a/runs/run/round-0001/manifest.json").is_file()
    assert not list(tmp_path.rglob("*.tmp-*"))


# -- outages -----------------------------------------------------------------------------------------


def test_resilient_writer_through_s3_outage(s3_server, s3_bucket):
    store = CheckpointStore(_s3_backend(s3_server, s3_bucket))
    writer = ResilientCheckpointWriter(store, max_wait_s=3.0, retry_interval_s=0.2)
    assert writer.save("run", 1, _tensors(1), {"metrics": {"top1": 0.1}}) is not None
    assert writer.auto_release("run", 1, {"top1": 0.1}) is True

    with s3_server.outage():
        t0 = time.monotonic()
        assert writer.save("run", 2, _tensors(2), {"metrics": {"top1": 0.2}}) is None
        assert writer.auto_release("run", 2, {"top1": 0.2}) is None
        assert time.monotonic() - t0 < 8.0
        pending = writer.pending()
        assert [(p["kind"], p["path"]) for p in pending] == [
            ("checkpoint", "runs/run/round-0002"),
            ("release", "runs/run/round-0002"),
        ]
        assert pending[0]["attempts"] >= 1 and "unavailable" in pending[0]["last_error"]
        report = writer.report()
        assert "PENDING" in report and "runs/run/round-0002" in report
        assert writer.flush(0.5) is False

    assert writer.flush(20.0) is True
    assert writer.pending() == [] and "nothing pending" in writer.report()
    assert store.list_rounds("run") == [1, 2]
    np.testing.assert_array_equal(store.load("run", 2).tensors["steps"], np.arange(3))
    assert store.read_release()["round"] == 2


def test_a_release_check_pending_in_an_outage_measures_its_floor_once_the_store_is_back(
    s3_server, s3_bucket
):
    """What a release must beat is measured when the check runs: an outage leaves the check
    pending (not refused against an unmeasurable incumbent), and it runs when S3 is back."""
    store = CheckpointStore(_s3_backend(s3_server, s3_bucket))
    writer = ResilientCheckpointWriter(store, max_wait_s=3.0, retry_interval_s=0.2)
    assert writer.save("run", 1, _tensors(1), {"metrics": {"top1": 0.4}}) is not None
    measured: list = []

    def floor() -> float:
        measured.append(store.read_release())  # StoreUnavailable while S3 is down
        return 0.3

    with s3_server.outage():
        assert writer.auto_release("run", 1, {"top1": 0.4}, must_beat=floor) is None
        assert measured == [] and [p["kind"] for p in writer.pending()] == ["release"]
    assert writer.flush(20.0) is True
    assert measured == [None]  # measured after the outage: no release yet
    assert store.read_release()["round"] == 1  # 0.4 beats 0.3
    assert writer.save("run", 2, _tensors(2), {"metrics": {"top1": 0.5}}) is not None
    assert writer.auto_release("run", 2, {"top1": 0.5}, must_beat=lambda: 0.6) is False
    assert store.read_release()["round"] == 1


class _Switchable:
    """Wraps a backend; while ``down`` every call raises StoreUnavailable."""

    def __init__(self, inner):
        self.inner, self.down = inner, False

    def describe(self):
        return "switchable " + self.inner.describe()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise StoreUnavailable("test outage")
            return attr(*args, **kwargs)

        return call


def test_resilient_writer_spool_survives_restart(tmp_path):
    backend = _Switchable(LocalDirBackend(tmp_path / "store"))
    store = CheckpointStore(backend)
    spool = tmp_path / "spool"
    writer = ResilientCheckpointWriter(store, max_wait_s=1.0, spool_dir=spool)
    backend.down = True
    tensors = _tensors(3)
    assert writer.save("run", 7, tensors, {"metrics": {"top1": 0.7}}) is None
    tensors["steps"][:] = 99  # the pending checkpoint is a snapshot
    assert (spool / "runs/run/round-0007/manifest.json").is_file()
    assert "spooled under" in writer.report()
    # A new process (new writer) picks the spooled checkpoint up.
    backend.down = False
    writer2 = ResilientCheckpointWriter(store, max_wait_s=1.0, spool_dir=spool)
    assert [p["path"] for p in writer2.pending()] == ["runs/run/round-0007"]
    assert writer2.flush(5.0) is True
    np.testing.assert_array_equal(store.load("run", 7).tensors["steps"], np.arange(3))
    assert not (spool / "runs/run/round-0007").exists()


# -- CLI ---------------------------------------------------------------------------------------------


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fl_app.checkpoints", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_local(tmp_path):
    root = str(tmp_path / "ck")
    store = store_from_config("local", root=root)
    for r, top1 in ((1, 0.2), (2, 0.4), (3, 0.3)):
        _save(store, "exp-1", r, top1=top1)
        store.auto_release("exp-1", r, {"top1": top1})

    out = _cli("--root", root, "ls")
    assert out.returncode == 0, out.stderr
    assert "exp-1" in out.stdout and "1 2* 3" in out.stdout and "auto-best" in out.stdout

    out = _cli("--root", root, "show", "exp-1", "2", "--verify")
    assert out.returncode == 0, out.stderr
    assert "runs/exp-1/round-0002" in out.stdout and "released" in out.stdout
    assert '"round": 2' in out.stdout

    out = _cli("--root", root, "promote", "exp-1", "3")
    assert out.returncode == 0 and "pinned" in out.stdout, out.stderr
    assert store.read_release()["round"] == 3 and store.read_release()["pinned"]

    out = _cli("--root", root, "rollback")
    assert out.returncode == 0, out.stderr
    assert "runs/exp-1/round-0003 -> runs/exp-1/round-0002" in out.stdout
    assert store.read_release()["reason"] == "rollback"

    out = _cli("--root", root, "unpin")
    assert out.returncode == 0 and "unpinned" in out.stdout
    assert store.read_release()["pinned"] is False

    out = _cli("--root", root, "history")
    assert out.returncode == 0
    assert [line.split()[1] for line in out.stdout.splitlines()] == [
        "auto-best",
        "auto-best",
        "promote",
        "rollback",
    ]

    for bad in (("show", "nope"), ("promote", "exp-1", "9")):
        out = _cli("--root", root, *bad)
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    out = _cli("--root", str(tmp_path / "empty"), "rollback")
    assert out.returncode == 2 and "no release" in out.stderr


def test_cli_s3(s3_server, s3_bucket):
    env = s3_server.env(s3_bucket, prefix="cli")
    store = CheckpointStore(_s3_backend(s3_server, s3_bucket, prefix="cli"))
    _save(store, "s3-run", 1, top1=0.5)
    store.auto_release("s3-run", 1)
    out = _cli("--store", "s3", "ls", env=env)
    assert out.returncode == 0, out.stderr
    assert "s3-run  rounds: 1*" in out.stdout and s3_bucket in out.stdout
    assert s3_server.secret_key not in out.stdout + out.stderr
    bad = {**env, "SWIPEFL_S3_SECRET_KEY": "wrong-" + uuid.uuid4().hex}
    out = _cli("--store", "s3", "ls", env=bad)
    assert out.returncode == 2 and "refused the credentials" in out.stderr
    assert bad["SWIPEFL_S3_SECRET_KEY"] not in out.stderr
