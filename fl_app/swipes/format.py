"""The swipe store's on-disk format, owned once: the schema, a swipe as a row and back, the split.

`fl_app.swipes.store.SwipeStore` moves rows in and out of SQLite (connections, transactions,
the training marker, retention); what a row *is* lives here, so the layout below and the code
that writes and reads it are read together.

On-disk layout (schema_version 2; `MIGRATIONS` brings older files up to it when opened):

- `meta(key TEXT PRIMARY KEY, value TEXT)`: `schema_version` and `trained_up_to` (the training
  marker, the newest row id a finished training round used).
- `swipes`:
  - `id INTEGER PRIMARY KEY AUTOINCREMENT`: ids are never reused, even after deletions, so the
    marker and the per-row split stay meaningful; ids follow insertion order, which is the
    store's only trusted order of time (see `fl_app.swipes.retention`).
  - `created_at REAL`: Unix epoch seconds (UTC) of the device clock when stored. A value before
    `CLOCK_FLOOR` means the clock was not set; such values, and values in the future, are
    re-stamped by the first write that has a trusted clock (`fl_app.swipes.retention`).
  - `keyboard TEXT`: JSON of `Keyboard.to_spec()` (named layout or explicit geometry).
  - `points BLOB`: the (n, 3) trace as little-endian float64, row-major (x, y, t) triples,
    i.e. `arr.astype('<f8').tobytes()`: 24 bytes a point, exact, no parsing on read.
  - `n_points INTEGER`, `word TEXT`, `source TEXT` (`device`, `synthetic` or an importer's name).
  - `idempotency_key TEXT UNIQUE` (NULL when not given): `single:<key>`, `batch:<key>/<i>` or a
    raw key (`fl_app.swipes.keys`).
  - `request_sha256 TEXT` (schema 2): the fingerprint of the request the row came with, when it
    had a key (NULL for unkeyed rows and for rows stored by schema 1).
  - `split_u REAL`: `splitmix64(id) / 2**64` (53-bit), fixed at insert; a row is held out iff
    `split_u < heldout_fraction`, so the split depends only on the id and the fraction.

Rows are validated here (`RowCodec.encode`, not only in the sidecar) so no malformed swipe ever
reaches training.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from fl_app.decoder.errors import InvalidKeyboardError, SwipeError
from fl_app.decoder.keyboard import Keyboard, keyboard_from_spec
from fl_app.decoder.swipe import Swipe, parse_swipe, validate_points, validate_word

SCHEMA_VERSION = 2
SPLITS = ("train", "heldout")
_MASK64 = (1 << 64) - 1

# The `swipes` table (the `meta` table is created with it, by the store).
SWIPES_SCHEMA = """
CREATE TABLE IF NOT EXISTS swipes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    keyboard TEXT NOT NULL,
    points BLOB NOT NULL,
    n_points INTEGER NOT NULL,
    word TEXT NOT NULL,
    source TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    split_u REAL NOT NULL DEFAULT 0.0,
    request_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS swipes_created_at ON swipes(created_at);
