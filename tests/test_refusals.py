"""The refused-release list on the device: kept across processes, bounded, and harmless when
its file is damaged."""

from __future__ import annotations

import json

from serve.services.refusals import MAX_REMEMBERED, REFUSALS_FILE, RefusalLog, ReleaseKey


def _key(rnd: int) -> ReleaseKey:
    return ReleaseKey("r", rnd, f"{rnd:064x}")


def test_refusals_survive_a_new_process_and_are_forgotten_when_loaded(tmp_path):
    log = RefusalLog(tmp_path / REFUSALS_FILE)
    log.remember(_key(1), "model_too_large", "too big")
    log.remember(_key(2), "mismatch", "x" * 5000)
    again = RefusalLog(tmp_path / REFUSALS_FILE)  # what a restarted sidecar reads
    assert again.find(_key(1))["reason"] == "model_too_large"
    assert [e["round"] for e in again.entries()] == [2, 1]  # newest first
    assert len(again.entries()[0]["message"]) == 500
    again.forget(_key(1))
    assert RefusalLog(tmp_path / REFUSALS_FILE).find(_key(1)) is None
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files


def test_only_the_newest_refusals_are_kept(tmp_path):
    log = RefusalLog(tmp_path / REFUSALS_FILE)
    for rnd in range(MAX_REMEMBERED + 5):
        log.remember(_key(rnd), "mismatch", "m")
    log.remember(_key(10), "non_finite", "again")  # refused again: moves to the front
    kept = RefusalLog(tmp_path / REFUSALS_FILE).entries()
    assert len(kept) == MAX_REMEMBERED
    assert kept[0]["round"] == 10 and kept[0]["reason"] == "non_finite"
    assert sum(e["round"] == 10 for e in kept) == 1
    assert RefusalLog(tmp_path / REFUSALS_FILE).find(_key(0)) is None


def test_a_damaged_file_starts_an_empty_list(tmp_path, caplog):
    path = tmp_path / REFUSALS_FILE
    for damaged in (b"{not json", b"[]", b'{"version": 9, "refused": []}', b"x" * 300_000):
        path.write_bytes(damaged)
        assert RefusalLog(path).entries() == []
    good = {"run_id": "r", "round": 1, "sha256": "a" * 64, "reason": "mismatch"}
    bad = [{"run_id": "r", "round": None, "sha256": "a"}, "nope", {"round": 2}]
    path.write_text(json.dumps({"version": 1, "refused": [*bad, good]}))
    assert [e["round"] for e in RefusalLog(path).entries()] == [1]
    assert "refused releases unreadable" in caplog.text


def test_a_release_refused_for_its_size_is_tried_again_under_a_larger_cap(tmp_path):
    """The cap is a setting: raising it and restarting loads the release without a forced
    reload; a restart with the same cap does not download it again."""
    from serve_helpers import publish

    from fl_app.checkpoints import CheckpointStore, LocalDirBackend
    from serve.services.metrics import Metrics
    from serve.services.model_manager import ModelManager
    from serve.services.release_fetch import DownloadLimits

    store = CheckpointStore(LocalDirBackend(tmp_path / "ckpt", fsync=False))
    publish(store, "r", 1)  # about 100 KB of tensors

    def manager(max_bytes: int) -> ModelManager:
        limits = DownloadLimits(max_bytes, 30.0)
        return ModelManager(lambda: store, tmp_path / "device", Metrics(), limits=limits)

    first = manager(50_000).check()
    assert first.result == "refused" and first.reason == "DOWNLOAD_TOO_LARGE"
    restarted = manager(50_000)
    assert restarted.check().reason == "refused_before"
    assert restarted.metrics.release_downloads._value.get() == 0
    larger = manager(500_000)
    assert larger.check().result == "loaded"
    assert larger.refusals.entries() == []
