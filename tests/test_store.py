"""The swipe store against real SQLite files: round trip, idempotency, atomicity, split,
marker, retention, schema guard, validation, and a writer process racing a reader."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from store_helpers import KB, FakeClock, swipe, swipe_dict, trace

from fl_app.decoder import errors
from fl_app.decoder.keyboard import keyboard_from_spec
from fl_app.decoder.swipe import Swipe
from fl_app.swipes.format import SCHEMA_VERSION, StoredSwipe, split_of
from fl_app.swipes.store import (
    IdempotencyConflictError,
    StoreError,
    StoreSchemaError,
    SwipeStore,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    with SwipeStore(tmp_path / "swipes.sqlite") as s:
        yield s


# -- round trip ----------------------------------------------------------------------------


def test_round_trip_named_keyboard(store):
    s = swipe("units")
    sid = store.append(s, source="synthetic")
    [row] = store.load()
    assert isinstance(row, StoredSwipe)
    assert row.id == sid and row.source == "synthetic" and row.idempotency_key is None
    assert row.swipe.word == "units"
    np.testing.assert_array_equal(row.swipe.points, s.points)
    assert row.swipe.points.dtype == np.float64 and row.swipe.points.flags.writeable
    assert row.swipe.keyboard.to_spec() == KB.to_spec()
    assert row.swipe.keyboard.geometry_id == KB.geometry_id
    assert row.created_at.tzinfo is not None
    assert abs(row.created_at.timestamp() - time.time()) < 60


def test_round_trip_dict_and_explicit_geometry(store):
    spec = {
        "width": 300,
        "height": 120,
        "language": "en",
        "keys": [
            {"label": ch, "x": 30.0 * (i % 10), "y": 0.0 if i < 10 else 40.0, "w": 30.0, "h": 40.0}
            for i, ch in enumerate("qwertyuiopasdfghjkl")
        ],
    }
    kb = keyboard_from_spec(spec)
    d = {
        "points": [{"x": float(x), "y": float(y), "t": t} for x, y, t in trace("salt", kb)],
        "keyboard": spec,
        "word": "salt",
    }
    sid = store.append(d, idempotency_key="k-1", source="my-importer")
    row = store.load()[0]
    assert (row.id, row.source, row.idempotency_key, row.swipe.word) == (
        sid,
        "my-importer",
        "k-1",
        "salt",
    )
    assert row.swipe.keyboard.to_spec() == spec
    assert row.swipe.keyboard.geometry_id == kb.geometry_id
    np.testing.assert_array_equal(row.swipe.points, trace("salt", kb))


def test_keyboard_without_spec_is_stored_as_explicit_geometry(store):
    from fl_app.decoder.keyboard import Keyboard

    bare = Keyboard(KB.width, KB.height, KB.keys, "en")  # built by hand: no spec
    store.append(Swipe(trace("hello"), bare, "hello"))
    kb = store.load()[0].swipe.keyboard
    assert kb.geometry_id == KB.geometry_id and "keys" in kb.to_spec()


def test_iter_in_id_order_with_small_batches(store):
    words = ["a", "as", "the", "cat", "dog", "quick", "brown", "fox"]
    ids = store.append_many([swipe(w) for w in words if len(w) > 0])
    got = list(store.iter_swipes(batch_size=3))
    assert [r.id for r in got] == ids == sorted(ids)
    assert [r.swipe.word for r in got] == words
    assert [r.id for r in store.load(limit=5)] == ids[:5]
    assert store.max_id() == ids[-1]


def test_load_up_to_a_snapshot_leaves_later_rows_out(store):
    ids = store.append_many([swipe(w) for w in ["the", "cat", "dog"]])
    snapshot = store.max_id()
    later = store.append_many([swipe(w) for w in ["fox", "brown"]])
    assert [r.id for r in store.load(up_to_id=snapshot)] == ids
    assert [r.id for r in store.iter_swipes(up_to_id=snapshot, batch_size=1)] == ids
    assert [r.id for r in store.load(up_to_id=later[-1] + 10)] == ids + later


# -- idempotency and atomicity ---------------------------------------------------------------


def test_idempotent_append_single_batch_and_second_instance(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path) as a:
        first = a.append(swipe("hello"), idempotency_key="req-1")
        assert a.append(swipe("hello"), idempotency_key="req-1") == first
        ids = a.append_many(
            [swipe("one"), swipe("two"), swipe("one"), swipe("hello")],
            idempotency_keys=["b-1", None, "b-1", "req-1"],
        )
        assert ids[0] == ids[2] and ids[3] == first and len(set(ids)) == 3
        with SwipeStore(path) as b:
            assert b.append(swipe("hello"), idempotency_key="req-1") == first
            assert (
                b.append_many([swipe("one"), swipe("y")], idempotency_keys=["b-1", "new"])[0]
                == ids[0]
            )
            assert b.count() == 4
        assert a.count() == 4
        assert [r.swipe.word for r in a.load()] == ["hello", "one", "two", "y"]


def test_a_key_reused_with_another_swipe_is_refused_and_stores_nothing(store):
    first = store.append(swipe("hello"), idempotency_key="k")
    with pytest.raises(IdempotencyConflictError):
        store.append(swipe("other"), idempotency_key="k")
    with pytest.raises(IdempotencyConflictError) as info:
        store.append_many([swipe("fresh"), swipe("other")], idempotency_keys=["new", "k"])
    assert info.value.index == 1
    with pytest.raises(IdempotencyConflictError):  # the same key twice in one write
        store.append_many([swipe("cat"), swipe("dog")], idempotency_keys=["x", "x"])
    assert [r.id for r in store.load()] == [first]
    assert store.append(swipe("fresh"), idempotency_key="new") > first  # "new" was not taken
    with pytest.raises(ValueError, match="reserved"):
        store.append(swipe("hello"), idempotency_key="single:k")
    with pytest.raises(ValueError, match="reserved"):
        store.append_many([swipe("hello")], idempotency_keys=["batch:k/0"])


def test_batch_with_bad_row_stores_nothing_and_names_the_index(store):
    store.append(swipe("keep"))
    bad = swipe_dict("bad")
    bad["points"][1]["x"] = float("nan")
    with pytest.raises(errors.NonFiniteError) as info:
        store.append_many(
            [swipe("one"), swipe_dict("two"), bad, swipe("four")],
            idempotency_keys=["k1", "k2", "k3", "k4"],
        )
    assert info.value.index == 2 and "swipes[2]" in str(info.value)
    assert store.count() == 1
    # None of the batch's keys were taken: the same keys work afterwards.
    ids = store.append_many([swipe("one"), swipe("two")], idempotency_keys=["k1", "k2"])
    assert store.count() == 3 and len(set(ids)) == 2


def test_bad_arguments(store):
    with pytest.raises(ValueError):
        store.append_many([swipe("a")], idempotency_keys=["x", "y"])
    with pytest.raises(ValueError):
        store.append(swipe("a"), idempotency_key="")
    with pytest.raises(ValueError):
        store.append(swipe("a"), source="")
    with pytest.raises(ValueError):
        store.count(split="test")
    assert store.append_many([]) == []
    assert store.count() == 0


def test_threads_share_a_store(store):
    def work(n: int) -> None:
        for i in range(20):
            store.append(swipe("thread"), idempotency_key=f"t{n}-{i % 10}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 40


# -- split -------------------------------------------------------------------------------------


def test_split_is_stable_and_about_the_right_fraction(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path, heldout_fraction=0.1) as s:
        ids = s.append_many([swipe("split")] * 1000, source="synthetic")
        held = [r.id for r in s.iter_swipes(split="heldout")]
        train = [r.id for r in s.iter_swipes(split="train")]
        assert s.count(split="heldout") == len(held) and s.count(split="train") == len(train)
        assert sorted(held + train) == ids
        assert 60 <= len(held) <= 140
        assert held == [i for i in ids if split_of(i, 0.1) == "heldout"]
        st = s.stats()
        assert (st["total"], st["heldout"], st["train"]) == (1000, len(held), len(train))
    with SwipeStore(path, heldout_fraction=0.1) as again:
        assert [r.id for r in again.iter_swipes(split="heldout")] == held
    # A larger fraction only moves train rows to held-out.
    with SwipeStore(path, heldout_fraction=0.3) as wider:
        assert set(held) <= {r.id for r in wider.iter_swipes(split="heldout")}
    # The split is a pure function of the id, the same in a fresh interpreter.
    code = "from fl_app.swipes.format import split_of; print([i for i in range(1, 1001) if split_of(i, 0.1) == 'heldout'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(held)


# -- training marker ---------------------------------------------------------------------------


def test_marker_and_new_since_training(store):
    assert store.training_marker() == 0
    ids = store.append_many([swipe("one"), swipe("two"), swipe("three")])
    assert store.new_since_training() == 3
    assert store.mark_trained(ids[1]) == ids[1]
    assert store.new_since_training() == 1 == store.count(new_only=True)
    assert [r.id for r in store.iter_swipes(new_only=True)] == [ids[2]]
    assert store.mark_trained(ids[0]) == ids[1]  # never backwards
    assert store.training_marker() == ids[1]
    with pytest.raises(ValueError):
        store.mark_trained(ids[2] + 5)
    store.append(swipe("four"))
    assert store.mark_trained() == ids[2] + 1
    assert store.new_since_training() == 0
    st = store.stats()
    assert st["marker"] == ids[2] + 1 and st["new_since_training"] == 0 and st["total"] == 4
    # Deleting everything keeps the marker; new ids stay above it.
    store.delete_all()
    new_id = store.append(swipe("five"))
    assert new_id > store.training_marker() and store.new_since_training() == 1


def test_marker_survives_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path) as s:
        s.append_many([swipe("a"), swipe("b")])
        s.mark_trained()
    with SwipeStore(path) as s:
        assert s.training_marker() == 2 and s.new_since_training() == 0


# -- deletion and retention ----------------------------------------------------------------------


def test_delete_all_and_older_than(tmp_path):
    clock = FakeClock()
    with SwipeStore(tmp_path / "s.sqlite", clock=clock) as s:
        s.append_many([swipe("old"), swipe("old")])
        clock.now += 3600
        s.append(swipe("new"))
        cut = datetime.fromtimestamp(clock.now - 10, tz=timezone.utc)
        assert s.delete_older_than(cut) == 2
        assert [r.swipe.word for r in s.load()] == ["new"]
        naive = cut.replace(tzinfo=None) + timedelta(hours=1)  # naive means UTC
        assert s.delete_older_than(naive) == 1
        s.append_many([swipe("x")] * 3)
        assert s.delete_all() == 3 and s.count() == 0


def test_retention_max_rows_runs_after_appends(tmp_path):
    with SwipeStore(tmp_path / "s.sqlite", max_rows=5) as s:
        ids = [s.append(swipe("row")) for _ in range(8)]
        assert [r.id for r in s.load()] == ids[-5:]
        s.append_many([swipe("batch")] * 3)
        assert s.count() == 5 and [r.swipe.word for r in s.load()][-3:] == ["batch"] * 3
        assert s.enforce_retention() == 0


def test_retention_max_age(tmp_path):
    clock = FakeClock()
    path = tmp_path / "s.sqlite"
    with SwipeStore(path, clock=clock) as s:  # no limits: nothing dropped
        s.append_many([swipe("old")] * 2)
        clock.now += 2 * 86400
        s.append(swipe("mid"))
    clock.now += 0.5 * 86400
    with SwipeStore(path, max_age_days=1.0, clock=clock) as s:
        assert s.count() == 3
        assert s.enforce_retention() == 2
        assert [r.swipe.word for r in s.load()] == ["mid"]
        clock.now += 86400
        s.append(swipe("fresh"))  # retention runs on append too
        assert [r.swipe.word for r in s.load()] == ["fresh"]


# -- schema ---------------------------------------------------------------------------------------


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    with SwipeStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        s.append(swipe("a"))
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreSchemaError, match="newer"):
        SwipeStore(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        SwipeStore(path)


def test_wal_mode_and_closed_store(tmp_path):
    path = tmp_path / "s.sqlite"
    s = SwipeStore(path)
    s.append(swipe("a"))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    s.close()
    with pytest.raises(StoreError):
        s.count()


# -- validation -----------------------------------------------------------------------------------


def _bad(kind: str) -> dict | Swipe:
    d = swipe_dict("hello")
    if kind == "nonfinite":
        d["points"][2]["y"] = float("inf")
    elif kind == "too_few":
        d["points"] = d["points"][:1]
    elif kind == "decreasing":
        d["points"][3]["t"] = -5
    elif kind == "out_of_bounds":
        d["points"][1]["x"] = -400.0
    elif kind == "unknown_layout":
        d["keyboard"] = {"layout": "dvorak-xx", "width": 375, "height": 217}
    elif kind == "too_many":
        d["points"] = [{"x": 10.0, "y": 10.0, "t": i} for i in range(51)]
    elif kind == "outside_alphabet":
        d["word"] = "don't"
    elif kind == "uppercase":
        d["word"] = "Hello"
    elif kind == "missing_word":
        del d["word"]
    elif kind == "swipe_missing_word":
        return Swipe(trace("hello"), KB, None)
    elif kind == "swipe_nonfinite":
        pts = trace("hello")
        pts[0, 2] = np.nan
        return Swipe(pts, KB, "hello")
    elif kind == "swipe_too_many":
        return Swipe(np.zeros((51, 3)) + 5.0, KB, "hello")
    elif kind == "swipe_bad_word":
        return Swipe(trace("hello"), KB, "héllo")
    return d


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("nonfinite", errors.NonFiniteError),
        ("too_few", errors.TooFewPointsError),
        ("decreasing", errors.DecreasingTimeError),
        ("out_of_bounds", errors.OutOfBoundsError),
        ("unknown_layout", errors.UnknownLayoutError),
        ("too_many", errors.TooManyPointsError),
        ("outside_alphabet", errors.WordOutsideAlphabetError),
        ("uppercase", errors.WordOutsideAlphabetError),
        ("missing_word", errors.MissingWordError),
        ("swipe_missing_word", errors.MissingWordError),
        ("swipe_nonfinite", errors.NonFiniteError),
        ("swipe_too_many", errors.TooManyPointsError),
        ("swipe_bad_word", errors.WordOutsideAlphabetError),
    ],
)
def test_bad_rows_refused_with_their_own_error(tmp_path, kind, error):
    with SwipeStore(tmp_path / "s.sqlite", max_points=50) as s:
        with pytest.raises(error):
            s.append(_bad(kind))
        with pytest.raises(error) as info:
            s.append_many([swipe("fine"), _bad(kind)])
        assert info.value.index == 1
        assert s.count() == 0


def test_out_of_bounds_allows_slight_overshoot(store):
    d = swipe_dict("hello")
    d["points"][0]["x"] = -30.0  # a finger overshooting the edge is fine
    store.append(d)
    assert store.count() == 1


# -- concurrency across processes -----------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import time

    import numpy as np
    from fl_app.decoder.keyboard import named_keyboard
    from fl_app.swipes.store import SwipeStore
    from fl_app.decoder.swipe import Swipe

    path, n = sys.argv[1], int(sys.argv[2])
    kb = named_keyboard("qwerty-en", 375, 217)
    c = kb.word_centres("swipe")
    pts = np.column_stack([c, np.arange(len(c)) * 10.0])
    with SwipeStore(path) as s:
        i = 0
        while i < n:
            if i % 3 == 0:  # mix single appends and small batches
                k = min(3, n - i)
                s.append_many([Swipe(pts, kb, "swipe")] * k,
                              idempotency_keys=[f"w-{j}" for j in range(i, i + k)])
                i += k
            else:
                s.append(Swipe(pts, kb, "swipe"), idempotency_key=f"w-{i}")
                i += 1
            time.sleep(0.002)  # let the reader interleave with many small transactions
    """
)


