"""The local swipe store: one SQLite file the sidecar writes and the ClientApp trains on.

Why SQLite in WAL mode: the sidecar (writer) and a ClientApp process (reader) use the same file
at once; WAL lets readers run while a writer commits, and `busy_timeout` makes concurrent
writers wait instead of failing.

The on-disk layout (schema, row encoding, the per-row split) is `fl_app.swipes.format`; this
module is the store that moves rows in and out: connections, transactions, the schema guard,
appends with idempotency keys, reads by split, the training marker, deletion and retention.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

from fl_app.decoder.errors import SwipeError
from fl_app.decoder.swipe import DEFAULT_MAX_POINTS, Swipe
from fl_app.swipes.format import (
    SCHEMA_VERSION,
    SPLITS,
    SWIPES_SCHEMA,
    RowCodec,
    StoredSwipe,
    split_u,
)

_MARKER_KEY = "trained_up_to"
_MAX_KEY_LEN = 255
_MAX_SOURCE_LEN = 64


class StoreError(RuntimeError):
    """The store file cannot be used (not a database, closed store, ...)."""


class StoreSchemaError(StoreError):
    """The file's schema is newer than this code understands (or unreadable)."""


class SwipeStore:
    """SQLite swipe store, safe for one writer and many readers across threads and processes.

    Each thread (and each process after a fork) gets its own connection. `max_rows` and
    `max_age_days` are retention limits applied after every append; `heldout_fraction` only
    affects how rows are split when read, never what is stored.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_points: int = DEFAULT_MAX_POINTS,
        max_rows: int | None = None,
        max_age_days: float | None = None,
        heldout_fraction: float = 0.1,
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError("SwipeStore needs a file path (connections are per thread)")
        if int(max_points) < 2:
            raise ValueError("max_points must be at least 2")
        if max_rows is not None and int(max_rows) < 1:
            raise ValueError("max_rows must be positive or None")
        if max_age_days is not None and not (math.isfinite(max_age_days) and max_age_days > 0):
            raise ValueError("max_age_days must be a positive number or None")
        if not (0.0 <= float(heldout_fraction) <= 1.0):
            raise ValueError("heldout_fraction must lie in [0, 1]")
        self.path = Path(path)
        self.max_points = int(max_points)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.max_age_days = None if max_age_days is None else float(max_age_days)
        self.heldout_fraction = float(heldout_fraction)
        self.busy_timeout_s = float(busy_timeout_s)
        self._clock = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._rows = RowCodec()
        self._init_schema()

    # -- connections and transactions ------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # close() may run in another thread
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # Deleted swipes are user data: overwrite their pages instead of leaving them free.
            conn.execute("PRAGMA secure_delete = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open swipe store {self.path}: {exc}") from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("swipe store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE takes the write lock up front (no upgrade deadlocks)."""
        conn = self._conn()
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this store opened (call it when no thread uses the store)."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> SwipeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------

    def _read_version(self, conn: sqlite3.Connection) -> int | None:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return None
        try:
            return int(row[0])
        except (TypeError, ValueError) as exc:
            raise StoreSchemaError(f"{self.path}: unreadable schema_version {row[0]!r}") from exc

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"{self.path} has swipe-store schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this code supports; upgrade swipe-fl to open it"
            )

    def _init_schema(self) -> None:
        try:
            # Readers should not need the write lock: look first, create only if missing.
            version = self._read_version(self._conn())
            if version is None:
                with self._tx() as conn:
                    version = self._read_version(conn)  # another process may have won
                    if version is None:
                        conn.execute(
                            "CREATE TABLE IF NOT EXISTS meta "
                            "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                        )
                        for stmt in SWIPES_SCHEMA.split(";"):
                            if stmt.strip():
                                conn.execute(stmt)
                        conn.execute(
                            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),),
                        )
                        version = SCHEMA_VERSION
            self._check_version(version)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"cannot open swipe store {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    @property
    def schema_version(self) -> int:
        version = self._read_version(self._conn())
        return SCHEMA_VERSION if version is None else version

    # -- writing -----------------------------------------------------------------------------

    def append(
        self,
        swipe: Swipe | dict[str, Any],
        *,
        idempotency_key: str | None = None,
        source: str = "device",
    ) -> int:
        """Store one labelled swipe; returns its id (the existing id for a known key)."""
        return self._append([swipe], [idempotency_key], source, batch=False)[0]

    def append_many(
        self,
        items: Sequence[Swipe | dict[str, Any]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        source: str = "device",
    ) -> list[int]:
        """Store swipes in one transaction: all or none.

        A bad row raises its SwipeError subclass with `index` set (and `swipes[i]:` in the
        message). A key already stored (earlier, by another process, or earlier in this batch)
        yields the existing id and stores nothing. Retention runs in the same transaction, so
        with a tight `max_rows` returned ids may already be gone.
        """
        items = list(items)
        if idempotency_keys is None:
            keys: list[str | None] = [None] * len(items)
        else:
            keys = list(idempotency_keys)
            if len(keys) != len(items):
                raise ValueError("idempotency_keys must have one entry per swipe")
        return self._append(items, keys, source, batch=True)

    def _append(
        self,
        items: list[Swipe | dict[str, Any]],
        keys: list[str | None],
        source: str,
        *,
        batch: bool,
    ) -> list[int]:
        for key in keys:
            if key is not None and (not isinstance(key, str) or not key or len(key) > _MAX_KEY_LEN):
                raise ValueError(f"idempotency keys must be 1..{_MAX_KEY_LEN} character strings")
        if not isinstance(source, str) or not source or len(source) > _MAX_SOURCE_LEN:
            raise ValueError(f"source must be a 1..{_MAX_SOURCE_LEN} character string")
        if not items:
            return []
        # Validate everything before taking the write lock.
        rows = []
        for i, item in enumerate(items):
            try:
                rows.append(self._rows.encode(item, self.max_points))
            except SwipeError as exc:
                exc.index = i  # type: ignore[attr-defined]
                if batch:
                    exc.args = (f"swipes[{i}]: {exc}",)
                raise
        now = float(self._clock())
        ids: list[int] = []
        with self._tx() as conn:
            for (kb_json, blob, n, word), key in zip(rows, keys, strict=True):
                if key is not None:
                    found = conn.execute(
                        "SELECT id FROM swipes WHERE idempotency_key = ?", (key,)
                    ).fetchone()
                    if found is not None:
                        ids.append(int(found[0]))
                        continue
                cur = conn.execute(
                    "INSERT INTO swipes (created_at, keyboard, points, n_points, word, source,"
                    " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (now, kb_json, blob, n, word, source, key),
                )
                rid = int(cur.lastrowid or 0)
                conn.execute("UPDATE swipes SET split_u = ? WHERE id = ?", (split_u(rid), rid))
                ids.append(rid)
            self._retention(conn)
        return ids

    # -- reading -----------------------------------------------------------------------------

    def _where(self, split: str | None, marker: int | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
            clauses.append("split_u < ?" if split == "heldout" else "split_u >= ?")
            params.append(self.heldout_fraction)
        if marker is not None:
            clauses.append("id > ?")
            params.append(marker)
        return (" AND ".join(clauses) or "1"), params

    def count(self, *, split: str | None = None, new_only: bool = False) -> int:
        """Rows in a split (None: all); new_only counts rows newer than the training marker."""
        with self._tx("DEFERRED") as conn:
            marker = self._marker(conn) if new_only else None
            where, params = self._where(split, marker)
            return int(
                conn.execute(f"SELECT count(*) FROM swipes WHERE {where}", params).fetchone()[0]
            )

    def iter_swipes(
        self,
        *,
        split: str | None = None,
        new_only: bool = False,
        batch_size: int = 512,
        up_to_id: int | None = None,
    ) -> Iterator[StoredSwipe]:
        """Rows in id order, read in batches without holding a transaction open.

        The set is fixed when iteration starts (rows up to the max id then, or `up_to_id` if
        lower; marker then): rows appended meanwhile are not included, rows deleted meanwhile
        may be skipped. A caller that snapshots `max_id()` first reads exactly that snapshot.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        with self._tx("DEFERRED") as conn:
            marker = self._marker(conn) if new_only else None
            where, params = self._where(split, marker)  # validates split eagerly
            upper = conn.execute("SELECT max(id) FROM swipes").fetchone()[0]
        if upper is not None and up_to_id is not None:
            upper = min(upper, int(up_to_id))
        return self._iter(where, params, upper, batch_size)

    def _iter(
        self, where: str, params: list[Any], upper: int | None, batch_size: int
    ) -> Iterator[StoredSwipe]:
        if upper is None:
            return
        last = 0
        while True:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, created_at, source, keyboard, points, word, idempotency_key"
                    f" FROM swipes WHERE {where} AND id > ? AND id <= ? ORDER BY id LIMIT ?",
                    [*params, last, upper, batch_size],
                )
                .fetchall()
            )
            for row in rows:
                yield self._rows.decode(row)
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def load(
        self,
        *,
        split: str | None = None,
        new_only: bool = False,
        limit: int | None = None,
        up_to_id: int | None = None,
    ) -> list[StoredSwipe]:
        """All matching rows (or the first `limit`) as a list, in id order."""
        batch = 512 if limit is None else max(1, min(512, limit))
        it = self.iter_swipes(split=split, new_only=new_only, batch_size=batch, up_to_id=up_to_id)
        return list(it if limit is None else islice(it, limit))

    def max_id(self) -> int:
        """The newest stored row id (0 when empty); pass it to mark_trained after a round."""
        row = self._conn().execute("SELECT max(id) FROM swipes").fetchone()
        return int(row[0] or 0)

    # -- training marker ---------------------------------------------------------------------

    @staticmethod
    def _marker(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_MARKER_KEY,)).fetchone()
        return int(row[0]) if row else 0

    def training_marker(self) -> int:
        """Newest row id used by a finished training round (0: never trained)."""
        return self._marker(self._conn())

    def mark_trained(self, up_to_id: int | None = None) -> int:
        """Record that training used rows up to `up_to_id`; returns the marker now.

        Pass the max id the round actually read: the default (the current max id) would also
        cover rows the sidecar appended while training ran. The marker never moves backwards.
        """
        with self._tx() as conn:
            old = self._marker(conn)
            if up_to_id is None:
                target = int(conn.execute("SELECT max(id) FROM swipes").fetchone()[0] or 0)
            else:
                target = int(up_to_id)
                seq = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'swipes'"
                ).fetchone()
                issued = int(seq[0]) if seq else 0
                if target < 0 or target > issued:
                    raise ValueError(f"up_to_id {target} is not an issued row id (max {issued})")
            new = max(old, target)
            if new != old:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (_MARKER_KEY, str(new)),
                )
            return new

    def new_since_training(self) -> int:
        """Rows newer than the training marker."""
        return self.count(new_only=True)

    # -- deletion and retention --------------------------------------------------------------

    def delete_all(self) -> int:
        """Delete every swipe (the marker stays; ids are never reused)."""
        with self._tx() as conn:
            n = conn.execute("DELETE FROM swipes").rowcount
        self._checkpoint()
        return n

    def delete_older_than(self, when: datetime) -> int:
        """Delete rows created strictly before `when` (a naive datetime is taken as UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM swipes WHERE created_at < ?", (when.timestamp(),)
            ).rowcount

    def enforce_retention(self) -> int:
        """Apply max_age_days and max_rows (oldest ids go first); returns rows deleted."""
        with self._tx() as conn:
            return self._retention(conn)

    def _retention(self, conn: sqlite3.Connection) -> int:
        # Cheap when nothing is due: min()/max() are index lookups, so appends stay fast.
        deleted = 0
        if self.max_age_days is not None:
            cutoff = float(self._clock()) - self.max_age_days * 86400.0
            oldest = conn.execute("SELECT min(created_at) FROM swipes").fetchone()[0]
            if oldest is not None and oldest < cutoff:
                deleted += conn.execute(
                    "DELETE FROM swipes WHERE created_at < ?", (cutoff,)
                ).rowcount
        if self.max_rows is not None:
            lo, hi = conn.execute("SELECT min(id), max(id) FROM swipes").fetchone()
            if lo is not None and hi - lo + 1 > self.max_rows:
                row = conn.execute(
                    "SELECT id FROM swipes ORDER BY id DESC LIMIT 1 OFFSET ?", (self.max_rows,)
                ).fetchone()
                if row is not None:
                    deleted += conn.execute("DELETE FROM swipes WHERE id <= ?", (row[0],)).rowcount
        return deleted

    def _checkpoint(self) -> None:
        """Best effort: fold the WAL back so deleted rows' old pages leave the -wal file."""
        try:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass  # a busy reader; the next checkpoint will do it

    # -- summary -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts for logs and the sidecar's status endpoint (no words, no traces)."""
        with self._tx("DEFERRED") as conn:
            marker = self._marker(conn)
            total, heldout, new, max_id = conn.execute(
                "SELECT count(*), coalesce(sum(split_u < ?), 0), coalesce(sum(id > ?), 0),"
                " coalesce(max(id), 0) FROM swipes",
                (self.heldout_fraction, marker),
            ).fetchone()
        return {
            "total": int(total),
            "train": int(total) - int(heldout),
            "heldout": int(heldout),
            "new_since_training": int(new),
            "marker": marker,
            "max_id": int(max_id),
            "heldout_fraction": self.heldout_fraction,
            "schema_version": SCHEMA_VERSION,
        }
