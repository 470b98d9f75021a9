"""Bounded checkpoint reads on real files and a real S3 server: byte caps, one deadline per
download, only the files asked for, strict release pointers, and minio called by keyword."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest
from slow_proxy import SlowProxy

from fl_app.checkpoints import (
    RELEASE_KEY,
    CheckpointCorrupt,
    CheckpointStore,
    DownloadTimeout,
    DownloadTooLarge,
    LocalDirBackend,
    PointerMalformed,
    ReadLimit,
    S3Backend,
    UnsupportedFormat,
    check_pointer,
)
from fl_app.checkpoints.format import encode_json
from fl_app.checkpoints.limits import read_limited

ROOT = Path(__file__).resolve().parent.parent
STATE = "strategy_state.safetensors"


def _tensors(n: int = 1000) -> dict[str, np.ndarray]:
    return {"w": np.arange(n, dtype=np.float32)}


def _local(tmp_path) -> CheckpointStore:
    return CheckpointStore(LocalDirBackend(tmp_path / "store", fsync=False))


def test_local_read_is_refused_by_size_before_reading(tmp_path):
    backend = LocalDirBackend(tmp_path, fsync=False)
    backend.put_bytes("a/blob", b"x" * 5000)
    assert backend.get_bytes("a/blob", limit=ReadLimit(max_bytes=5000)) == b"x" * 5000
    with pytest.raises(DownloadTooLarge, match="above the cap of 4,999 bytes"):
        backend.get_bytes("a/blob", limit=ReadLimit(max_bytes=4999))
    with pytest.raises(DownloadTimeout):
        backend.get_bytes("a/blob", limit=ReadLimit(deadline=time.monotonic() - 1))


def test_streamed_read_stops_at_the_cap_and_the_deadline(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"y" * 1_000_000)
    with path.open("rb") as fh:
        with pytest.raises(DownloadTooLarge):
            read_limited(fh.read1, ReadLimit(max_bytes=300_000), "blob")
        assert fh.tell() < 300_000 + 256 * 1024  # stopped within one chunk of the cap
    calls = []

    def slow(n: int) -> bytes:
        calls.append(n)
        time.sleep(0.05)
        return b"z" * 10

    with pytest.raises(DownloadTimeout):
        read_limited(slow, ReadLimit.within(None, 0.3), "slow")
    assert len(calls) < 12  # each piece checked against the whole download's deadline


def test_load_without_extras_reads_only_manifest_and_tensors(tmp_path):
    store = _local(tmp_path)
    store.save("r", 1, _tensors(), {"decoder": {}}, extra={STATE: b"state" * 1000})
    (store.backend.root / f"runs/r/round-0001/{STATE}").unlink()  # never needed by a reader
    ckpt = store.load("r", 1, extras=False)
    assert ckpt.extra == {} and set(ckpt.tensors) == {"w"}
    with pytest.raises(CheckpointCorrupt, match=STATE):
        store.load("r", 1)  # the ServerApp's resume still needs (and checks) it


def test_tensors_file_capped_at_its_declared_size(tmp_path):
    store = _local(tmp_path)
    store.save("r", 1, _tensors(), {})
    model = store.backend.root / "runs/r/round-0001/model.safetensors"
    model.write_bytes(model.read_bytes() + b"\0" * 10_000_000)  # bigger than the manifest says
    with pytest.raises(DownloadTooLarge):
        store.load("r", 1, limit=ReadLimit(max_bytes=100_000_000))
    with pytest.raises(CheckpointCorrupt):  # without a limit: read whole, then the sha256 fails
        store.load("r", 1)


def test_manifest_checked_before_the_tensors_are_downloaded(tmp_path):
    store = _local(tmp_path)
    store.save("r", 1, _tensors(), {"decoder": {"hidden": 16384}})
    (store.backend.root / "runs/r/round-0001/model.safetensors").unlink()
    seen = []

    def refuse(manifest):
        seen.append(manifest["decoder"])
        raise ValueError("too big")

    with pytest.raises(ValueError, match="too big"):  # not "incomplete": tensors never read
        store.load("r", 1, check_manifest=refuse)
    assert seen == [{"hidden": 16384}]


def test_manifest_and_pointer_have_their_own_caps(tmp_path):
    store = _local(tmp_path)
    store.save("r", 1, _tensors(), {"notes": "n" * 2_000_000})
    with pytest.raises(DownloadTooLarge):
        store.load("r", 1, limit=ReadLimit(max_bytes=100_000_000))  # manifest: 1 MiB at most
    store.backend.put_bytes(RELEASE_KEY, b'{"pad": "' + b"p" * 100_000 + b'"}')
    with pytest.raises(DownloadTooLarge):
        store.read_release()  # for every reader: a pointer is a few hundred bytes


GOOD = {
    "format_version": 1,
    "run_id": "r",
    "round": 3,
    "path": "runs/r/round-0003",
    "sha256": "a" * 64,
}
MALFORMED = {
    "round null": {"round": None},
    "round string": {"round": "3"},
    "round bool": {"round": True},
    "round negative": {"round": -1},
    "no run_id": {"run_id": None},
    "run_id with a slash": {"run_id": "../r"},
    "path elsewhere": {"path": "runs/other/round-0003"},
    "path traversal": {"path": "../../etc"},
    "sha256 short": {"sha256": "abc"},
    "sha256 upper case": {"sha256": "A" * 64},
    "sha256 number": {"sha256": 12},
    "no format_version": {"format_version": None},
    "format_version string": {"format_version": "1"},
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pointers_are_refused_naming_the_field(change):
    assert check_pointer(dict(GOOD)) == GOOD
    with pytest.raises(PointerMalformed):
        check_pointer({**GOOD, **change})


def test_unknown_pointer_version_is_unsupported_and_promote_repairs_a_bad_pointer(tmp_path):
    with pytest.raises(UnsupportedFormat, match="format_version 2"):
        check_pointer({**GOOD, "format_version": 2})
    store = _local(tmp_path)
    store.save("r", 1, _tensors(), {})
    store.backend.put_bytes(RELEASE_KEY, encode_json({**GOOD, "round": None}))
    pointer = store.promote("r", 1)  # the operator's way out
    assert check_pointer(store.read_release()) == pointer


# -- S3 --------------------------------------------------------------------------------------


def _s3(s3_server, bucket, endpoint=None, **kwargs) -> S3Backend:
    return S3Backend(
        endpoint or s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket, **kwargs
    )


def test_s3_read_refused_by_content_length(s3_server, s3_bucket):
    backend = _s3(s3_server, s3_bucket)
    backend.put_bytes("big", b"b" * 3_000_000)
    assert backend.get_bytes("big", limit=ReadLimit(max_bytes=3_000_000)) == b"b" * 3_000_000
    started = time.monotonic()
    with pytest.raises(DownloadTooLarge):
        backend.get_bytes("big", limit=ReadLimit(max_bytes=1_000_000))
    assert time.monotonic() - started < 5
    assert backend.get_bytes("big") == b"b" * 3_000_000  # the connection pool still works


def test_s3_download_stops_at_its_deadline_though_every_read_is_quick(s3_server, s3_bucket):
    """A store trickling bytes (each piece well inside the 20 s read timeout) is stopped by the
    whole-download deadline, not after hours of quick reads."""
    _s3(s3_server, s3_bucket).put_bytes("slow", b"s" * 2_000_000)
    host, port = s3_server.endpoint.split(":")
    with SlowProxy(host, int(port), bytes_per_s=50_000) as proxy:
        backend = _s3(s3_server, s3_bucket, proxy.endpoint, read_timeout=20.0)
        started = time.monotonic()
        with pytest.raises(DownloadTimeout):
            backend.get_bytes("slow", limit=ReadLimit.within(None, 1.5))
        took = time.monotonic() - started
    assert 1.4 < took < 6.0, took  # about the deadline (40 s at this rate without one)


def test_s3_store_loads_only_what_it_is_asked(s3_server, s3_bucket):
    store = CheckpointStore(_s3(s3_server, s3_bucket))
    store.save("r", 1, _tensors(), {}, extra={STATE: b"state"})
    store.backend.delete(f"runs/r/round-0001/{STATE}")
    limit = ReadLimit.within(10_000_000, 30)
    assert store.load("r", 1, extras=False, limit=limit).extra == {}
    with pytest.raises(CheckpointCorrupt):
        store.load("r", 1)


# -- minio by keyword ------------------------------------------------------------------------

MINIO_METHODS = {
    "bucket_exists",
    "make_bucket",
    "put_object",
    "get_object",
    "stat_object",
    "list_objects",
    "remove_object",
    "fput_object",
    "fget_object",
    "remove_bucket",
    "list_buckets",
    "copy_object",
    "presigned_get_object",
    "set_bucket_policy",
}


def _positional_minio_calls(source: str, label: str) -> list[str]:
    tree = ast.parse(source, label)
    imports_minio = any(
        isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minio")
        for node in ast.walk(tree)
    )
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in MINIO_METHODS or (name == "Minio" and imports_minio):
            found.append(f"{label}:{node.lineno} {name}")
    return found


def test_every_minio_call_passes_its_arguments_by_keyword():
    """minio 7.2.19 made every argument keyword-only (7.2.20 withdrew it; 8.0 plans it)."""
    dirs = ("fl_app", "serve", "tests", "bench", "scripts")
    files = [p for d in dirs for p in (ROOT / d).rglob("*.py")]
    assert ROOT / "fl_app/checkpoints/s3.py" in files
    offenders = [
        hit
        for path in files
        for hit in _positional_minio_calls(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert offenders == []


def test_the_keyword_check_catches_a_positional_call():
    sample = "from minio import Minio\nc = Minio('h')\nc.get_object('b', 'o')\n"
    assert len(_positional_minio_calls(sample, "sample")) == 2