def _spawn_writer(path: Path, n: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(n)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_writer_process_and_reader_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    n = 300
    with SwipeStore(path) as reader:
        writers = [_spawn_writer(path, n), _spawn_writer(path, n)]  # same keys: race on them
        seen: list[int] = []
        reader_errors: list[BaseException] = []
        deadline = time.monotonic() + 50
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            try:
                c = reader.count()
                rows = list(reader.iter_swipes(batch_size=64))
                assert len({r.id for r in rows}) == len(rows)
                assert all(r.swipe.word == "swipe" for r in rows)
                seen.append(c)
                reader.stats()
            except BaseException as exc:  # the reader must never fail
                reader_errors.append(exc)
            time.sleep(0.01)
        for w in writers:
            _, err = w.communicate(timeout=30)
            assert w.returncode == 0, err
        assert not reader_errors, reader_errors[:3]
        assert seen == sorted(seen)  # counts only grow
        assert any(0 < c < n for c in seen), "the reader never overlapped the writers"
        rows = reader.load()
        assert len(rows) == n == reader.count()
        assert sorted(r.idempotency_key for r in rows) == sorted(f"w-{i}" for i in range(n))
        assert [r.id for r in rows] == sorted({r.id for r in rows})


def test_the_newest_split_holds_out_the_last_rows_by_order(tmp_path):
    """split_rule="newest": the held-out rows are the newest 20% by row order (what a person
    swiped after the rows a model trained on), and they move on as rows arrive."""
    from fl_app.swipes.store import SwipeStore

    swipes = [swipe(w) for w in ("one", "two", "three", "four", "five") * 2]
    with SwipeStore(tmp_path / "s.sqlite", heldout_fraction=0.2, split_rule="newest") as store:
        ids = store.append_many(swipes)
        assert [r.id for r in store.load(split="heldout")] == ids[-2:]
        assert [r.id for r in store.load(split="train")] == ids[:-2]
        assert store.stats()["heldout"] == 2 and store.count(split="train") == 8
        more = store.append_many([swipe(w) for w in ("six", "seven", "eight", "nine", "ten")])
        assert [r.id for r in store.load(split="heldout")] == more[-3:]  # round(15 x 0.2)
    with pytest.raises(ValueError, match="split_rule"):
        SwipeStore(tmp_path / "t.sqlite", split_rule="random")
