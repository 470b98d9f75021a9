"""The local swipe store: one SQLite file the sidecar writes and the ClientApp trains on.

Why SQLite in WAL mode: the sidecar (writer) and a ClientApp process (reader) use the same file
at once; WAL lets readers run while a writer commits, and `busy_timeout` makes concurrent
writers wait instead of failing.

What it promises (threat model: docs/security.md): a write that returned is on
stable storage (`synchronous=FULL`, read back on every connection); nothing a write returns is
deleted by its own retention, and a write that cannot be kept whole is refused whole; one key
names one body; deleted rows leave the database file and its WAL. The parts: `connection`
(settings), `schema` (create, migrate), `format` (a row's bytes), `keys` (namespaces,
fingerprints), `writes` (one write's rows), `retention` (what the limits delete, the clock rule).
"""

from __future__ import annotations

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
from fl_app.swipes import retention
from fl_app.swipes.connection import (
    SYNCHRONOUS_LEVELS,
    closed_on_failure,
    create_owner_only,
    open_connection,
    read_settings,
    truncate_wal,
)
from fl_app.swipes.errors import (
    CapacityError,
    IdempotencyConflictError,
    StoreError,
    StoreFullError,
    StoreSchemaError,
)
from fl_app.swipes.format import (
    SCHEMA_VERSION,
    RowCodec,
    StoredSwipe,
    check_settings,
    row_counts,
    where_clause,
)
from fl_app.swipes.keys import (
    EncodedRow,
    Submission,
    check_raw_key,
    fingerprint,
)
from fl_app.swipes.schema import ensure_schema, read_version
from fl_app.swipes.writes import insert_rows, submission_rows

__all__ = [
    "CapacityError",
    "IdempotencyConflictError",
    "StoreError",
    "StoreFullError",
    "StoreSchemaError",
    "Submission",
    "SwipeStore",
]

_MARKER_KEY = "trained_up_to"
_MAX_SOURCE_LEN = 64
_SQLITE_FULL = 13


