"""Retention on real SQLite files: nothing a write returns is deleted by it, a write that cannot
fit is refused whole, trained rows go first, and age retention survives clock jumps."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from store_helpers import FakeClock, swipe

from fl_app.swipes.store import CapacityError, Submission, SwipeStore

DAY = 86400.0


def ids_in(store: SwipeStore) -> list[int]:
    return [r.id for r in store.load()]


# -- max_rows ------------------------------------------------------------------------------------


def test_a_batch_larger_than_the_store_is_refused_whole(tmp_path):
    with SwipeStore(tmp_path / "s.sqlite", max_rows=5) as s:
        old = s.append_many([swipe("old")] * 3)
        with pytest.raises(CapacityError) as info:
            s.append_many([swipe("big")] * 6)
        assert (info.value.rows, info.value.max_rows) == (6, 5)
        assert ids_in(s) == old  # nothing stored, nothing deleted
        with pytest.raises(CapacityError):
            s.append_submissions([Submission([swipe("big")] * 6, "b", batch=True)])
        assert ids_in(s) == old
        # A batch that fits is kept whole: the older rows make room.
        fits = s.append_many([swipe("fits")] * 5)
        assert ids_in(s) == fits


def test_every_returned_id_is_kept(tmp_path):
    """A retried key returns a stored (old) row; retention in the same write must not take it."""
    with SwipeStore(tmp_path / "s.sqlite", max_rows=3) as s:
        first = s.append(swipe("first"), idempotency_key="k1")
        s.append_many([swipe("two"), swipe("three")])
        ids = s.append_many(
            [swipe("first"), swipe("four"), swipe("five")], idempotency_keys=["k1", None, None]
        )
        assert ids[0] == first
        assert ids_in(s) == sorted(ids)  # the two middle rows went, the oldest (returned) stayed
        # Each request of a group commit keeps its ids too.
        parts = s.append_submissions(
            [
                Submission([swipe("six")], "a"),
                Submission([swipe("seven"), swipe("eight")], "b", batch=True),
            ]
        )
        assert ids_in(s) == sorted(i for part in parts for i in part)


def test_trained_rows_go_before_never_trained_ones(tmp_path):
    with SwipeStore(tmp_path / "s.sqlite", max_rows=4) as s:
        ids = s.append_many([swipe(w) for w in ("one", "two", "three", "four")])
        s.mark_trained(ids[1])  # a federated round used the first two
        assert s.stats()["trained"] == 2
        new = s.append_many([swipe("five"), swipe("six")])
        assert ids_in(s) == ids[2:] + new  # both trained rows went, no never-trained one
        assert s.stats()["trained"] == 0
        later = s.append(swipe("seven"))  # no trained row left: the oldest never-trained goes
        assert ids_in(s) == ids[3:] + new + [later]


# -- age and the clock ---------------------------------------------------------------------------


def test_a_clock_jumping_from_1970_to_now_deletes_nothing(tmp_path):
    clock = FakeClock(now=12.0)  # a device booting without a set clock
    path = tmp_path / "s.sqlite"
    with SwipeStore(path, max_age_days=1.0, clock=clock) as s:
        early = s.append_many([swipe("boot"), swipe("time")])
        clock.now += 3 * DAY  # days pass on the unset clock: no age retention without a clock
        assert s.enforce_retention() == 0
    clock.now = 1_750_000_000.0  # the network sets the clock
    with SwipeStore(path, max_age_days=1.0, clock=clock) as s:
        assert s.enforce_retention() == 0
        assert ids_in(s) == early
        # Their age counts from the first believed reading, stamped into the rows.
        assert all(r.created_at.timestamp() == clock.now for r in s.load())
        later = s.append(swipe("after"))
        clock.now += 0.5 * DAY
        assert s.enforce_retention() == 0
        clock.now += 0.6 * DAY  # a day after the correction: the limit applies as usual
        assert s.enforce_retention() == 3
        assert ids_in(s) == []
        assert later > early[-1]


def test_rows_stamped_by_a_clock_that_ran_ahead_age_from_the_correction(tmp_path):
    clock = FakeClock(now=1_900_000_000.0)  # 2030: the clock is wrong by years
    with SwipeStore(tmp_path / "s.sqlite", max_age_days=2.0, clock=clock) as s:
        ahead = s.append_many([swipe("ahead")] * 2)
        clock.now = 1_750_000_000.0  # corrected
        assert s.enforce_retention() == 0
        assert ids_in(s) == ahead
        assert {r.created_at.timestamp() for r in s.load()} == {clock.now}
        clock.now += 2.5 * DAY  # not kept until 2030: gone max_age after the correction
        assert s.enforce_retention() == 2
        assert ids_in(s) == []


def test_age_retention_follows_insertion_order(tmp_path):
    """A row is never deleted for age while a row stored before it is kept: a clock set back a
    few hours does not make the rows stored after it look older than their predecessors."""
    clock = FakeClock()
    with SwipeStore(tmp_path / "s.sqlite", max_age_days=1.0, clock=clock) as s:
        first = s.append(swipe("first"))
        clock.now -= 12 * 3600  # set back half a day (inside the one-day tolerance)
        second = s.append(swipe("second"))
        clock.now += 12 * 3600 + 18 * 3600  # the first is 18 h old, the second 30 h by its stamp
        assert s.enforce_retention() == 0
        assert ids_in(s) == [first, second]
        clock.now += 7 * 3600  # both past a day by the first's stamp
        assert s.enforce_retention() == 2


def test_delete_older_than_uses_the_repaired_stamps(tmp_path):
    clock = FakeClock(now=5.0)
    with SwipeStore(tmp_path / "s.sqlite", clock=clock) as s:
        s.append(swipe("boot"))
        clock.now = 1_750_000_000.0
        # The user deletes what is older than an hour ago: the row stored before the clock was
        # set is re-stamped now (its time is unknown), so it is not taken as 55 years old...
        assert s.delete_older_than(datetime.fromtimestamp(clock.now - 3600, tz=timezone.utc)) == 0
        # ...and goes with everything else once it is older than the cut.
        clock.now += 7200
        s.append(swipe("new"))
        cut = datetime.fromtimestamp(clock.now - 3600, tz=timezone.utc)
        assert s.delete_older_than(cut) == 1
        assert [r.swipe.word for r in s.load()] == ["new"]