"""

# version -> the statements that bring a file of that version to the next one. Every step only
# adds, so rows written by an older version read back unchanged.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: request fingerprints. Keys stay as stored: schema-1 keys cannot be sorted into the
    # new namespaces (`s/0` was a single swipe's key or batch `s`'s first), so they remain raw.
    1: ("ALTER TABLE swipes ADD COLUMN request_sha256 TEXT",),
}


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def split_u(row_id: int) -> float:
    """Deterministic uniform value in [0, 1) for a row id (not Python's salted hash())."""
    return (_splitmix64(int(row_id)) >> 11) * 2.0**-53


def split_of(row_id: int, heldout_fraction: float) -> str:
    """'heldout' iff split_u(row_id) < heldout_fraction, else 'train'."""
    return "heldout" if split_u(row_id) < heldout_fraction else "train"


@dataclass(frozen=True)
class StoredSwipe:
    """A row read back from the store."""

    id: int
    created_at: datetime
    source: str
    swipe: Swipe
    idempotency_key: str | None = None


class RowCodec:
    """A swipe to the `swipes` columns it is stored as, and a read row back to a StoredSwipe.

    Keeps two small caches (keyboard JSON already checked, keyboards already rebuilt), so one
    store uses one codec.
    """

    def __init__(self) -> None:
        self._kb_cache: dict[str, Keyboard] = {}
        self._spec_ok: dict[str, str] = {}

    def keyboard_json(self, kb: Keyboard) -> str:
        """The JSON to store for a keyboard, checked to rebuild the same geometry."""
        if not isinstance(kb, Keyboard):
            raise InvalidKeyboardError("swipe.keyboard must be a Keyboard")
        spec = kb.to_spec()
        text = _dumps(spec) if spec else None
        if text is not None:
            gid = self._spec_ok.get(text)
            if gid is None:
                try:
                    gid = keyboard_from_spec(json.loads(text)).geometry_id
                except SwipeError:
                    gid = ""
                if len(self._spec_ok) > 256:
                    self._spec_ok.clear()
                self._spec_ok[text] = gid
            if gid == kb.geometry_id:
                return text
        # No spec, or one that does not describe this geometry: store explicit hitboxes.
        explicit = {
            "width": kb.width,
            "height": kb.height,
            "language": kb.language,
            "keys": [{"label": k.label, "x": k.x, "y": k.y, "w": k.w, "h": k.h} for k in kb.keys],
        }
        return _dumps(explicit)

    def encode(self, item: Swipe | dict[str, Any], max_points: int) -> tuple[str, bytes, int, str]:
        """Validate one labelled swipe; its (keyboard, points, n_points, word) column values."""
        if isinstance(item, Swipe):
            kb = item.keyboard
            kb_json = self.keyboard_json(kb)
            points = _as_points(item.points)
            validate_points(points, kb, max_points)
            word = validate_word(item.word, kb)
        else:
            swipe = parse_swipe(item, require_word=True, max_points=max_points)
            kb_json = self.keyboard_json(swipe.keyboard)
            points, word = swipe.points, str(swipe.word)
        blob = np.ascontiguousarray(points, dtype="<f8").tobytes()
        return kb_json, blob, len(points), word

    def decode(self, row: tuple[Any, ...]) -> StoredSwipe:
        """A row of (id, created_at, source, keyboard, points, word, idempotency_key)."""
        rid, created, source, kb_json, blob, word, key = row
        kb = self._kb_cache.get(kb_json)
        if kb is None:
            kb = keyboard_from_spec(json.loads(kb_json))
            if len(self._kb_cache) > 256:
                self._kb_cache.clear()
            self._kb_cache[kb_json] = kb
        points = np.frombuffer(blob, dtype="<f8").reshape(-1, 3).astype(np.float64)
        when = datetime.fromtimestamp(created, tz=timezone.utc)
        return StoredSwipe(int(rid), when, source, Swipe(points, kb, word), key)


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise InvalidKeyboardError(f"keyboard spec is not plain JSON: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _as_points(points: Any) -> np.ndarray:
    """A Swipe's points as a float (n, 3) array; bad shapes are SwipeErrors."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SwipeError("points must be an (n, 3) array of x, y, t numbers") from exc
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise SwipeError("points must be an (n, 3) array of x, y, t numbers")
    return arr


SPLIT_RULES = ("hash", "newest")


def check_settings(
    max_points: int,
    max_rows: int | None,
    max_age_days: float | None,
    heldout_fraction: float,
    split_rule: str,
) -> None:
    """Refuse store settings that make no sense, before any file is touched."""
    if int(max_points) < 2:
        raise ValueError("max_points must be at least 2")
    if max_rows is not None and int(max_rows) < 1:
        raise ValueError("max_rows must be positive or None")
    if max_age_days is not None and not (math.isfinite(max_age_days) and max_age_days > 0):
        raise ValueError("max_age_days must be a positive number or None")
    if not (0.0 <= float(heldout_fraction) <= 1.0):
        raise ValueError("heldout_fraction must lie in [0, 1]")
    if split_rule not in SPLIT_RULES:
        raise ValueError(f"split_rule must be one of {SPLIT_RULES}, got {split_rule!r}")


def split_predicates(conn: Any, rule: str, fraction: float) -> tuple[str, str, list[Any]]:
    """SQL for (held-out rows, training rows) and their one parameter under a split rule:
    "hash", `split_u < fraction` (a row keeps its side forever); "newest", the newest
    round(rows x fraction) rows by id (what a person swiped after the rest)."""
    if rule == "hash":
        return "split_u < ?", "split_u >= ?", [fraction]
    total = int(conn.execute("SELECT count(*) FROM swipes").fetchone()[0])
    newest = round(total * fraction)
    row = conn.execute(
        "SELECT id FROM swipes ORDER BY id DESC LIMIT 1 OFFSET ?", (max(newest - 1, 0),)
    ).fetchone()
    boundary = int(row[0]) if newest and row is not None else 2**62
    return "id >= ?", "id < ?", [boundary]


def row_counts(conn: Any, rule: str, fraction: float, marker: int) -> tuple[int, int, int, int]:
    """(rows, held-out rows, rows newer than the training marker, newest id) in one query."""
    heldout, _, params = split_predicates(conn, rule, fraction)
    total, held, new, max_id = conn.execute(
        f"SELECT count(*), coalesce(sum({heldout}), 0), coalesce(sum(id > ?), 0),"
        " coalesce(max(id), 0) FROM swipes",
        (*params, marker),
    ).fetchone()
    return int(total), int(held), int(new), int(max_id)


def where_clause(
    conn: Any, rule: str, fraction: float, split: str | None, marker: int | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (and parameters) of rows in `split` (None: all), newer than `marker`."""
    clauses: list[str] = []
    params: list[Any] = []
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        heldout, train, split_params = split_predicates(conn, rule, fraction)
        clauses.append(heldout if split == "heldout" else train)
        params.extend(split_params)
    if marker is not None:
        clauses.append("id > ?")
        params.append(marker)
    return (" AND ".join(clauses) or "1"), params
