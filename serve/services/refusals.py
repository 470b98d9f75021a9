"""Releases the sidecar refused, remembered across restarts.

A refused release is named by its key (run, round, tensors sha256) and written with its reason
to ``<device_dir>/refused.json`` (atomically), so a restarted sidecar neither downloads nor
builds it again: without this, a release that crashes the process would be retried at every
start. The watcher skips a remembered key (a release refused as too large is tried again once
the cap is raised); a forced reload (``POST /api/v1/model/reload``) tries it again, and a
release that then loads is forgotten. At most ``MAX_REMEMBERED`` keys
are kept (the newest). An unreadable file is logged and starts an empty list: the worst case is
one more bounded download.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_app.checkpoints.errors import CheckpointError
from fl_app.checkpoints.format import decode_json, encode_json, write_atomic

log = logging.getLogger("serve.model")

REFUSALS_FILE = "refused.json"
REFUSALS_VERSION = 1
MAX_REMEMBERED = 32
MAX_FILE_BYTES = 256 * 1024


class CheckpointRefused(Exception):
    """A checkpoint that must not be served; ``reason`` is a short stable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ReleaseKey:
    """What names one release's contents: a pointer to another checkpoint is another key."""

    run_id: str
    round: int
    sha256: str

    @classmethod
    def of(cls, pointer: dict[str, Any]) -> ReleaseKey:
        return cls(str(pointer["run_id"]), int(pointer["round"]), str(pointer["sha256"]))

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "round": self.round, "sha256": self.sha256}


class RefusalLog:
    """The remembered refusals, newest first, mirrored to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries = self._load()

    def find(self, key: ReleaseKey) -> dict[str, Any] | None:
        return next((e for e in self._entries if _key_of(e) == key), None)

    def entries(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._entries]

    def remember(
        self, key: ReleaseKey, reason: str, message: str, max_bytes: int | None = None
    ) -> None:
        """``max_bytes``: the download cap in force, for a refusal that depends on it."""
        entry = {**key.to_dict(), "reason": reason, "message": message[:500], "at": time.time()}
        if max_bytes is not None:
            entry["max_bytes"] = max_bytes
        self._entries = [entry, *(e for e in self._entries if _key_of(e) != key)]
        del self._entries[MAX_REMEMBERED:]
        self._save()

    def forget(self, key: ReleaseKey) -> None:
        if self.find(key) is not None:
            self._entries = [e for e in self._entries if _key_of(e) != key]
            self._save()

    def _save(self) -> None:
        data = encode_json({"version": REFUSALS_VERSION, "refused": self._entries})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data)
        except OSError as exc:  # still remembered until the process ends
            log.warning("cannot write the refused releases", extra={"detail": str(exc)})

    def _load(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read the refused releases", extra={"detail": str(exc)})
            return []
        try:
            if len(data) > MAX_FILE_BYTES:
                raise CheckpointError(f"{self.path.name} is larger than {MAX_FILE_BYTES} bytes")
            stored = decode_json(data, self.path.name, "refused releases")
            entries = stored.get("refused")
            if stored.get("version") != REFUSALS_VERSION or not isinstance(entries, list):
                raise CheckpointError(f"{self.path.name} is not a version 1 list")
        except CheckpointError as exc:
            log.warning("refused releases unreadable; starting empty", extra={"detail": str(exc)})
            return []
        return [e for e in entries if _key_of(e) is not None][:MAX_REMEMBERED]


def _key_of(entry: Any) -> ReleaseKey | None:
    if not isinstance(entry, dict):
        return None
    run_id, rnd, sha = entry.get("run_id"), entry.get("round"), entry.get("sha256")
    if not (isinstance(run_id, str) and isinstance(sha, str)):
        return None
    if isinstance(rnd, bool) or not isinstance(rnd, int):
        return None
    return ReleaseKey(run_id, rnd, sha)