class SwipeStore:
    """SQLite swipe store, safe for one writer and many readers across threads and processes.

    Each thread (and each process after a fork) gets its own connection, each with the settings
    of `fl_app.swipes.connection` verified. `max_rows` and `max_age_days` are retention limits
    applied in every write (`fl_app.swipes.retention`); `heldout_fraction` only affects how rows
    are split when read, never what is stored. `split_rule` says which rows are held out:
    "hash", a fixed pseudo-random share by row id (rows keep their side forever), or "newest",
    the newest share by row order (judging a model on what a person swiped after the rows it
    trained on, as a keyboard is used). `synchronous="NORMAL"` exists for benchmarks that
    measure what FULL costs; it gives up durability on power loss.
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
        synchronous: str = "FULL",
        split_rule: str = "hash",
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError("SwipeStore needs a file path (connections are per thread)")
        check_settings(max_points, max_rows, max_age_days, heldout_fraction, split_rule)
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_LEVELS)}")
        self.path = Path(path)
        self.max_points = int(max_points)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.max_age_days = None if max_age_days is None else float(max_age_days)
        self.heldout_fraction = float(heldout_fraction)
        self.split_rule = split_rule
        self.busy_timeout_s = float(busy_timeout_s)
        self.synchronous = synchronous
        self._policy = retention.Policy(self.max_rows, self.max_age_days)
        self._clock = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._wal_dirty = False  # a deletion's WAL truncation is still owed
        self._rows = RowCodec()
        create_owner_only(self.path)
        self._init_schema()

    # -- connections and transactions ------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("swipe store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = open_connection(
                self.path, busy_timeout_s=self.busy_timeout_s, synchronous=self.synchronous
            )
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE takes the write lock up front (no upgrade deadlocks).

        A full disk (SQLITE_FULL) becomes StoreFullError; the transaction is rolled back."""
        conn = self._conn()
        try:
            conn.execute(f"BEGIN {mode}")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "is full" in str(exc):
                raise StoreFullError(f"swipe store {self.path} is full: {exc}") from exc
            raise

    def settings(self) -> dict[str, object]:
        """The calling thread's connection settings as SQLite reports them (synchronous, ...)."""
        return read_settings(self._conn())

    def close(self) -> None:
        """Close every connection this store opened (call it when no thread uses the store)."""
        if not self._closed and self._wal_dirty:
            self._truncate_wal()
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

    def _init_schema(self) -> None:
        with closed_on_failure(self.close, self.path):
            ensure_schema(self._conn(), self.path)

    @property
    def schema_version(self) -> int:
        version = read_version(self._conn(), self.path)
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
        return self._append_rows([swipe], [idempotency_key], source, batch=False)[0]

    def append_many(
        self,
        items: Sequence[Swipe | dict[str, Any]],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        source: str = "device",
    ) -> list[int]:
        """Store swipes in one transaction: all or none, each under its own raw key.

        A bad row raises its SwipeError subclass with `index` set (and `swipes[i]:` in the
        message). A key already stored (earlier, by another process, or earlier in this batch)
        yields the existing id and stores nothing; stored with a different swipe, it raises
        IdempotencyConflictError. Keys in the request namespaces (`single:`, `batch:`) are
        refused: requests go through `append_submissions`.
        """
        items = list(items)
        keys = [None] * len(items) if idempotency_keys is None else list(idempotency_keys)
        if len(keys) != len(items):
            raise ValueError("idempotency_keys must have one entry per swipe")
        return self._append_rows(items, keys, source, batch=True)

    def _append_rows(
        self,
        items: list[Swipe | dict[str, Any]],
        keys: list[str | None],
        source: str,
        *,
        batch: bool,
    ) -> list[int]:
        for key in keys:
            check_raw_key(key)
        rows = self._encode(items, batch=batch)
        prints = [
            None if key is None else fingerprint([row], batch=False)
            for row, key in zip(rows, keys, strict=True)
        ]
        return self._write(rows, keys, prints, source)

    def append_submissions(
        self, submissions: Sequence[Submission], *, source: str = "device"
    ) -> list[list[int]]:
        """Store several client requests in one transaction (group commit); their ids each.

        Keys are namespaced per request (`fl_app.swipes.keys`); every keyed row stores its
        request's fingerprint. Errors name the request: a SwipeError's `submission` and `index`
        (the swipe within a batch), IdempotencyConflictError's `index` (the request).
        """
        rows, keys, prints, owner = submission_rows(submissions, self._encode)
        try:
            ids = self._write(rows, keys, prints, source)
        except IdempotencyConflictError as exc:
            raise IdempotencyConflictError(owner[exc.index]) from None
        out, start = [], 0
        for sub in submissions:
            out.append(ids[start : start + len(sub.swipes)])
            start += len(sub.swipes)
        return out

    def _encode(self, items: list[Swipe | dict[str, Any]], *, batch: bool) -> list[EncodedRow]:
        """Validate every row before the write lock is taken."""
        rows = []
        for i, item in enumerate(items):
            try:
                rows.append(self._rows.encode(item, self.max_points))
            except SwipeError as exc:
                exc.index = i  # type: ignore[attr-defined]
                if batch:
                    exc.args = (f"swipes[{i}]: {exc}",)
                raise
        return rows

    def _write(
        self,
        rows: list[EncodedRow],
        keys: list[str | None],
        prints: list[str | None],
        source: str,
    ) -> list[int]:
        if not isinstance(source, str) or not source or len(source) > _MAX_SOURCE_LEN:
            raise ValueError(f"source must be a 1..{_MAX_SOURCE_LEN} character string")
        if not rows:
            return []
        now = float(self._clock())
        with self._tx() as conn:
            ids = insert_rows(
                conn, rows, keys, prints, source=source, now=now, max_rows=self.max_rows
            )
            deleted = retention.apply(conn, self._policy, now, keep=ids)
        if deleted or self._wal_dirty:
            self._truncate_wal()
        return ids

    # -- reading -----------------------------------------------------------------------------

    def _where(
        self, conn: sqlite3.Connection, split: str | None, marker: int | None
    ) -> tuple[str, list[Any]]:
        return where_clause(conn, self.split_rule, self.heldout_fraction, split, marker)

    def count(self, *, split: str | None = None, new_only: bool = False) -> int:
        """Rows in a split (None: all); new_only counts rows newer than the training marker."""
        with self._tx("DEFERRED") as conn:
            marker = self._marker(conn) if new_only else None
            where, params = self._where(conn, split, marker)
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
            where, params = self._where(conn, split, marker)  # validates split eagerly
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
        """Delete every swipe, from the database file and its WAL (the marker stays; ids are
        never reused)."""
        with self._tx() as conn:
            n = conn.execute("DELETE FROM swipes").rowcount
        self._truncate_wal()
        return n

    def delete_older_than(self, when: datetime) -> int:
        """Delete rows stamped strictly before `when` (a naive datetime is taken as UTC).

        Stamps are repaired first (`retention.restamp`) when the clock is believed; a row whose
        time is still unknown (stored while the clock was unset) counts as old."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._tx() as conn:
            retention.restamp(conn, float(self._clock()))
            n = conn.execute(
                "DELETE FROM swipes WHERE created_at < ?", (when.timestamp(),)
            ).rowcount
        return self._after_delete(n)

    def enforce_retention(self) -> int:
        """Apply max_age_days and max_rows (`fl_app.swipes.retention`); returns rows deleted."""
        with self._tx() as conn:
            n = retention.apply(conn, self._policy, float(self._clock()))
        return self._after_delete(n)

    def _after_delete(self, deleted: int) -> int:
        if deleted or self._wal_dirty:
            self._truncate_wal()
        return deleted

    def _truncate_wal(self) -> None:
        """After deleting: fold the WAL into the file and cut it to zero bytes, so deleted rows'
        old page images leave the -wal file. A reader holding an old snapshot can delay it;
        then the next write (or close, or retention pass) tries again."""
        try:
            self._wal_dirty = not truncate_wal(self._conn())
        except (sqlite3.Error, StoreError):
            self._wal_dirty = True

    # -- summary -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts for logs and the sidecar's status endpoint (no words, no traces)."""
        with self._tx("DEFERRED") as conn:
            marker = self._marker(conn)
            total, heldout, new, max_id = row_counts(
                conn, self.split_rule, self.heldout_fraction, marker
            )
        return {
            "total": int(total),
            "train": int(total) - int(heldout),
            "heldout": int(heldout),
            "new_since_training": int(new),
            "trained": int(total) - int(new),
            "marker": marker,
            "max_id": int(max_id),
            "max_rows": self.max_rows,
            "max_age_days": self.max_age_days,
            "heldout_fraction": self.heldout_fraction,
            "split_rule": self.split_rule,
            "schema_version": SCHEMA_VERSION,
        }
