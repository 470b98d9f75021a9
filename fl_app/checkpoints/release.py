"""The release pointer: ``releases/latest.json`` and its move log ``releases/history.jsonl``.

``latest.json`` names the checkpoint the sidecars serve::

    {"format_version": 1, "run_id": "r1", "round": 3, "path": "runs/r1/round-0003",
     "sha256": "...", "metrics": {"top1": 0.41}, "reason": "auto-best", "pinned": false,
     "updated_at": "2025-01-01T00:00:00.000000Z"}

Moves: ``auto_release`` (reason ``auto-best``) when a round's metric beats every earlier round of
the same run and the pointer is not pinned; ``promote`` and ``rollback`` pin it; ``unpin`` lets
automatic releases resume. Every move appends ``{"when", "from", "to", "reason", "pinned"}`` to
``history.jsonl`` (``from``/``to`` are ``{"run_id", "round", "path"}``, ``from`` is null for the
first release). S3 has no append, so the history is read, extended and rewritten; the pointer is
written before the history line. There is one writer at a time (the ServerApp, or an operator's
CLI): no locking.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any

from .base import checkpoint_path
from .errors import (
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    PointerMalformed,
    UnsupportedFormat,
)
from .format import FORMAT_VERSION, decode_json, encode_json, encode_json_line, to_jsonable, utc_now
from .limits import MAX_POINTER_BYTES, ReadLimit

if TYPE_CHECKING:  # pragma: no cover
    from .base import Backend

log = logging.getLogger(__name__)

RELEASE_KEY = "releases/latest.json"
HISTORY_KEY = "releases/history.jsonl"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_pointer(pointer: dict[str, Any]) -> dict[str, Any]:
    """``pointer`` if it is a release pointer a reader can follow, else ``PointerMalformed``
    (or ``UnsupportedFormat`` for another ``format_version``), naming the bad field.

    Its ``path`` must be the one its run and round imply: a pointer names a checkpoint of this
    store, never another place. Fields beyond the five checked are informational.
    """
    version = pointer.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"release pointer has format_version {version}; this reader knows {FORMAT_VERSION}"
        )
    if version != FORMAT_VERSION:
        raise PointerMalformed(f"release pointer's format_version is {version!r}")
    try:
        expected = checkpoint_path(pointer.get("run_id"), pointer.get("round"))  # type: ignore[arg-type]
    except CheckpointError as exc:
        raise PointerMalformed(f"release pointer: {exc}") from None
    if pointer.get("path") != expected:
        raise PointerMalformed(
            f"release pointer's path {pointer.get('path')!r} is not {expected!r}"
        )
    sha = pointer.get("sha256")
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise PointerMalformed(f"release pointer's sha256 {sha!r} is not 64 lower-case hex digits")
    return pointer


def _ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": obj["run_id"], "round": obj["round"], "path": obj["path"]}


def _ref_key(obj: dict[str, Any] | None) -> tuple[str, int] | None:
    if not obj:
        return None
    return (obj.get("run_id"), obj.get("round"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def release_stack(history: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Releases still "underneath" the current one, oldest first (rollbacks pop the stack)."""
    stack: list[tuple[str, int]] = []
    for entry in history:
        to = _ref_key(entry.get("to"))
        if to is None:
            continue
        if entry.get("reason") == "rollback":
            while stack and stack[-1] != to:
                stack.pop()
            if not stack:
                stack.append(to)
        elif not stack or stack[-1] != to:
            stack.append(to)
    return stack


