"""Labelled swipes into the swipe store: group commit, answered only after the commit.

Requests are validated on the event loop (so a bad swipe gets its 422 at once and never
reaches the writer), then queued. One writer thread takes every request waiting and commits
all their swipes in *one* SQLite transaction (``SwipeStore.append_submissions``), then resolves
each request's future with its ids. A request's ``202`` is sent only after that future resolves,
so an acknowledged swipe is on disk; a crash before the commit loses only unacknowledged
ones. Concurrent requests share one commit (and its fsync): durable and fast at once.

If a combined commit fails, each request is retried in its own transaction so one request's
problem cannot fail another: a reused key with another body (409), a batch larger than the
store's ``max_rows`` (413) or a full disk (507) is that request's answer alone, and it stored
nothing. ``close()`` commits everything queued before it returns; requests arriving after it are
refused with 503.
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
from fl_app.swipes.store import (
    CapacityError,
    IdempotencyConflictError,
    StoreError,
    StoreFullError,
    Submission,
    SwipeStore,
)

from ..errors import ApiError, invalid_swipe
from .metrics import Metrics

log = logging.getLogger("serve.ingest")


@dataclass
class _Request:
    submission: Submission
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

    async def submit(
        self, swipes: list[Swipe], idempotency_key: str | None, *, batch: bool
    ) -> list[int]:
        """Queue one request's swipes for the next group commit; their ids once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            if self._closed:
                raise ApiError(
                    "STORE_UNAVAILABLE",
                    "the sidecar is shutting down",
                    headers={"Retry-After": "1"},
                )
            submission = Submission(swipes, idempotency_key, batch)
            self._queue.put(_Request(submission, future, loop))
        # Shielded: a cancelled request (client gone) must not cancel the shared commit.
        return await asyncio.shield(future)

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, n, stop = [first], len(first.submission.swipes), False
            while n < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
                n += len(more.submission.swipes)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Request]) -> None:
        t0 = time.perf_counter()
        try:
            before = self.swipes.max_id()
            ids = self.swipes.append_submissions([r.submission for r in group], source="device")
        except Exception as exc:
            if len(group) > 1:
                for request in group:
                    self._commit([request])
                return
            self._fail(group[0], exc)
            return
        self.metrics.commit_latency.observe(time.perf_counter() - t0)
        # Ids above the previous maximum are new rows; others were stored before (same key).
        added = len({i for part in ids for i in part if i > before})
        self.metrics.commit_group.observe(sum(len(part) for part in ids))
        self.metrics.swipes_stored.inc(added)
        self.stored += added
        self.commits += 1
        for request, part in zip(group, ids, strict=True):
            request.loop.call_soon_threadsafe(_deliver, request.future, part, None)

    def _fail(self, request: _Request, exc: Exception) -> None:
        request.loop.call_soon_threadsafe(_deliver, request.future, None, _answer(exc))


def _answer(exc: Exception) -> ApiError:
    """The error answer for a request whose commit failed alone (it stored nothing)."""
    if isinstance(exc, SwipeError):
        return invalid_swipe(exc)
    if isinstance(exc, IdempotencyConflictError):
        return ApiError(
            "IDEMPOTENCY_CONFLICT",
            "this Idempotency-Key was already used with a different body; nothing was stored",
        )
    if isinstance(exc, CapacityError):
        return ApiError(
            "PAYLOAD_TOO_LARGE",
            f"{exc.rows} swipes cannot fit in the swipe store (SWIPEFL_RETENTION_MAX_ROWS="
            f"{exc.max_rows}); nothing was stored",
            reason="EXCEEDS_STORE_CAPACITY",
        )
    if isinstance(exc, StoreFullError):
        log.error("swipe commit failed: storage full")
        return ApiError("STORE_FULL", "the device's storage is full; nothing was stored")
    if isinstance(exc, ValueError):
        return ApiError("INVALID_REQUEST", str(exc))
    log.error("swipe commit failed", extra={"error_type": type(exc).__name__})
    if isinstance(exc, (StoreError, sqlite3.Error, OSError)):
        return ApiError(
            "STORE_UNAVAILABLE", "the swipe store is unavailable", headers={"Retry-After": "1"}
        )
    return ApiError("INTERNAL", "swipe commit failed")
