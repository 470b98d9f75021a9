"""In-process tests of the sidecar's services (the HTTP tests cover the endpoints)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3

import numpy as np
import pytest
from serve_helpers import SMALL_SPEC, release_tensors, synthetic_swipes

from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.decoder.swipe import parse_swipe
from serve.core.config import Settings
from serve.errors import ApiError
from serve.logging import JsonFormatter
from serve.services.device_cache import DeviceCache
from serve.services.ingest import Ingest
from serve.services.metrics import Metrics
from serve.services.model_build import build_decoder
from serve.services.model_manager import ModelManager
from serve.services.parsing import SwipeParser
from serve.services.refusals import CheckpointRefused


def test_settings_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("SWIPEFL_"):
            monkeypatch.delenv(key)
    s = Settings()
    assert s.host == "127.0.0.1"  # loopback unless told otherwise
    assert s.token is None and s.checkpoint_store == "local"
    assert s.quantize is True  # int8 serving unless SWIPEFL_QUANTIZE=false
    monkeypatch.setenv("SWIPEFL_API_TOKEN", "abc-secret")
    monkeypatch.setenv("SWIPEFL_RELOAD_INTERVAL_S", "2.5")
    s = Settings()
    assert s.token == "abc-secret" and "abc-secret" not in repr(s)
    assert s.reload_interval_s == 2.5


class FlakyStore:
    """Fails any commit that contains a swipe with word 'boom', else records the commit."""

    def __init__(self, fail_all: bool = False) -> None:
        self.commits: list[int] = []
        self.fail_all = fail_all
        self.next_id = 0

    def max_id(self) -> int:
        return self.next_id

    def append_submissions(self, submissions, source="device"):
        swipes = [s for sub in submissions for s in sub.swipes]
        if self.fail_all:
            raise sqlite3.OperationalError("disk I/O error")
        if any(s.word == "boom" for s in swipes):
            raise sqlite3.IntegrityError("simulated")
        self.commits.append(len(swipes))
        out = []
        for sub in submissions:
            out.append(list(range(self.next_id + 1, self.next_id + 1 + len(sub.swipes))))
            self.next_id += len(sub.swipes)
        return out


def _swipes(words):
    base = synthetic_swipes(1, seed=1)[0]
    out = []
    for w in words:
        s = parse_swipe(base)
        s.word = w
        out.append(s)
    return out


def test_group_commit_isolates_a_failing_request():
    store = FlakyStore()
    ingest = Ingest(store, Metrics())

    async def scenario():
        # Queue all before the writer starts: they form one group.
        futs = [
            asyncio.ensure_future(ingest.submit(_swipes(["good"]), None, batch=False)),
            asyncio.ensure_future(ingest.submit(_swipes(["boom"]), None, batch=False)),
            asyncio.ensure_future(ingest.submit(_swipes(["fine", "ok"]), None, batch=True)),
        ]
        await asyncio.sleep(0.05)
        ingest.start()
        return await asyncio.gather(*futs, return_exceptions=True)

    good, bad, fine = asyncio.run(scenario())
    ingest.close()
    assert good == [1] and fine == [2, 3]
    assert isinstance(bad, ApiError) and bad.code == "STORE_UNAVAILABLE" and bad.status == 503
    assert ingest.stored == 3


def test_commit_failure_is_503_and_close_refuses_new_requests():
    ingest = Ingest(FlakyStore(fail_all=True), Metrics())
    ingest.start()

    async def one():
        return await ingest.submit(_swipes(["x"]), None, batch=False)

    with pytest.raises(ApiError) as err:
        asyncio.run(one())
    assert err.value.code == "STORE_UNAVAILABLE"
    ingest.close()
    with pytest.raises(ApiError):
        asyncio.run(one())


def _manifest(tensors, spec=SMALL_SPEC):
    return {
        "decoder": spec.to_manifest(),
        "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
    }


def test_build_decoder_checks():
    tensors = release_tensors()
    spec, decoder = build_decoder(_manifest(tensors), tensors, {"kwyjibo": 0.01})
    assert "kwyjibo" in decoder.lexicon
    extra = {**tensors, "extra.weight": np.zeros(3, dtype=np.float32)}
    with pytest.raises(CheckpointRefused, match="names other tensors"):
        build_decoder(_manifest(tensors), extra, None)
    bad = dict(tensors)
    name = next(iter(bad))
    bad[name] = bad[name].copy()
    bad[name].flat[0] = np.inf
    with pytest.raises(CheckpointRefused) as err:
        build_decoder(_manifest(bad), bad, None)
    assert err.value.reason == "non_finite"
    wrong = _manifest(tensors)
    wrong["decoder"] = {**wrong["decoder"], "spec_version": 99}
    with pytest.raises(CheckpointRefused) as err:
        build_decoder(wrong, tensors, None)
    assert err.value.reason == "spec_malformed"  # an unknown spec version


def test_manager_refuses_and_keeps_serving(tmp_path):
    store = CheckpointStore(LocalDirBackend(tmp_path / "ckpt", fsync=False))
    metrics = Metrics()
    manager = ModelManager(lambda: store, tmp_path / "device", metrics)
    assert manager.check().result == "no_release"
    tensors = release_tensors()
    store.save("r", 1, tensors, manifest={"decoder": SMALL_SPEC.to_manifest()})
    store.promote("r", 1)
    assert manager.check().result == "loaded"
    first = manager.current
    assert manager.check().result == "unchanged"
    store.save("r", 2, tensors, manifest={"metrics": {}})  # no decoder section
    store.promote("r", 2)
    result = manager.check()
    assert result.result == "refused" and result.reason == "mismatch"
    assert manager.current is first
    assert manager.check().reason == "refused_before"  # not retried by the watcher
    assert manager.check(force=True).reason == "mismatch"
    assert manager.refused == 2


def test_manager_serves_int8_when_asked_and_float_otherwise(tmp_path):
    """The sidecar's default (SWIPEFL_QUANTIZE=true) serves dynamic-int8 weights; both forms
    pass the test decode and give the same words for the same traces."""
    store = CheckpointStore(LocalDirBackend(tmp_path / "ckpt", fsync=False))
    store.save("r", 1, release_tensors(), manifest={"decoder": SMALL_SPEC.to_manifest()})
    store.promote("r", 1)
    served = {}
    for quantize in (True, False):
        manager = ModelManager(
            lambda: store, tmp_path / f"device-{quantize}", Metrics(), quantize=quantize
        )
        assert manager.check().result == "loaded"
        served[quantize] = manager.current.decoder
    assert "quantized.dynamic" in str(served[True].model.head.graph)
    assert "quantized" not in str(served[False].model.head.graph)
    for swipe in synthetic_swipes(6, seed=9):
        parsed = parse_swipe(swipe)
        words = [
            [w for w, _ in served[q].decode(parsed.points, parsed.keyboard, k=3)]
            for q in (True, False)
        ]
        assert words[0][0] == words[1][0]


def test_device_cache_files_and_refusals(tmp_path):
    """The release cache and the personalized model are checkpoints of the shared format:
    verified on reading, rewritten only for another release, ignored when corrupt."""
    from safetensors.numpy import save as st_save

    cache = DeviceCache(tmp_path / "device")
    assert cache.release() is None and cache.personal() is None
    assert cache.drop_personal() is False
    tensors = release_tensors()
    pointer = {"run_id": "r", "round": 1, "path": "runs/r/round-0001", "sha256": "a" * 64}
    manifest = {"decoder": SMALL_SPEC.to_manifest(), "metrics": {"top1": 0.5}}
    cache.keep_release(pointer, manifest, tensors)
    model = cache.release_dir / "model.safetensors"
    on_disk = json.loads((cache.release_dir / "manifest.json").read_text())
    assert on_disk["kind"] == "release-cache" and on_disk["format_version"] == 1
    assert on_disk["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert on_disk["release"] == pointer and on_disk["manifest"] == manifest
    assert set(on_disk["tensors"]) == set(tensors)
    got, got_pointer, got_manifest = cache.release()
    assert got_pointer == pointer and got_manifest == manifest
    for name, array in tensors.items():
        np.testing.assert_array_equal(got[name], array)
    written = model.stat().st_mtime_ns
    cache.keep_release(pointer, manifest, tensors)  # the same release: not rewritten
    assert model.stat().st_mtime_ns == written
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF
    model.write_bytes(bytes(data))
    assert cache.release() is None
    # A cache written before the shared format (compact JSON) is still read.
    data = st_save(tensors)
    old = {
        "kind": "release-cache",
        "release": pointer,
        "manifest": manifest,
        "format_version": 1,
        "sha256": hashlib.sha256(data).hexdigest(),
        "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
    }
    model.write_bytes(data)
    (cache.release_dir / "manifest.json").write_text(json.dumps(old, sort_keys=True))
    assert cache.release()[1] == pointer

    base = {k: pointer[k] for k in ("run_id", "round", "path", "sha256")}
    cache.keep_personal(tensors, {"metrics": {"heldout": {"mrr": 0.5}}}, base)
    got, personal = cache.personal()
    assert personal["kind"] == "personalized" and personal["base"] == base
    assert personal["metrics"] == {"heldout": {"mrr": 0.5}} and set(got) == set(tensors)
    assert cache.drop_personal() is True and not cache.personal_dir.exists()


def test_parser_caches_keyboards_and_reports_codes():
    parser = SwipeParser(max_points=400)
    data = synthetic_swipes(2, seed=4)
    a = parser.parse(data[0], require_word=True)
    b = parser.parse(data[1], require_word=True)
    assert a.keyboard is b.keyboard  # same spec, same Keyboard object
    with pytest.raises(ApiError) as err:
        parser.parse({**data[0], "points": data[0]["points"] * 30}, require_word=True, index=3)
    assert err.value.extra["reason"] == "TOO_MANY_POINTS" and err.value.extra["index"] == 3
    with pytest.raises(ApiError) as err:
        parser.parse(
            {**data[0], "keyboard": {"layout": "nope", "width": 1, "height": 1}}, require_word=False
        )
    assert err.value.extra["reason"] == "UNKNOWN_LAYOUT"


def test_json_log_lines_carry_no_exception_message():
    formatter = JsonFormatter()
    try:
        raise ValueError("secret word hunter2")
    except ValueError:
        record = logging.LogRecord("serve", logging.ERROR, __file__, 1, "failed", None, None)
        import sys

        record.exc_info = sys.exc_info()
        record.job_id = "j1"
    line = json.loads(formatter.format(record))
    assert line["event"] == "failed" and line["job_id"] == "j1"
    assert line["error_type"] == "ValueError" and "hunter2" not in json.dumps(line)


def test_a_word_pair_table_that_fails_its_manifest_is_left_out_not_fatal(
    tmp_path, monkeypatch, caplog
):
    """A corrupt table costs the sidecar its context prior (logged), never a release."""
    import fl_app.decoder.context as context
    from serve.services.model_build import served_context

    monkeypatch.setattr(context, "DATA", tmp_path)
    context.WordPairPrior([("want", "to", 3.0)]).write(tmp_path / "word-pairs-zz.tsv.gz")
    settings = {"sha256": "0" * 64, "share": 0.9, "weight": 0.3}
    (tmp_path / "word-pairs-zz.json").write_text(json.dumps(settings))
    with caplog.at_level(logging.WARNING, logger="serve.model"):
        assert served_context("zz") is None
    assert "word-pair prior not loaded" in caplog.text
    good = hashlib.sha256((tmp_path / "word-pairs-zz.tsv.gz").read_bytes()).hexdigest()
    (tmp_path / "word-pairs-yy.json").write_text(json.dumps({**settings, "sha256": good}))
    (tmp_path / "word-pairs-zz.tsv.gz").rename(tmp_path / "word-pairs-yy.tsv.gz")
    loaded = served_context("yy")
    assert loaded is not None and loaded.bonus("want", ["to"])[0] > 0
