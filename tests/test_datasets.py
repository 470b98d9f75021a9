"""Importers, the user split and the real-swipes setting (fl_app/datasets)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fl_app.datasets.importer import import_file
from fl_app.datasets.real import REAL_SWIPES_ENV, RealSwipesMissing, load_real, real_swipes_dir
from fl_app.datasets.split import PART_NAMES, check_parts, user_part, user_sample
from fl_app.swipes.store import SwipeStore

KB = {"layout": "qwerty-en", "width": 360, "height": 200}


def trace(n: int = 8, t0: float = 0.0) -> list[list[float]]:
    return [[20.0 + 30 * i, 30.0 + 5 * i, t0 + 17.0 * i] for i in range(n)]


def row(user: str | None, seq: int | None, word: str, **extra) -> dict:
    out = {"word": word, "keyboard": KB, "points": trace()} | extra
    if user is not None:
        out["user"] = user
    if seq is not None:
        out["seq"] = seq
    return out


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two users written out of seq order, plus one bad row of each kind."""
    lines = [
        json.dumps(row("alice", 2, "three")),
        json.dumps(row("bob", 1, "beta")),
        json.dumps(row("alice", 0, "one")),
        json.dumps(row("alice", 1, "two", points=trace()[::-1])),  # time runs backwards
        json.dumps(row("bob", 0, "alpha")),
        json.dumps(row("bob", 2, "gamma", points=[[5000, 20, 0], [5010, 20, 17]])),  # far out
        json.dumps(row("bob", 3, "it's")),  # not a letter word
        json.dumps(row("bob", 4, "x", points=[[1, 1, 0]])),  # one point
        json.dumps({"user": "bob", "seq": 5, "keyboard": KB, "points": trace()}),  # no word
        json.dumps(row("bob", "six", "delta")),  # seq not an integer
        "{not json",
        "",
        json.dumps(row("carol", None, "solo")),
        json.dumps(row(None, None, "nobody")),
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def words(path: Path) -> list[str]:
    with SwipeStore(path) as store:
        return [r.swipe.word for r in store.load()]


def test_import_per_user_stores_in_seq_order_counting_each_refusal(dataset, tmp_path):
    stores = tmp_path / "stores"
    summary = import_file(dataset, stores_dir=stores, progress=False)
    assert summary.read == 13  # the blank line is not a record
    assert summary.stored == {"alice": 2, "bob": 2, "carol": 1, "anonymous": 1}
    assert dict(summary.refused) == {
        "DECREASING_TIME": 1,
        "OUT_OF_BOUNDS": 1,
        "WORD_OUTSIDE_ALPHABET": 1,
        "TOO_FEW_POINTS": 1,
        "MISSING_WORD": 1,
        "BAD_SEQ": 1,
        "BAD_JSON": 1,
    }
    assert sorted(p.name for p in stores.iterdir() if p.suffix == ".sqlite") == [
        "alice.sqlite",
        "anonymous.sqlite",
        "bob.sqlite",
        "carol.sqlite",
    ]
    assert words(stores / "alice.sqlite") == ["one", "three"]  # seq 0, 2: row order = time
    assert words(stores / "bob.sqlite") == ["alpha", "beta"]
    with SwipeStore(stores / "bob.sqlite") as store:
        assert {r.source for r in store.load()} == {"import:set"}


def test_importing_twice_adds_nothing(dataset, tmp_path):
    stores = tmp_path / "stores"
    import_file(dataset, stores_dir=stores, progress=False)
    again = import_file(dataset, stores_dir=stores, progress=False)
    assert again.stored_total == 0 and again.already_stored == 6
    assert words(stores / "alice.sqlite") == ["one", "three"]


def test_import_into_one_store_and_by_split_part(dataset, tmp_path):
    one = tmp_path / "all.sqlite"
    summary = import_file(dataset, store_path=one, source="mine", progress=False)
    assert summary.stored_total == 6 and len(words(one)) == 6
    part = user_part("alice")
    only = import_file(dataset, stores_dir=tmp_path / "p", parts=part, progress=False)
    assert "alice" in only.stored
    assert all(user_part(u) == part for u in only.stored)
    assert only.skipped_users > 0
    with pytest.raises(ValueError, match="unknown user split part"):
        import_file(dataset, stores_dir=tmp_path / "q", parts="nope", progress=False)


def test_import_cli_prints_one_json_summary_and_refuses_a_missing_file(dataset, tmp_path):
    cmd = [sys.executable, "-m", "fl_app.datasets", "import", str(dataset)]
    out = subprocess.run(
        [*cmd, "--stores", str(tmp_path / "s")], capture_output=True, text=True, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["read"] == 13 and summary["stored"] == 6
    assert summary["stored_per_user"]["alice"] == 2
    assert summary["refused"]["BAD_JSON"] == 1
    bad = subprocess.run(
        [sys.executable, "-m", "fl_app.datasets", "import", str(tmp_path / "none.jsonl"),
         "--store", str(tmp_path / "x.sqlite")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "no dataset file" in bad.stderr


def test_user_ids_cannot_escape_the_stores_folder(tmp_path):
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps(row("../../etc/x", 0, "word")) + "\n")
    summary = import_file(path, stores_dir=tmp_path / "s", progress=False)
    assert summary.refused == {"BAD_USER": 1} and summary.stored_total == 0
    assert not (tmp_path / "etc").exists()


def test_the_split_is_stable_and_checked():
    # Fixed forever: changing the hash or the bounds would move users between parts.
    assert [user_part(u) for u in ("u0000", "u0001", "u0002", "u0003", "u0004")] == [
        user_part(u) for u in ("u0000", "u0001", "u0002", "u0003", "u0004")
    ]
    assert {user_part(f"u{i:04d}") for i in range(400)} == set(PART_NAMES)
    assert check_parts("dev,device") == ("dev", "device")
    with pytest.raises(ValueError):
        check_parts("dev,test")


def test_real_split_is_disjoint_and_has_the_documented_sizes(real_swipes_dir):
    users = {p: {r.user for r in load_real(p)} for p in PART_NAMES}
    assert {p: len(u) for p, u in users.items()} == {
        "dev": 152,
        "public-train": 250,
        "public-val": 49,
        "device": 747,
    }
    everyone = set().union(*users.values())
    assert sum(len(u) for u in users.values()) == len(everyone) == 1198
    dev = load_real("dev")
    assert all(a.seq < b.seq for a, b in zip(dev, dev[1:]) if a.user == b.user)


def test_a_user_sample_is_seeded_and_nested_and_refuses_a_negative_limit():
    users = {f"u{i:04d}" for i in range(100)}
    assert user_sample(users, 0) == users and user_sample(users, 500) == users
    small, large = user_sample(users, 10, seed=3), user_sample(users, 40, seed=3)
    assert len(small) == 10 and len(large) == 40 and small < large  # a learning curve's samples
    assert user_sample(sorted(users, reverse=True), 10, seed=3) == small  # order plays no part
    assert user_sample(users, 10, seed=4) != small
    with pytest.raises(ValueError, match="limit >= 0"):
        user_sample(users, -1)


def test_the_recipe_trains_on_the_sampled_people_only(real_swipes_dir):
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import real_training_rows

    cfg = PretrainConfig()
    everyone = real_training_rows(cfg)
    assert len({r.user for r in everyone}) == 250
    cfg.data.real_users = 25
    sampled = real_training_rows(cfg)
    people = {r.user for r in sampled}
    assert len(people) == 25 and people < {r.user for r in everyone}
    # every swipe of a sampled person, none of anyone else's
    assert sampled == [r for r in everyone if r.user in people]
    cfg.data.real_parts = []
    assert real_training_rows(cfg) == []


def test_the_recipe_can_leave_out_swipes_far_from_their_word(real_swipes_dir):
    from fl_app.decoder.misses import distance_from_word
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import real_training_rows

    cfg = PretrainConfig()
    cfg.data.real_users = 40  # a few people keep it quick
    everyone = real_training_rows(cfg)
    cfg.data.real_max_distance = 1.5
    kept = real_training_rows(cfg)
    far = [r for r in everyone if r not in kept]
    assert far and len(far) < 0.1 * len(everyone)  # a few, not most
    assert kept == [r for r in everyone if r not in far]  # order and everything else kept

    def distance(r):
        return distance_from_word(r.swipe.points, r.swipe.keyboard, r.swipe.word)

    assert all(distance(r) < 1.5 for r in kept) and all(distance(r) >= 1.5 for r in far)
    for bad in (-1.0, float("nan")):
        cfg.data.real_max_distance = bad
        with pytest.raises(ValueError, match="real_max_distance"):
            real_training_rows(cfg)


@pytest.mark.slow
def test_the_shared_files_nine_refused_rows_are_reported(real_swipes_dir, tmp_path):
    summary = import_file(
        real_swipes_dir / "swipes.jsonl.gz", store_path=tmp_path / "all.sqlite", progress=False
    )
    assert summary.read == 74_295
    assert dict(summary.refused) == {"DECREASING_TIME": 8, "OUT_OF_BOUNDS": 1}
    assert summary.stored_total == 74_286


def test_a_missing_real_swipes_folder_is_an_error_naming_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv(REAL_SWIPES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RealSwipesMissing, match=REAL_SWIPES_ENV):
        real_swipes_dir()
    out = subprocess.run(
        [sys.executable, "-m", "fl_app.datasets", "split"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, REAL_SWIPES_ENV: str(tmp_path / "nowhere")},
    )
    assert out.returncode != 0 and REAL_SWIPES_ENV in out.stderr
