"""One SQLite connection to a swipe store, with its durability and deletion settings verified.

Why each setting, and why each is read back: a setting SQLite does not apply is silently
ignored, and what the store promises (an acknowledged swipe survives a power cut, a deleted
swipe is gone from the files) rests on them. Defaults differ between SQLite builds (Android and
some distributions default WAL databases to `synchronous=NORMAL`), so nothing is left to them.

- `journal_mode=WAL`: the sidecar (writer) and the ClientApp (reader) use the file at once.
- `synchronous=FULL`: every commit fsyncs the WAL before it returns. With NORMAL a commit is
  only ordered, not durable: a power cut may roll back commits the sidecar already acknowledged.
- `fullfsync` and `checkpoint_fullfsync`: on macOS and iOS a plain fsync does not reach the
  platter or flash; F_FULLFSYNC does. Other platforms ignore them (so they read back on all).
- `secure_delete=ON`: deleted rows' bytes are overwritten with zeros, not left in free space.

A new store file is created owner-only (0600) before SQLite opens it; SQLite gives the -wal and
-shm files the database file's permissions, so other users of the machine cannot read swipes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fl_app.swipes.errors import StoreError

SYNCHRONOUS_LEVELS = {"NORMAL": 1, "FULL": 2}
CHECKPOINT_WAIT_MS = 1000


def open_connection(path: Path, *, busy_timeout_s: float, synchronous: str) -> sqlite3.Connection:
    """A connection with every setting applied and read back; raises StoreError otherwise."""
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_LEVELS)}")
    try:
        conn = sqlite3.connect(
            str(path),
            timeout=busy_timeout_s,
            isolation_level=None,  # the store issues BEGIN/COMMIT itself
            check_same_thread=False,  # close() may run in another thread
        )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open swipe store {path}: {exc}") from exc
    with closed_on_failure(conn.close, path):
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA fullfsync = ON")
        conn.execute("PRAGMA checkpoint_fullfsync = ON")
        conn.execute("PRAGMA secure_delete = ON")
        verify_settings(conn, synchronous)
    return conn


@contextmanager
def closed_on_failure(close: Callable[[], None], path: Path) -> Iterator[None]:
    """Opening something that fails closes it again; a database error says which store."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        close()
        raise StoreError(f"cannot open swipe store {path}: {exc}") from exc
    except BaseException:
        close()
        raise


def create_owner_only(path: Path) -> None:
    """Create the (empty) database file readable and writable by its owner only, if missing."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # an existing store (or one another process just created) keeps its mode
    except OSError:
        return  # e.g. a missing directory: SQLite's own open reports it
    os.close(fd)


def read_settings(conn: sqlite3.Connection) -> dict[str, object]:
    """The connection's durability and deletion settings as SQLite reports them."""
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    names = {v: k for k, v in SYNCHRONOUS_LEVELS.items()} | {0: "OFF", 3: "EXTRA"}
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower(),
        "synchronous": names.get(level, str(level)),
        "fullfsync": bool(conn.execute("PRAGMA fullfsync").fetchone()[0]),
        "checkpoint_fullfsync": bool(conn.execute("PRAGMA checkpoint_fullfsync").fetchone()[0]),
        "secure_delete": bool(conn.execute("PRAGMA secure_delete").fetchone()[0]),
    }


def verify_settings(conn: sqlite3.Connection, synchronous: str) -> None:
    """Raise StoreError unless the connection reports exactly the settings the store needs."""
    expected = {
        "journal_mode": "wal",
        "synchronous": synchronous,
        "fullfsync": True,
        "checkpoint_fullfsync": True,
        "secure_delete": True,
    }
    got = read_settings(conn)
    wrong = {k: got[k] for k in expected if got[k] != expected[k]}
    if wrong:
        raise StoreError(f"SQLite did not apply the swipe store's settings: {wrong}")


def truncate_wal(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and cut the WAL file to zero bytes: after a deletion, the
    deleted rows' old page images leave the -wal file. Returns False when a reader still held an
    old snapshot after CHECKPOINT_WAIT_MS (the caller tries again later)."""
    (busy_timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
    return busy == 0
