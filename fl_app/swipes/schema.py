"""The swipe store's schema on open: create it, bring an older file up to date, refuse a newer one.

Readers must not need the write lock for a file that is already current, so the version is read
first and the write lock taken only to create or migrate (re-reading inside, since another
process may have done it meanwhile). A migration runs in one transaction: a crash leaves the
file at the old version, which the next open migrates again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fl_app.swipes.errors import StoreSchemaError
from fl_app.swipes.format import MIGRATIONS, SCHEMA_VERSION, SWIPES_SCHEMA


def read_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The file's schema version, None for a file without one (new)."""
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
        raise StoreSchemaError(f"{path}: unreadable schema_version {row[0]!r}") from exc


def ensure_schema(conn: sqlite3.Connection, path: Path) -> int:
    """Create or migrate the schema as needed; returns SCHEMA_VERSION or raises."""
    version = read_version(conn, path)
    if version == SCHEMA_VERSION:
        return version
    _check_not_newer(version, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn, path)  # another process may have won
        if version is None:
            _create(conn)
        elif version < SCHEMA_VERSION:
            _migrate(conn, version, path)
        else:
            _check_not_newer(version, path)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _check_not_newer(version: int | None, path: Path) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"{path} has swipe-store schema version {version}, newer than the "
            f"{SCHEMA_VERSION} this code supports; upgrade swipe-fl to open it"
        )


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for stmt in SWIPES_SCHEMA.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    _set_version(conn, SCHEMA_VERSION)


def _migrate(conn: sqlite3.Connection, version: int, path: Path) -> None:
    while version < SCHEMA_VERSION:
        steps = MIGRATIONS.get(version)
        if steps is None:
            raise StoreSchemaError(f"{path}: no migration from swipe-store schema {version}")
        for stmt in steps:
            conn.execute(stmt)
        version += 1
    _set_version(conn, version)


def _set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(version),),
    )
