"""The device's release cache is replaced whole: at every moment, through a crash (SIGKILL in
the middle of a write) or a failed write, a reader finds a complete, verified cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from serve_helpers import ROOT, SMALL_SPEC, release_tensors

from fl_app.checkpoints.dir_swap import readable_dir
from serve.services.device_cache import DeviceCache

MANIFEST = {"decoder": SMALL_SPEC.to_manifest(), "metrics": {}}


def _pointer(rnd: int) -> dict:
    return {"run_id": "r", "round": rnd, "path": f"runs/r/round-{rnd:04d}", "sha256": "a" * 64}


def test_a_reader_never_finds_the_cache_missing_or_partial(tmp_path):
    cache = DeviceCache(tmp_path)
    tensors = {1: release_tensors(seed=1), 2: release_tensors(seed=2)}
    cache.keep_release(_pointer(1), MANIFEST, tensors[1])
    stop = threading.Event()
    seen: list[int | None] = []
    mixed: list[int] = []

    def read() -> None:
        reader = DeviceCache(tmp_path)  # what a restarting process would read
        while not stop.is_set():
            found = reader.release()
            seen.append(None if found is None else found[1]["round"])
            if found is not None:  # the tensors are the pointer's own
                rnd = found[1]["round"]
                if any(not np.array_equal(v, tensors[rnd][k]) for k, v in found[0].items()):
                    mixed.append(rnd)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(40):
            rnd = 2 if i % 2 == 0 else 1
            cache.keep_release(_pointer(rnd), MANIFEST, tensors[rnd])
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 20 and None not in seen and not mixed
    assert {1, 2} <= set(seen)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted([os.readlink(tmp_path / "release"), "release"])


WRITER = """
import sys
from serve_helpers import SMALL_SPEC, release_tensors
from serve.services.device_cache import DeviceCache
cache = DeviceCache(sys.argv[1])
tensors = {1: release_tensors(seed=1), 2: release_tensors(seed=2)}
manifest = {"decoder": SMALL_SPEC.to_manifest(), "metrics": {}}
print("ready", flush=True)
i = 0
while True:
    rnd = 1 + i % 2
    p = {"run_id": "r", "round": rnd, "path": f"runs/r/round-{rnd:04d}", "sha256": "a" * 64}
    cache.keep_release(p, manifest, tensors[rnd])
    i += 1
"""


def test_sigkill_in_the_middle_of_replacing_leaves_a_complete_cache(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    for attempt in range(4):
        device = tmp_path / f"device-{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(device)],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
        )
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 30
        while readable_dir(device / "release") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 + 0.037 * attempt)  # somewhere in a later replacement
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        found = DeviceCache(device).release()
        assert found is not None, f"no complete cache after SIGKILL (attempt {attempt})"
        assert found[1]["round"] in (1, 2)


def test_a_failed_write_keeps_the_previous_cache(tmp_path):
    cache = DeviceCache(tmp_path)
    cache.keep_release(_pointer(1), MANIFEST, release_tensors(seed=1))
    unstorable = {"w": np.array([object()], dtype=object)}
    cache.keep_release(_pointer(2), MANIFEST, unstorable)  # logged, not raised
    assert cache.release()[1]["round"] == 1
    others = [p.name for p in tmp_path.iterdir() if p.name != "release"]
    assert others == [os.readlink(tmp_path / "release")]  # the failed copy is gone


def test_a_cache_written_as_a_plain_directory_is_read_then_replaced(tmp_path):
    """Devices that cached a release before this change have a real ``release/`` directory."""
    from fl_app.checkpoints.format import write_checkpoint_dir

    meta = {"kind": "release-cache", "release": _pointer(1), "manifest": MANIFEST}
    write_checkpoint_dir(tmp_path / "release", release_tensors(seed=1), meta)
    cache = DeviceCache(tmp_path)
    assert cache.release()[1]["round"] == 1
    os.rename(tmp_path / "release", tmp_path / ".release-legacy")  # a crash mid-migration
    assert cache.release()[1]["round"] == 1
    os.rename(tmp_path / ".release-legacy", tmp_path / "release")
    cache.keep_release(_pointer(2), MANIFEST, release_tensors(seed=2))
    assert (tmp_path / "release").is_symlink() and cache.release()[1]["round"] == 2
    assert not (tmp_path / ".release-legacy").exists()


def test_personal_model_replaced_and_dropped_whole(tmp_path):
    cache = DeviceCache(tmp_path)
    base = _pointer(1)
    cache.keep_personal(release_tensors(seed=1), {"metrics": {"n": 1}}, base)
    cache.keep_personal(release_tensors(seed=2), {"metrics": {"n": 2}}, base)
    assert cache.personal()[1]["metrics"] == {"n": 2}
    assert cache.drop_personal() is True
    assert cache.personal() is None and cache.drop_personal() is False
    assert not any(p.name.startswith(".personal") for p in tmp_path.iterdir())
