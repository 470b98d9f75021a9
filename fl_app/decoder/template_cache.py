"""Template banks per key arrangement, kept so that strangers cannot push the device's own out.

Building a lexicon's templates for a new key arrangement costs far more than a decode (about
0.2 s for 10,000 words), and each bank takes megabytes. A device types on one or two keyboards,
but a decoding service may be sent any geometry. So banks live in two tiers:

- *residents*: arrangements used at least ``promote_after`` times, at most ``residents`` of
  them. A newcomer replaces the least-used resident only once it has been used more often, so
  a keyboard used on every swipe stays however many geometries pass through;
- *strangers*: a small LRU for arrangements seen fewer times. A stream of new geometries
  churns this tier only.

Readers and builders may be different threads: the tiers change under a lock; banks are built
outside it, once per key: a thread asking for a bank another thread is building waits for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

RESIDENTS = 4
STRANGERS = 2
PROMOTE_AFTER = 3


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and has done since it was made (the sidecar exports these)."""

    residents: int
    strangers: int
    builds: int
    hits: int


class TieredCache(Generic[T]):
    """``get(key, build)``: the cached value, else ``build()``'s, kept by the policy above."""

    def __init__(
        self,
        residents: int = RESIDENTS,
        strangers: int = STRANGERS,
        promote_after: int = PROMOTE_AFTER,
    ) -> None:
        if residents < 1 or strangers < 1 or promote_after < 1:
            raise ValueError("tier sizes and promote_after must be at least 1")
        self.max_residents = residents
        self.max_strangers = strangers
        self.promote_after = promote_after
        self._residents: dict[str, T] = {}
        self._strangers: OrderedDict[str, T] = OrderedDict()
        self._uses: dict[str, int] = {}  # for every cached key
        self._building: dict[str, Future[T]] = {}  # keys being built, for threads that wait
        self._lock = threading.Lock()
        self._builds = 0
        self._hits = 0

    def get(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            value = self._lookup(key)
            if value is not None:
                return value
            flight = self._building.get(key)
            mine = flight is None
            if mine:
                flight = self._building[key] = Future()
        assert flight is not None
        if not mine:
            return flight.result()  # another thread builds it (its error is ours too)
        try:
            built = build()  # outside the lock: other keys stay readable meanwhile
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            flight.set_exception(exc)
            raise
        with self._lock:
            del self._building[key]
            self._builds += 1
            self._uses[key] = 1
            self._strangers[key] = built
            self._promote_if_due(key)
            self._trim_strangers()
        flight.set_result(built)
        return built

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._residents), len(self._strangers), self._builds, self._hits)

    def residents(self) -> list[str]:
        with self._lock:
            return list(self._residents)

    # -- under the lock ---------------------------------------------------------------------

    def _lookup(self, key: str) -> T | None:
        value = self._residents.get(key)
        if value is None:
            value = self._strangers.get(key)
            if value is None:
                return None
            self._strangers.move_to_end(key)
        self._hits += 1
        self._uses[key] += 1
        self._promote_if_due(key)
        return value

    def _promote_if_due(self, key: str) -> None:
        if key not in self._strangers or self._uses[key] < self.promote_after:
            return
        if len(self._residents) >= self.max_residents:
            least = min(self._residents, key=self._uses.__getitem__)
            if self._uses[least] >= self._uses[key]:
                return  # stays a stranger until it has been used more than every resident
            del self._residents[least]
            del self._uses[least]
        self._residents[key] = self._strangers.pop(key)

    def _trim_strangers(self) -> None:
        while len(self._strangers) > self.max_strangers:
            key, _ = self._strangers.popitem(last=False)
            del self._uses[key]