class ReleaseMixin:
    """Release-pointer operations of ``CheckpointStore`` (see the module docstring)."""

    backend: Backend

    if TYPE_CHECKING:  # pragma: no cover - provided by CheckpointStore

        def load_manifest(self, run_id: str, server_round: int | None = None) -> dict: ...
        def verify(self, run_id: str, server_round: int | None = None) -> dict: ...
        def list_rounds(self, run_id: str) -> list[int]: ...
        def round_metrics(self, run_id: str, server_round: int) -> dict: ...
        def describe(self) -> str: ...

    def read_release(self, limit: ReadLimit | None = None) -> dict[str, Any] | None:
        """The current release pointer, or None when nothing was released yet.

        Read with at most ``MAX_POINTER_BYTES`` (and ``limit``'s deadline); ``check_pointer``
        is the strict check for a reader that follows it.
        """
        limit = (limit or ReadLimit()).capped(MAX_POINTER_BYTES)
        try:
            data = self.backend.get_bytes(RELEASE_KEY, limit=limit)
        except CheckpointNotFound:
            return None
        pointer = decode_json(data, RELEASE_KEY, "release pointer")
        if not {"run_id", "round", "path", "sha256"} <= pointer.keys():
            raise CheckpointCorrupt(f"release pointer {RELEASE_KEY} lacks run_id/round/path/sha256")
        return pointer

    def history(self) -> list[dict[str, Any]]:
        """Every pointer move, oldest first (unreadable lines are skipped with a warning)."""
        try:
            data = self.backend.get_bytes(HISTORY_KEY)
        except CheckpointNotFound:
            return []
        entries = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s line %d is not JSON; skipped", HISTORY_KEY, number)
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def _append_history(self, entry: dict[str, Any]) -> None:
        try:
            existing = self.backend.get_bytes(HISTORY_KEY)
        except CheckpointNotFound:
            existing = b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        self.backend.put_bytes(HISTORY_KEY, existing + encode_json_line(entry))

    def _move_pointer(
        self,
        manifest: dict[str, Any],
        reason: str,
        pinned: bool,
        metrics: dict[str, Any] | None = None,
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = utc_now()
        pointer = {
            "format_version": FORMAT_VERSION,
            "run_id": manifest["run_id"],
            "round": manifest["round"],
            "path": manifest["path"],
            "sha256": manifest["sha256"],
            "metrics": to_jsonable(metrics if metrics is not None else manifest.get("metrics", {})),
            "reason": reason,
            "pinned": pinned,
            "updated_at": now,
        }
        # Pointer first: the checkpoint it names is complete (its manifest exists).
        self.backend.put_bytes(RELEASE_KEY, encode_json(pointer))
        self._append_history(
            {
                "when": now,
                "from": _ref(current) if current else None,
                "to": _ref(pointer),
                "reason": reason,
                "pinned": pinned,
            }
        )
        log.info(
            "release -> %s (%s%s) in %s",
            pointer["path"],
            reason,
            ", pinned" if pinned else "",
            self.describe(),
        )
        return pointer

    def auto_release(
        self,
        run_id: str,
        server_round: int,
        metrics: dict[str, Any] | None = None,
        metric_key: str = "top1",
        *,
        must_beat: float | None = None,
    ) -> bool:
        """Move the pointer to this round if its metric beats every earlier round of the run
        and `must_beat`: the release it would replace, measured by the same evaluator (so a run
        from random weights never replaces a better model that other runs released).

        Does nothing (returns False) when the pointer is pinned, the metric is missing or not a
        finite number, an earlier round of the same run is as good or better, the metric does
        not exceed `must_beat`, or the pointer already names this round. ``metrics`` defaults
        to the metrics in the round's manifest.
        The checkpoint must be stored already (``CheckpointNotFound`` otherwise).
        """
        manifest = self.load_manifest(run_id, server_round)
        if metrics is None:
            metrics = manifest.get("metrics") or {}
        value = _number(metrics.get(metric_key))
        if value is None:
            log.info("auto release: %s has no numeric %r metric", manifest["path"], metric_key)
            return False
        current = self.read_release()
        if current is not None and current.get("pinned"):
            return False
        if _ref_key(current) == (run_id, server_round):
            return False
        if must_beat is not None and not value > must_beat:
            log.info(
                "auto release: %s %s=%.4f does not beat the current release's %.4f",
                manifest["path"],
                metric_key,
                value,
                must_beat,
            )
            return False
        for earlier in self.list_rounds(run_id):
            if earlier >= server_round:
                continue
            try:
                other = _number(self.round_metrics(run_id, earlier).get(metric_key))
            except (CheckpointCorrupt, CheckpointNotFound) as exc:
                log.warning("auto release: ignoring round %d of %s: %s", earlier, run_id, exc)
                continue
            if other is None:
                continue
            if other >= value:
                return False
        self._move_pointer(manifest, "auto-best", pinned=False, metrics=metrics, current=current)
        return True

    def promote(self, run_id: str, server_round: int) -> dict[str, Any]:
        """Point the release at this checkpoint (verified first) and pin it; a malformed
        pointer is replaced (promote is how an operator repairs one)."""
        manifest = self.verify(run_id, server_round)
        try:
            current = self.read_release()
            current = check_pointer(current) if current is not None else None
        except CheckpointCorrupt as exc:
            log.warning("replacing a malformed release pointer: %s", exc)
            current = None
        return self._move_pointer(manifest, "promote", pinned=True, current=current)

    def rollback(self) -> dict[str, Any]:
        """Move the pointer back to the release before the current one, and pin it.

        Repeated rollbacks walk further back (rollbacks pop the release stack built from
        the history). The target is verified first.
        """
        current = self.read_release()
        if current is None:
            raise CheckpointNotFound(f"no release to roll back in {self.describe()}")
        stack = release_stack(self.history())
        current_key = _ref_key(current)
        while stack and stack[-1] == current_key:
            stack.pop()
        while stack:
            run_id, server_round = stack.pop()
            if (run_id, server_round) == current_key:
                continue
            try:
                manifest = self.verify(run_id, server_round)
            except CheckpointNotFound:
                log.warning(
                    "rollback: runs/%s round %s no longer exists; skipped", run_id, server_round
                )
                continue
            return self._move_pointer(manifest, "rollback", pinned=True, current=current)
        raise CheckpointError(
            f"nothing to roll back to: no earlier release than {current['path']} in the history"
        )

    def unpin(self) -> dict[str, Any]:
        """Let automatic releases move the pointer again (the pointer itself stays)."""
        current = self.read_release()
        if current is None:
            raise CheckpointNotFound(f"no release to unpin in {self.describe()}")
        if current.get("pinned"):
            current = {**current, "pinned": False, "updated_at": utc_now()}
            self.backend.put_bytes(RELEASE_KEY, encode_json(current))
            log.info("release %s unpinned in %s", current["path"], self.describe())
        return current
