"""Durability and deletion on real SQLite files: every connection (any thread, any process)
runs the settings the store needs, read back; a deleted swipe leaves no byte behind in the
database file or its WAL; a full disk refuses a write whole."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from store_helpers import FakeClock, file_bytes, files_holding, swipe

from fl_app.swipes.connection import verify_settings
from fl_app.swipes.store import StoreError, StoreFullError, SwipeStore

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600.0

PROBE = """
import json, sys
from fl_app.swipes.store import SwipeStore
with SwipeStore(sys.argv[1], synchronous=sys.argv[2]) as s:
    print(json.dumps(s.settings()))
"""


def _settings_in_another_process(path: Path, level: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), level],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("level", ["FULL", "NORMAL"])
def test_every_connection_reads_back_its_settings(tmp_path, level):
    """FULL is the store's default; NORMAL (for benchmarks) reading back as NORMAL shows the
    level comes from the store, not from how this SQLite was built."""
    path = tmp_path / "s.sqlite"
    expected = {
        "journal_mode": "wal",
        "synchronous": level,
        "fullfsync": True,
        "checkpoint_fullfsync": True,
        "secure_delete": True,
    }
    with SwipeStore(path, synchronous=level) as store:
        store.append(swipe("hello"))
        in_thread: dict = {}
        worker = threading.Thread(target=lambda: in_thread.update(store.settings()))
        worker.start()
        worker.join()
        assert store.settings() == expected
        assert in_thread == expected  # the thread's own connection
        assert _settings_in_another_process(path, level) == expected
    assert SwipeStore(path).settings()["synchronous"] == "FULL"  # the default


def test_a_connection_without_the_settings_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "plain.sqlite")  # rollback journal, no fullfsync
    try:
        with pytest.raises(StoreError, match="journal_mode"):
            verify_settings(conn, "FULL")
    finally:
        conn.close()
    with pytest.raises(ValueError):
        SwipeStore(tmp_path / "s.sqlite", synchronous="OFF")


# -- deletion ------------------------------------------------------------------------------------

GONE = [swipe("jukebox", shift=0.123), swipe("zigzag", shift=0.123)]
KEPT = [swipe("kept", shift=0.456), swipe("remains", shift=0.456)]


def _check_gone_while_open(path: Path) -> None:
    for s in GONE:
        assert files_holding(path, s) == []
    assert all(b"gone-key" not in data for data in file_bytes(path).values())
    for s in KEPT:
        assert files_holding(path, s)


@pytest.mark.parametrize("kind", ["delete_all", "older_than", "max_rows", "max_age"])
def test_deleted_swipes_leave_no_trace_in_the_files(tmp_path, kind):
    """Checked while the store and a reader are still open (as on a device: closing the last
    connection would fold and remove the WAL anyway)."""
    path = tmp_path / "s.sqlite"
    clock = FakeClock()
    limits = {"max_rows": {"max_rows": 2}, "max_age": {"max_age_days": 1.0}}.get(kind, {})
    with SwipeStore(path, clock=clock, **limits) as store, SwipeStore(path) as reader:
        store.append_many(GONE, idempotency_keys=["gone-key-1", "gone-key-2"])
        assert len(reader.load()) == 2  # another connection has read them
        for s in GONE:
            assert files_holding(path, s), "the bytes to look for must be findable"
        clock.now += 2 * 24 * HOUR
        if kind == "delete_all":
            assert store.delete_all() == 2
        elif kind == "older_than":
            cut = datetime.fromtimestamp(clock.now - HOUR, tz=timezone.utc)
            assert store.delete_older_than(cut) == 2
        store.append_many(KEPT)  # max_rows and max_age delete inside this write
        assert [r.swipe.word for r in reader.load()] == ["kept", "remains"]
        _check_gone_while_open(path)
    _check_gone_while_open(path)


def test_a_reader_holding_a_snapshot_delays_the_wipe_until_the_next_write(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path) as store:
        store.append_many(GONE)
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM swipes").fetchone()  # holds the old snapshot
        try:
            assert store.delete_all() == 2  # answers; the WAL cannot be cut yet
        finally:
            reader.execute("COMMIT")
            reader.close()
        store.append_many(KEPT)  # the next write owes the wipe and does it
        _check_gone_while_open(path)


def test_a_full_disk_refuses_the_write_and_stores_nothing(tmp_path):
    with SwipeStore(tmp_path / "s.sqlite") as store:
        first = store.append(swipe("hello"))
        # SQLite's page limit is a real SQLITE_FULL: the same error a full disk gives.
        conn = store._conn()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreFullError):
            store.append_many([swipe("world")] * 200)
        assert [r.id for r in store.load()] == [first]


def test_a_new_store_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path) as store:
        store.append(swipe("hello"))
        for suffix in ("", "-wal", "-shm"):
            mode = os.stat(str(path) + suffix).st_mode & 0o777
            assert mode & 0o077 == 0, f"{path.name}{suffix} is {oct(mode)}"
