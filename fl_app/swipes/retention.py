"""Retention: which rows `max_rows` and `max_age_days` delete, and when the clock is believed.

The rules (docs/formats.md repeats them):

1. **Nothing being acknowledged is deleted.** Retention runs inside the write's transaction
   but never deletes the ids that write returns (new rows or rows found by key). A write with
   more rows than `max_rows` cannot be kept and is refused as a whole (`CapacityError`).
2. **`max_rows` deletes rows a training round has used before never-trained ones**, oldest
   first within each. The training marker is a row id and ids follow insertion order, so the
   rows at or below it are exactly the oldest: deleting oldest-first takes every trained row
   before any never-trained one, and that is the order used (an index walk, no sort).
3. **The clock is believed only when it can be.** A reading before `CLOCK_FLOOR` is a clock
   that has not been set (a device booting at 1970): the store still stores the row, but does
   no age retention with it and re-stamps nothing. With a believed reading `now`, every row
   stamped before `CLOCK_FLOOR` or more than `FUTURE_TOLERANCE_S` after `now` is re-stamped
   `now` first: its real time is unknown, so its age starts when the store first had a clock it
   believes. A device whose clock jumps from 1970 to today therefore keeps its rows, and rows
   stamped by a clock that ran ahead are not kept forever.
4. **Age follows insertion order.** `max_age_days` deletes the oldest rows (by id) while their
   stamp is older than `now - max_age_days`, and stops at the first younger one: a row is never
   deleted for age while a row stored before it is kept.

Not defended: a clock set wrongly *ahead* deletes rows early while it is ahead (the store cannot
tell it from time passing); a clock set back within the believed range stamps rows too old, and
they may go early by the size of the jump once it is corrected (tolerated up to a day).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

CLOCK_FLOOR = 1_704_067_200.0  # 2024-01-01T00:00:00Z: no swipe store existed before it
FUTURE_TOLERANCE_S = 86_400.0
# Two scalar subqueries: SQLite answers a lone min() or max() from the index in one lookup, but
# `SELECT min(x), max(x)` scans the whole table.
_BOUNDS = "SELECT (SELECT min({column}) FROM swipes), (SELECT max({column}) FROM swipes)"


def clock_believed(now: float) -> bool:
    return now >= CLOCK_FLOOR


@dataclass(frozen=True)
class Policy:
    max_rows: int | None = None
    max_age_days: float | None = None


def restamp(conn: sqlite3.Connection, now: float) -> int:
    """Rule 3: rows stamped by an unset clock or in the future get `now`; returns rows changed."""
    if not clock_believed(now):
        return 0
    lo, hi = conn.execute(_BOUNDS.format(column="created_at")).fetchone()
    if lo is None or (lo >= CLOCK_FLOOR and hi <= now + FUTURE_TOLERANCE_S):
        return 0  # two index lookups: nothing to repair
    return conn.execute(
        "UPDATE swipes SET created_at = ? WHERE created_at < ? OR created_at > ?",
        (now, CLOCK_FLOOR, now + FUTURE_TOLERANCE_S),
    ).rowcount


def apply(
    conn: sqlite3.Connection,
    policy: Policy,
    now: float,
    keep: Collection[int] = (),
) -> int:
    """Rules 2-4 in the caller's transaction, never deleting an id in `keep`; rows deleted."""
    restamp(conn, now)
    if policy.max_rows is None and policy.max_age_days is None:
        return 0
    keep_json = json.dumps(sorted(set(keep)))
    deleted = 0
    if policy.max_age_days is not None and clock_believed(now):
        deleted += _by_age(conn, now - policy.max_age_days * 86400.0, keep_json)
    if policy.max_rows is not None:
        deleted += _by_count(conn, policy.max_rows, keep_json)
    return deleted


def _by_age(conn: sqlite3.Connection, cutoff: float, keep_json: str) -> int:
    first = conn.execute("SELECT created_at FROM swipes ORDER BY id LIMIT 1").fetchone()
    if first is None or first[0] >= cutoff:
        return 0  # the oldest row is young enough: rule 4 stops here
    # `+created_at` keeps the planner on the id order: the scan stops at the first young row.
    young = conn.execute(
        "SELECT id FROM swipes WHERE +created_at >= ? ORDER BY id LIMIT 1", (cutoff,)
    ).fetchone()
    bound = "" if young is None else f"id < {int(young[0])} AND "
    return conn.execute(
        f"DELETE FROM swipes WHERE {bound}id NOT IN (SELECT value FROM json_each(?))",
        (keep_json,),
    ).rowcount


def _by_count(conn: sqlite3.Connection, max_rows: int, keep_json: str) -> int:
    lo, hi = conn.execute(_BOUNDS.format(column="id")).fetchone()
    if lo is None or hi - lo + 1 <= max_rows:
        return 0  # fewer ids than the limit, gaps or not: nothing to count
    excess = int(conn.execute("SELECT count(*) FROM swipes").fetchone()[0]) - max_rows
    if excess <= 0:
        return 0
    return conn.execute(
        "DELETE FROM swipes WHERE id IN (SELECT id FROM swipes"
        " WHERE id NOT IN (SELECT value FROM json_each(?))"
        " ORDER BY id LIMIT ?)",
        (keep_json, excess),
    ).rowcount
