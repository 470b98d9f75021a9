"""The template cache's policy (fl_app/decoder/template_cache.py): the keyboards used most stay,
a stream of strangers churns a small tier only, and each bank is built once."""

from __future__ import annotations

import threading
import time

import pytest

from fl_app.decoder.template_cache import TieredCache


class Builds:
    """Counts what was built, per key."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def __call__(self, key: str):
        def build() -> str:
            self.count[key] = self.count.get(key, 0) + 1
            return f"bank-{key}"

        return build


def use(cache: TieredCache, builds: Builds, key: str, times: int = 1) -> None:
    for _ in range(times):
        assert cache.get(key, builds(key)) == f"bank-{key}"


def test_a_stream_of_strangers_does_not_evict_the_keyboard_in_use():
    cache, builds = TieredCache(residents=2, strangers=2, promote_after=3), Builds()
    use(cache, builds, "mine", 5)
    for i in range(100):
        use(cache, builds, f"stranger-{i}")
        use(cache, builds, "mine")
    assert builds.count["mine"] == 1
    assert cache.residents() == ["mine"]
    stats = cache.stats()
    assert stats.builds == 101 and stats.residents == 1 and stats.strangers == 2


def test_strangers_used_repeatedly_cannot_displace_a_more_used_resident():
    cache, builds = TieredCache(residents=2, strangers=2, promote_after=3), Builds()
    use(cache, builds, "portrait", 50)
    use(cache, builds, "landscape", 10)
    for i in range(20):  # each stranger used as often as the promotion needs, and then some
        use(cache, builds, f"stranger-{i}", 5)
    assert sorted(cache.residents()) == ["landscape", "portrait"]
    use(cache, builds, "portrait")
    use(cache, builds, "landscape")
    assert builds.count["portrait"] == builds.count["landscape"] == 1
    use(cache, builds, "newcomer", 12)  # used more than a resident: it takes that one's place
    assert sorted(cache.residents()) == ["newcomer", "portrait"]


def test_a_bank_being_built_is_waited_for_not_built_twice():
    cache = TieredCache()
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        started.set()
        release.wait(10)
        return "bank"

    results = []
    first = threading.Thread(target=lambda: results.append(cache.get("k", slow)))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: results.append(cache.get("k", slow)))
    second.start()
    time.sleep(0.05)
    release.set()
    first.join(10)
    second.join(10)
    assert results == ["bank", "bank"] and len(calls) == 1


def test_a_failed_build_is_not_cached():
    cache = TieredCache()

    def broken() -> str:
        raise ValueError("no templates")

    with pytest.raises(ValueError):
        cache.get("k", broken)
    assert cache.get("k", lambda: "bank") == "bank"
    assert cache.stats().builds == 1
