"""Dataset rows into swipe stores: one store per user, or one store for all.

Each user's rows are written in `seq` order (file order where a row has none), so a store's
row order is the user's time order. Importing is idempotent: every row carries an idempotency
key made of the import's source, the user and the seq (or the row's content), so a second
import of the same file adds nothing. A row the swipe contract refuses is counted under its
error code (`DECREASING_TIME`, `OUT_OF_BOUNDS`, ...) and skipped; nothing else stops.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fl_app.datasets.readers import BadRecord, SourceRow, reader_for
from fl_app.datasets.split import check_parts, user_part
from fl_app.decoder.errors import SwipeError
from fl_app.decoder.swipe import DEFAULT_MAX_POINTS, Swipe, parse_swipe
from fl_app.swipes.store import SwipeStore

ANONYMOUS = "anonymous"  # the store of rows without a user, with --stores
WRITE_CHUNK = 2000  # rows per transaction


@dataclass
class ImportSummary:
    """What one import did; printed as one JSON line at the end."""

    source: str
    read: int = 0
    stored: dict[str, int] = field(default_factory=dict)  # new rows per user (or store)
    already_stored: int = 0  # rows an earlier import of the same data already wrote
    skipped_users: int = 0  # rows of users outside the chosen split parts
    refused: Counter[str] = field(default_factory=Counter)  # error code -> rows

    @property
    def stored_total(self) -> int:
        return sum(self.stored.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "read": self.read,
            "stored": self.stored_total,
            "stored_per_user": dict(sorted(self.stored.items())),
            "already_stored": self.already_stored,
            "skipped_users": self.skipped_users,
            "refused": dict(sorted(self.refused.items())),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class _Valid:
    row: SourceRow
    swipe: Swipe


def import_file(
    path: str | Path,
    *,
    stores_dir: str | Path | None = None,
    store_path: str | Path | None = None,
    source: str | None = None,
    fmt: str | None = None,
    parts: str | Iterable[str] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    progress: bool | None = None,
) -> ImportSummary:
    """Import a dataset file into `stores_dir/<user>.sqlite` files or into `store_path`.

    `parts` keeps only users of those user-split parts (e.g. ``"device"``). `progress`: a
    progress bar on stderr (None: only when stderr is a terminal).
    """
    if (stores_dir is None) == (store_path is None):
        raise ValueError("give exactly one of stores_dir (one store per user) or store_path")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {path}")
    reader = reader_for(path, fmt)
    source = source or f"import:{_stem(path)}"
    keep = set(check_parts(list(parts) if not isinstance(parts, str) else parts)) if parts else None
    summary = ImportSummary(source=source)
    by_user: dict[str, list[_Valid]] = defaultdict(list)
    records = reader.records(path)
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        records = tqdm(records, desc=f"reading {path.name}", unit=" rows", file=sys.stderr)
    for record in records:
        summary.read += 1
        if isinstance(record, BadRecord):
            summary.refused[record.code] += 1
            continue
        user = record.user or ANONYMOUS
        if keep is not None and (record.user is None or user_part(record.user) not in keep):
            summary.skipped_users += 1
            continue
        try:
            swipe = parse_swipe(record.swipe, require_word=True, max_points=max_points)
        except SwipeError as exc:
            summary.refused[exc.code] += 1
            continue
        by_user[user].append(_Valid(record, swipe))
    if store_path is not None:
        with SwipeStore(store_path, max_points=max_points) as store:
            for user in sorted(by_user):
                _write(store, user, by_user[user], source, summary)
    else:
        directory = Path(stores_dir)  # type: ignore[arg-type]
        directory.mkdir(parents=True, exist_ok=True)
        for user in sorted(by_user):
            with SwipeStore(directory / f"{user}.sqlite", max_points=max_points) as store:
                _write(store, user, by_user[user], source, summary)
    return summary


def _write(
    store: SwipeStore, user: str, rows: list[_Valid], source: str, summary: ImportSummary
) -> None:
    """Append one user's rows in seq order, each under its idempotency key."""
    rows = sorted(rows, key=lambda v: (v.row.seq is None, v.row.seq or 0, v.row.line))
    seen: set[str] = set()
    swipes, keys = [], []
    for v in rows:
        key = _key(source, user, v)
        if key in seen:  # the same seq twice for one user: the file contradicts itself
            summary.refused["DUPLICATE_SEQ"] += 1
            continue
        seen.add(key)
        swipes.append(v.swipe)
        keys.append(key)
    before = store.count()
    for start in range(0, len(swipes), WRITE_CHUNK):
        end = start + WRITE_CHUNK
        store.append_many(swipes[start:end], idempotency_keys=keys[start:end], source=source)
    added = store.count() - before
    summary.stored[user] = summary.stored.get(user, 0) + added
    summary.already_stored += len(swipes) - added


def _key(source: str, user: str, valid: _Valid) -> str:
    """The row's idempotency key: the import, the user and the seq (or the row's content)."""
    if valid.row.seq is not None:
        return f"{source}:{user}:{valid.row.seq}"
    content = json.dumps(valid.row.swipe, sort_keys=True, separators=(",", ":"))
    return f"{source}:{user}:h{hashlib.sha256(content.encode()).hexdigest()[:24]}"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".ndjson"):
        name = name.removesuffix(suffix)
    return name[:48] or "dataset"
