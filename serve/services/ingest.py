"""Labelled swipes into the swipe store: group commit, answered only after the commit.

Requests are validated on the event loop (so a bad swipe gets its 422 at once and never
reaches the writer), then queued. One writer thread takes every request waiting and commits
all their swipes in *one* SQLite transaction (``SwipeStore.append_many``), then resolves each
request's future with its ids. A request's ``202`` is sent only after that future resolves,
so an acknowledged swipe is on disk; a crash before the commit loses only unacknowledged
ones. Concurrent requests share one commit (and its fsync): durable and fast at once.

If a combined commit fails, each request is retried in its own transaction so one request's
problem cannot fail another. ``close()`` commits everything queued before it returns; requests
arriving after it are refused with 503.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass

from fl_app.decoder.errors import SwipeError
from fl_app.decoder.swipe import Swipe
from fl_app.swipes.store import StoreError, SwipeStore

from ..errors import ApiError, invalid_swipe
from .metrics import Metrics

log = logging.getLogger("serve.ingest")


@dataclass
class _Request:
    swipes: list[Swipe]
    keys: list[str | None]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


def _deliver(future: asyncio.Future, ids: list[int] | None, error: BaseException | None) -> None:
    if future.done():  # the client went away; the swipes are committed anyway
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(ids)


class Ingest:
    def __init__(self, swipes: SwipeStore, metrics: Metrics, *, max_group: int = 2048) -> None:
        self.swipes = swipes
        self.metrics = metrics
        self.max_group = max_group
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stored = 0
        self.commits = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="swipefl-ingest", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Refuse new requests, commit every queued one, stop the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def submit(self, swipes: list[Swipe], keys: list[str | None]) -> list[int]:
        """Queue swipes for the next group commit; return their ids once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            if self._closed:
                raise ApiError(
                    "STORE_UNAVAILABLE",
                    "the sidecar is shutting down",
                    headers={"Retry-After": "1"},
                )
            self._queue.put(_Request(swipes, keys, future, loop))
        # Shielded: a cancelled request (client gone) must not cancel the shared commit.
        return await asyncio.shield(future)

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, n, stop = [first], len(first.swipes), False
            while n < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
                n += len(more.swipes)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Request]) -> None:
        swipes = [s for r in group for s in r.swipes]
        keys = [k for r in group for k in r.keys]
        t0 = time.perf_counter()
        try:
            before = self.swipes.max_id()
            ids = self.swipes.append_many(swipes, idempotency_keys=keys, source="device")
        except Exception as exc:
            if len(group) > 1:
                for request in group:
                    self._commit([request])
                return
            self._fail(group[0], exc)
            return
        self.metrics.commit_latency.observe(time.perf_counter() - t0)
        # Ids above the previous maximum are new rows; others were stored before (same key).
        added = len({i for i in ids if i > before})
        self.metrics.commit_group.observe(len(swipes))
        self.metrics.swipes_stored.inc(added)
        self.stored += added
        self.commits += 1
        start = 0
        for request in group:
            part = ids[start : start + len(request.swipes)]
            start += len(request.swipes)
            request.loop.call_soon_threadsafe(_deliver, request.future, part, None)

    def _fail(self, request: _Request, exc: Exception) -> None:
        if isinstance(exc, SwipeError):
            error: ApiError = invalid_swipe(exc)
        elif isinstance(exc, ValueError):
            error = ApiError("INVALID_REQUEST", str(exc))
        elif isinstance(exc, (StoreError, sqlite3.Error, OSError)):
            log.error("swipe commit failed", extra={"error_type": type(exc).__name__})
            error = ApiError(
                "STORE_UNAVAILABLE", "the swipe store is unavailable", headers={"Retry-After": "1"}
            )
        else:
            log.error("swipe commit failed", extra={"error_type": type(exc).__name__})
            error = ApiError("INTERNAL", "swipe commit failed")
        request.loop.call_soon_threadsafe(_deliver, request.future, None, error)
