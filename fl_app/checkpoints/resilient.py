"""Checkpoint writes that survive a store outage.

``ResilientCheckpointWriter.save`` serialises the checkpoint at once (a snapshot), then tries to
store it. When the store is unavailable (or refuses the credentials) the checkpoint stays pending
in memory (and, with ``spool_dir``, in a local directory with the store's layout) and later calls,
or ``flush``, retry. Operations run in order: a pointer move waits behind its checkpoint, and
later checkpoints wait behind earlier ones. ``save`` and ``auto_release`` never raise for store
errors and never hang: each call spends at most ``max_wait_s`` starting writes, plus at most one
backend operation's own bound (``S3Backend``: ``max_retry_s`` plus one timeout), and after a
failure automatic retries back off (``flush`` always tries).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointAuthError, CheckpointError, StoreUnavailable
from .format import MANIFEST_FILE, MODEL_FILE, decode_checkpoint, decode_json, utc_now
from .local import LocalDirBackend
from .store import CheckpointRef, CheckpointStore, PreparedCheckpoint, checkpoint_path

log = logging.getLogger(__name__)

# What a release must exceed: a score, nothing (None), or a callable that measures it when the
# check runs, so a check queued during an outage measures the incumbent once the store is back
# (it may raise StoreUnavailable: the check then stays pending).
ReleaseFloor = float | None | Callable[[], float | None]


@dataclass
class _Op:
    kind: str  # "checkpoint" | "release"
    run_id: str
    round: int
    prepared: PreparedCheckpoint | None = None
    metrics: dict[str, Any] | None = None
    metric_key: str = "top1"
    must_beat: ReleaseFloor = None
    since: str = field(default_factory=utc_now)
    attempts: int = 0
    last_error: str | None = None
    spooled: bool = False

    @property
    def path(self) -> str:
        return checkpoint_path(self.run_id, self.round)

    def describe(self) -> str:
        if self.kind == "checkpoint":
            size = self.prepared.nbytes if self.prepared else 0
            return f"checkpoint {self.path} ({_human(size)})"
        value = (self.metrics or {}).get(self.metric_key)
        return f"release check (auto-best) for {self.path} ({self.metric_key}={value})"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


class ResilientCheckpointWriter:
    """Saves checkpoints (and auto releases) through outages; see the module docstring."""

    def __init__(
        self,
        store: CheckpointStore,
        max_wait_s: float = 10.0,
        *,
        spool_dir: str | Path | None = None,
        retry_interval_s: float = 1.0,
        max_retry_interval_s: float = 60.0,
    ) -> None:
        self.store = store
        self.max_wait_s = max_wait_s
        self.retry_interval_s = retry_interval_s
        self.max_retry_interval_s = max_retry_interval_s
        self._queue: list[_Op] = []
        self._failed: list[dict[str, Any]] = []
        self._stored: list[CheckpointRef] = []
        self._lock = threading.RLock()
        self._next_try = 0.0
        self._interval = retry_interval_s
        self._spool = CheckpointStore(LocalDirBackend(spool_dir)) if spool_dir else None
        if self._spool is not None:
            self._recover_spool()

    # -- public API ----------------------------------------------------------------------------

    def save(
        self,
        run_id: str,
        server_round: int,
        tensors: dict[str, np.ndarray],
        manifest: dict[str, Any] | None = None,
        extra: dict[str, bytes] | None = None,
    ) -> CheckpointRef | None:
        """Store a checkpoint now if possible; return its ref, or None if it is pending.

        Invalid input (bad run id, non-array tensors) raises ``CheckpointError`` at once; store
        errors never do.
        """
        prepared = self.store.prepare(run_id, server_round, tensors, manifest, extra)
        op = _Op("checkpoint", run_id, server_round, prepared=prepared)
        with self._lock:
            self._queue.append(op)
            self._drain(time.monotonic() + self.max_wait_s, force=False)
            if op in self._queue:
                self._spool_op(op)
                return None
            return prepared.ref if not self._is_failed(op) else None

    def auto_release(
        self,
        run_id: str,
        server_round: int,
        metrics: dict[str, Any] | None = None,
        metric_key: str = "top1",
        must_beat: ReleaseFloor = None,
    ) -> bool | None:
        """``CheckpointStore.auto_release``, queued behind pending checkpoints.

        Returns whether the pointer moved, or None when the check is pending.
        """
        op = _Op(
            "release",
            run_id,
            server_round,
            metrics=dict(metrics) if metrics is not None else None,
            metric_key=metric_key,
            must_beat=must_beat,
        )
        with self._lock:
            self._queue.append(op)
            results = self._drain(time.monotonic() + self.max_wait_s, force=False)
            if op in self._queue or self._is_failed(op):
                return None
            return results.get(id(op))

    def flush(self, deadline_s: float | None = None) -> bool:
        """Retry pending writes for up to ``deadline_s`` seconds; True when nothing is pending."""
        budget = self.max_wait_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + max(0.0, budget)
        interval = self.retry_interval_s
        with self._lock:
            while True:
                self._drain(deadline, force=True)
                if not self._queue:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(interval, left))
                interval = min(interval * 2, self.max_retry_interval_s)

    def pending(self) -> list[dict[str, Any]]:
        """What is not stored yet, oldest first."""
        with self._lock:
            return [
                {
                    "kind": op.kind,
                    "run_id": op.run_id,
                    "round": op.round,
                    "path": op.path,
                    "since": op.since,
                    "attempts": op.attempts,
                    "last_error": op.last_error,
                    "bytes": op.prepared.nbytes if op.prepared else 0,
                    "spooled": op.spooled,
                    "description": op.describe(),
                }
                for op in self._queue
            ]

    def failed(self) -> list[dict[str, Any]]:
        """Operations dropped because the store rejected them for good (not an outage)."""
        with self._lock:
            return list(self._failed)

    def report(self) -> str:
        """A human-readable summary of the store's state as this writer saw it."""
        with self._lock:
            where = self.store.describe()
            lines = []
            if self._queue:
                first = self._queue[0]
                attempts = max(op.attempts for op in self._queue)
                n_ckpt = sum(op.kind == "checkpoint" for op in self._queue)
                lines.append(
                    f"checkpoint store {where}: {len(self._queue)} write(s) PENDING "
                    f"({n_ckpt} checkpoint(s)) since {first.since}, {attempts} attempt(s); "
                    f"last error: {first.last_error or 'not tried yet'}"
                )
                for op in self._queue:
                    spool = ""
                    if op.spooled and self._spool is not None:
                        spool = f", spooled under {self._spool.backend.root}"
                    lines.append(f"  pending {op.describe()}{spool}")
            else:
                lines.append(f"checkpoint store {where}: nothing pending")
            if self._stored:
                lines.append(
                    f"stored {len(self._stored)} checkpoint(s) through this writer; "
                    f"last {self._stored[-1].path}"
                )
            for item in self._failed:
                lines.append(f"  FAILED {item['description']}: {item['error']}")
            return "\n".join(lines)

    # -- internals -----------------------------------------------------------------------------

    def _is_failed(self, op: _Op) -> bool:
        return any(item["op_id"] == id(op) for item in self._failed)

    def _drain(self, deadline: float, *, force: bool) -> dict[int, Any]:
        """Run queued operations in order until done, a store failure, or the deadline."""
        results: dict[int, Any] = {}
        if not force and time.monotonic() < self._next_try:
            return results
        while self._queue and time.monotonic() < deadline:
            op = self._queue[0]
            op.attempts += 1
            try:
                results[id(op)] = self._run(op)
            except (StoreUnavailable, CheckpointAuthError) as exc:
                op.last_error = str(exc)
                self._next_try = time.monotonic() + self._interval
                self._interval = min(self._interval * 2, self.max_retry_interval_s)
                log.warning(
                    "checkpoint store unavailable; %d write(s) pending (%s): %s",
                    len(self._queue),
                    op.describe(),
                    exc,
                )
                return results
            except Exception as exc:  # rejected for good: drop it, keep the queue moving
                if isinstance(exc, CheckpointError):
                    log.error("dropping %s: %s", op.describe(), exc)
                else:
                    log.exception("dropping %s after an unexpected error", op.describe())
                self._failed.append(
                    {
                        "op_id": id(op),
                        "kind": op.kind,
                        "path": op.path,
                        "description": op.describe(),
                        "error": f"{type(exc).__name__}: {exc}",
                        "when": utc_now(),
                    }
                )
            self._queue.pop(0)
            self._interval = self.retry_interval_s
            self._next_try = 0.0
        return results

    def _run(self, op: _Op) -> Any:
        if op.kind == "checkpoint":
            assert op.prepared is not None
            ref = self.store.write_prepared(op.prepared)
            self._stored.append(ref)
            if op.attempts > 1:
                log.info("stored pending checkpoint %s after %d attempts", ref.path, op.attempts)
            if op.spooled and self._spool is not None:
                try:
                    self._spool.delete_checkpoint(op.run_id, op.round)
                except CheckpointError as exc:
                    log.warning("could not remove spooled copy of %s: %s", ref.path, exc)
            return ref
        must_beat = op.must_beat() if callable(op.must_beat) else op.must_beat
        return self.store.auto_release(
            op.run_id, op.round, op.metrics, op.metric_key, must_beat=must_beat
        )

    def _spool_op(self, op: _Op) -> None:
        if self._spool is None or op.spooled or op.prepared is None:
            return
        try:
            self._spool.write_prepared(op.prepared)
            op.spooled = True
        except CheckpointError as exc:
            log.warning("could not spool %s locally: %s", op.describe(), exc)

    def _recover_spool(self) -> None:
        """Queue checkpoints a previous process left in the spool directory."""
        assert self._spool is not None
        backend = self._spool.backend
        for run_id in self._spool.list_runs():
            for server_round in self._spool.list_rounds(run_id):
                path = checkpoint_path(run_id, server_round)
                try:
                    key = f"{path}/{MANIFEST_FILE}"
                    manifest = decode_json(backend.get_bytes(key), key, "spooled manifest")
                    files = manifest.get("files") or {}
                    extra = {
                        name: backend.get_bytes(f"{path}/{name}")
                        for name in files
                        if name != MODEL_FILE
                    }
                    model = backend.get_bytes(f"{path}/{MODEL_FILE}")
                    decode_checkpoint(model, manifest, path=path)
                    prepared = PreparedCheckpoint(run_id, server_round, model, manifest, extra)
                except CheckpointError as exc:
                    log.warning("spooled checkpoint %s is unreadable; left in place: %s", path, exc)
                    continue
                op = _Op("checkpoint", run_id, server_round, prepared=prepared, spooled=True)
                op.since = manifest.get("created_at", op.since)
                self._queue.append(op)
                log.info("recovered spooled checkpoint %s from %s", path, backend.root)
