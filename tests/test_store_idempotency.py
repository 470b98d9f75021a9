"""Idempotency keys of client requests on real SQLite files: single and batch keys cannot
collide, one key names one body, and stores written by schema 1 still open and read."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from store_helpers import KB, swipe

from fl_app.swipes.format import SCHEMA_VERSION
from fl_app.swipes.store import IdempotencyConflictError, Submission, SwipeStore


@pytest.fixture
def store(tmp_path):
    with SwipeStore(tmp_path / "swipes.sqlite") as s:
        yield s


def test_a_single_key_and_a_batch_key_cannot_collide(store):
    one = Submission([swipe("alone")], "s/0")
    batch = Submission([swipe("first"), swipe("second")], "s", batch=True)
    [single_ids, batch_ids] = store.append_submissions([one, batch])
    assert len(set(single_ids + batch_ids)) == 3
    assert [r.swipe.word for r in store.load()] == ["alone", "first", "second"]
    # Retried in the other order, each still gets its own ids.
    assert store.append_submissions([batch, one]) == [batch_ids, single_ids]
    # One swipe sent alone and as a batch of one are two requests, even under one key.
    [again] = store.append_submissions([Submission([swipe("alone")], "s/0", batch=True)])
    assert again != single_ids and store.count() == 4


def test_same_key_same_body_same_ids_another_body_refused(store):
    body = [swipe("hello"), swipe("world")]
    [ids] = store.append_submissions([Submission(body, "req", batch=True)])
    assert store.append_submissions([Submission(list(body), "req", batch=True)]) == [ids]
    changed = [swipe("hello"), swipe("there")]
    longer = [*body, swipe("again")]
    for other in (changed, longer, body[:1]):
        with pytest.raises(IdempotencyConflictError):
            store.append_submissions([Submission(other, "req", batch=True)])
    # Points that differ by a fraction of a pixel are another body too.
    moved = [swipe("hello", shift=1e-3), swipe("world")]
    with pytest.raises(IdempotencyConflictError):
        store.append_submissions([Submission(moved, "req", batch=True)])
    assert store.count() == 2


def test_a_conflict_names_its_request_and_the_group_stores_nothing(store):
    store.append_submissions([Submission([swipe("hello")], "taken")])
    group = [
        Submission([swipe("fine")], "free"),
        Submission([swipe("other")], "taken"),
        Submission([swipe("also"), swipe("fine")], None, batch=True),
    ]
    with pytest.raises(IdempotencyConflictError) as info:
        store.append_submissions(group)
    assert info.value.index == 1
    assert store.count() == 1


# -- stores written by schema 1 ------------------------------------------------------------------

# Schema 1 as released (fl_app/swipes/format.py at c376e54), frozen on purpose: it repeats the
# current schema's columns but must not follow later changes to it.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE swipes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    keyboard TEXT NOT NULL,
    points BLOB NOT NULL,
    n_points INTEGER NOT NULL,
    word TEXT NOT NULL,
    source TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    split_u REAL NOT NULL DEFAULT 0.0
);
CREATE INDEX swipes_created_at ON swipes(created_at);
INSERT INTO meta VALUES ('schema_version', '1'), ('trained_up_to', '1');
"""


def _v1_store(path) -> None:
    """A file as schema 1 wrote it: a single swipe under `s/0` (the old collision's residue),
    a batch row under `b/0`, an importer row, an unkeyed row."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    kb = '{"height":217,"layout":"qwerty-en","width":375}'
    for i, (word, key) in enumerate(
        [("alone", "s/0"), ("first", "b/0"), ("imported", "src:u:1"), ("plain", None)], start=1
    ):
        pts = np.column_stack([KB.word_centres(word), np.arange(len(word)) * 10.0])
        blob = np.ascontiguousarray(pts, dtype="<f8").tobytes()
        conn.execute(
            "INSERT INTO swipes (created_at, keyboard, points, n_points, word, source,"
            " idempotency_key, split_u) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (1_750_000_000.0 + i, kb, blob, len(pts), word, "device", key, 0.5),
        )
    conn.commit()
    conn.close()


def test_a_schema_1_store_opens_migrates_and_reads(tmp_path):
    path = tmp_path / "v1.sqlite"
    _v1_store(path)
    with SwipeStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        rows = s.load()
        assert [r.swipe.word for r in rows] == ["alone", "first", "imported", "plain"]
        assert [r.idempotency_key for r in rows] == ["s/0", "b/0", "src:u:1", None]
        assert s.training_marker() == 1 and s.new_since_training() == 3
        # Schema-1 keys stay raw keys: the importer's re-run still finds its row...
        assert s.append(swipe("imported"), idempotency_key="src:u:1") == 3
        # ...and new request keys live in their own namespaces, clear of the old ones.
        [[single]] = s.append_submissions([Submission([swipe("alone")], "s/0")])
        assert single == 5
    with SwipeStore(path) as again:  # migrated once; the ClientApp's reads see every row
        assert again.schema_version == 2
        assert [r.id for r in again.load(split="train")] + [
            r.id for r in again.load(split="heldout")
        ] == [1, 2, 3, 4, 5]


def test_a_schema_1_file_is_migrated_once(tmp_path):
    """The first store to open a schema-1 file migrates it; the next finds it current (and a
    migration that ran twice would fail: the column would already exist)."""
    path = tmp_path / "v1.sqlite"
    _v1_store(path)
    a = SwipeStore(path)
    b = SwipeStore(path)
    try:
        assert a.schema_version == b.schema_version == 2
        cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(swipes)")]
        assert cols.count("request_sha256") == 1
    finally:
        a.close()
        b.close()
