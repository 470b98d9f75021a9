"""One write's rows into the `swipes` table, inside the caller's transaction.

Kept apart from the store's connection handling because this is where the two promises about a
write are kept: a key names one body (a repeat returns the stored id, another body is a
conflict), and a write is kept whole or refused whole (`CapacityError` before anything is
inserted, so a refused write leaves no bytes behind in the file or its WAL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from fl_app.decoder.errors import SwipeError
from fl_app.swipes.errors import CapacityError, IdempotencyConflictError
from fl_app.swipes.format import split_u
from fl_app.swipes.keys import EncodedRow, Submission, fingerprint, submission_keys

Encoder = Callable[..., list[EncodedRow]]


def submission_rows(
    submissions: Sequence[Submission], encode: Encoder
) -> tuple[list[EncodedRow], list[str | None], list[str | None], list[int]]:
    """Requests as one write: every row with its namespaced key, its request's fingerprint and
    the index of its request (`owner`). A SwipeError names its request (`submission`)."""
    rows: list[EncodedRow] = []
    keys: list[str | None] = []
    prints: list[str | None] = []
    owner: list[int] = []
    for j, sub in enumerate(submissions):
        try:
            encoded = encode(list(sub.swipes), batch=sub.batch)
        except SwipeError as exc:
            exc.submission = j  # type: ignore[attr-defined]
            raise
        fp = None if sub.key is None else fingerprint(encoded, batch=sub.batch)
        rows += encoded
        keys += submission_keys(sub)
        prints += [fp] * len(encoded)
        owner += [j] * len(encoded)
    return rows, keys, prints, owner


def insert_rows(
    conn: sqlite3.Connection,
    rows: list[EncodedRow],
    keys: list[str | None],
    prints: list[str | None],
    *,
    source: str,
    now: float,
    max_rows: int | None,
) -> list[int]:
    """The id of every row: stored ones for known keys, new ones for the rest, in order."""
    ids = _resolve_keys(conn, keys, prints)
    new = [i for i, rid in enumerate(ids) if rid is None]
    kept = len(new) + len({rid for rid in ids if rid is not None and rid > 0})
    if max_rows is not None and kept > max_rows:
        raise CapacityError(kept, max_rows)
    # Ids are assigned here (under the write lock) so split_u goes in with the row, not after.
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'swipes'").fetchone()
    next_id = (int(seq[0]) if seq else 0) + 1
    values = []
    for offset, i in enumerate(new):
        rid = next_id + offset
        kb_json, blob, n, word = rows[i]
        values.append((rid, now, kb_json, blob, n, word, source, keys[i], prints[i], split_u(rid)))
        ids[i] = rid
    conn.executemany(
        "INSERT INTO swipes (id, created_at, keyboard, points, n_points, word, source,"
        " idempotency_key, request_sha256, split_u) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    )
    return [_final(ids, rid) for rid in ids]


def _final(ids: list[int | None], rid: int | None) -> int:
    """A repeat (-(j + 1)) takes row j's id."""
    assert rid is not None
    return int(ids[-rid - 1]) if rid < 0 else rid  # type: ignore[arg-type]


def _resolve_keys(
    conn: sqlite3.Connection, keys: list[str | None], prints: list[str | None]
) -> list[int | None]:
    """Per row: the stored id of its key (> 0), -(j + 1) for a repeat of row j of this write,
    or None for a new row. A key stored with another fingerprint is a conflict; a stored
    fingerprint of NULL (a schema-1 row) accepts any body, as schema 1 did."""
    ids: list[int | None] = [None] * len(keys)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            j = first[key]
            if prints[j] != prints[i]:
                raise IdempotencyConflictError(i)
            ids[i] = ids[j] if ids[j] is not None else -(j + 1)
            continue
        first[key] = i
        found = conn.execute(
            "SELECT id, request_sha256 FROM swipes WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if found is not None:
            if found[1] is not None and found[1] != prints[i]:
                raise IdempotencyConflictError(i)
            ids[i] = int(found[0])
    return ids
