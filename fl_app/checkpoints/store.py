"""The checkpoint store: safetensors + manifest per round, over any ``Backend``.

Layout (under a local directory or a bucket prefix)::

    runs/<run-id>/round-0003/model.safetensors
    runs/<run-id>/round-0003/manifest.json
    runs/<run-id>/round-0003/<extra files>      # e.g. strategy_state.safetensors
    releases/latest.json
    releases/history.jsonl

A round exists once its ``manifest.json`` exists: ``save`` writes the tensors (and extras) first
and the manifest last, so a listed round is always complete. The two files are the checkpoint
format of ``format.py``; the store adds the run, round, path and a ``files`` table (sha256 and
size of every file, extras included).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import RUNS_PREFIX, Backend, check_key, check_round, check_run_id, checkpoint_path
from .errors import CheckpointCorrupt, CheckpointError, CheckpointNotFound
from .format import (
    FORMAT_FIELDS,
    MANIFEST_FILE,
    MODEL_FILE,
    decode_checkpoint,
    decode_json,
    encode_checkpoint,
    encode_json,
    redact_secrets,
    sha256_hex,
    to_jsonable,
    utc_now,
    verify_sha256,
)
from .limits import MAX_MANIFEST_BYTES, ReadLimit
from .release import ReleaseMixin

log = logging.getLogger(__name__)

_ROUND_DIR_RE = re.compile(r"^round-(\d+)$")
_EXTRA_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Manifest fields the store owns (a caller's values for them are replaced).
STORE_FIELDS = (*FORMAT_FIELDS, "run_id", "round", "created_at", "path", "files")
_SECRET_ENV_VARS = (
    "SWIPEFL_S3_ACCESS_KEY",
    "SWIPEFL_S3_SECRET_KEY",
    "SWIPEFL_API_TOKEN",
    "SWIPEFL_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


@dataclass(frozen=True)
class CheckpointRef:
    """Where a stored checkpoint lives and what its tensors hash to."""

    run_id: str
    round: int
    path: str
    sha256: str

    @property
    def tensors_key(self) -> str:
        return f"{self.path}/{MODEL_FILE}"

    @property
    def manifest_key(self) -> str:
        return f"{self.path}/{MANIFEST_FILE}"


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint."""

    tensors: dict[str, np.ndarray]
    manifest: dict[str, Any]
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def round(self) -> int:
        return self.manifest["round"]

    @property
    def path(self) -> str:
        return self.manifest["path"]

    @property
    def ref(self) -> CheckpointRef:
        return CheckpointRef(self.run_id, self.round, self.path, self.manifest["sha256"])


@dataclass
class PreparedCheckpoint:
    """A checkpoint serialised in memory, ready to write (see ``CheckpointStore.prepare``)."""

    run_id: str
    round: int
    tensors_bytes: bytes
    manifest: dict[str, Any]
    extra: dict[str, bytes]

    @property
    def path(self) -> str:
        return checkpoint_path(self.run_id, self.round)

    @property
    def nbytes(self) -> int:
        return len(self.tensors_bytes) + sum(len(v) for v in self.extra.values())

    @property
    def ref(self) -> CheckpointRef:
        return CheckpointRef(self.run_id, self.round, self.path, self.manifest["sha256"])


def _known_secrets(backend: Backend) -> tuple[str, ...]:
    values = [os.environ.get(name, "") for name in _SECRET_ENV_VARS]
    getter = getattr(backend, "_redact_values", None)
    if callable(getter):
        values.extend(getter())
    # Very short values would redact ordinary words; credentials are longer than this.
    return tuple(sorted({v for v in values if v and len(v) >= 6}))


class CheckpointStore(ReleaseMixin):
    """Checkpoints of federated runs plus the release pointer, over one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # (run_id, round) -> {metric: value}; filled from manifests, used by auto_release.
        self._metrics_cache: dict[tuple[str, int], dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"CheckpointStore({self.backend!r})"

    def describe(self) -> str:
        return self.backend.describe()

    # -- writing -----------------------------------------------------------------------------

    def prepare(
        self,
        run_id: str,
        server_round: int,
        tensors: dict[str, np.ndarray],
        manifest: dict[str, Any] | None = None,
        extra: dict[str, bytes] | None = None,
    ) -> PreparedCheckpoint:
        """Validate and serialise a checkpoint in memory (a snapshot: later edits don't leak in)."""
        check_run_id(run_id)
        check_round(server_round)
        extra_bytes: dict[str, bytes] = {}
        for name, data in (extra or {}).items():
            if not isinstance(name, str) or not _EXTRA_NAME_RE.match(name):
                raise CheckpointError(f"invalid extra file name {name!r}")
            if name in (MODEL_FILE, MANIFEST_FILE):
                raise CheckpointError(f"extra file name {name!r} is reserved")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise CheckpointError(f"extra file {name!r} must be bytes")
            extra_bytes[name] = bytes(data)

        user = to_jsonable(dict(manifest or {}))
        user = redact_secrets(user, _known_secrets(self.backend))
        for key in STORE_FIELDS:
            user.pop(key, None)
        tensors_bytes, full = encode_checkpoint(
            tensors,
            {
                **user,
                "run_id": run_id,
                "round": server_round,
                "created_at": utc_now(),
                "path": checkpoint_path(run_id, server_round),
            },
        )
        files = {MODEL_FILE: {"sha256": full["sha256"], "size": len(tensors_bytes)}}
        for name, data in sorted(extra_bytes.items()):
            files[name] = {"sha256": sha256_hex(data), "size": len(data)}
        full["files"] = files
        full.setdefault("metrics", {})
        return PreparedCheckpoint(run_id, server_round, tensors_bytes, full, extra_bytes)

    def write_prepared(self, prepared: PreparedCheckpoint) -> CheckpointRef:
        """Write tensors, then extras, then the manifest (which makes the round visible)."""
        path = prepared.path
        self.backend.put_bytes(f"{path}/{MODEL_FILE}", prepared.tensors_bytes)
        for name, data in sorted(prepared.extra.items()):
            self.backend.put_bytes(f"{path}/{name}", data)
        self.backend.put_bytes(f"{path}/{MANIFEST_FILE}", encode_json(prepared.manifest))
        self._remember_metrics(prepared.manifest)
        log.info("saved checkpoint %s to %s", path, self.describe())
        return prepared.ref

    def save(
        self,
        run_id: str,
        server_round: int,
        tensors: dict[str, np.ndarray],
        manifest: dict[str, Any] | None = None,
        extra: dict[str, bytes] | None = None,
    ) -> CheckpointRef:
        """Store a round's tensors (+ extra files) and manifest; overwrites the same round."""
        return self.write_prepared(self.prepare(run_id, server_round, tensors, manifest, extra))

    # -- reading -----------------------------------------------------------------------------

    def _resolve_round(self, run_id: str, server_round: int | None) -> int:
        check_run_id(run_id)
        if server_round is not None:
            return check_round(server_round)
        latest = self.latest_round(run_id)
        if latest is None:
            raise CheckpointNotFound(f"run {run_id!r} has no checkpoints in {self.describe()}")
        return latest

    def load_manifest(
        self, run_id: str, server_round: int | None = None, *, limit: ReadLimit | None = None
    ) -> dict[str, Any]:
        """The manifest of a round (None: the newest round of the run); ``limit`` bounds the
        read (and at most ``MAX_MANIFEST_BYTES``)."""
        server_round = self._resolve_round(run_id, server_round)
        path = checkpoint_path(run_id, server_round)
        key = f"{path}/{MANIFEST_FILE}"
        try:
            data = self._get(key, limit.capped(MAX_MANIFEST_BYTES) if limit else None)
        except CheckpointNotFound:
            raise CheckpointNotFound(f"checkpoint {path} not found in {self.describe()}") from None
        manifest = decode_json(data, key, "manifest of checkpoint")
        if manifest.get("sha256") is None or manifest.get("path") != path:
            raise CheckpointCorrupt(f"manifest of checkpoint {path} lacks sha256/path ({key})")
        self._remember_metrics(manifest)
        return manifest

    def _get(self, key: str, limit: ReadLimit | None) -> bytes:
        # Without a limit, the plain call: any Backend implements it.
        return (
            self.backend.get_bytes(key)
            if limit is None
            else self.backend.get_bytes(key, limit=limit)
        )

    def _read(self, path: str, name: str, limit: ReadLimit | None = None) -> bytes:
        key = f"{path}/{name}"
        try:
            return self._get(key, limit)
        except CheckpointNotFound:
            raise CheckpointCorrupt(
                f"checkpoint {path} is incomplete: {name} is missing ({key})"
            ) from None

    def load(
        self,
        run_id: str,
        server_round: int | None = None,
        *,
        extras: bool = True,
        limit: ReadLimit | None = None,
        check_manifest: Callable[[dict[str, Any]], None] | None = None,
    ) -> Checkpoint:
        """Load and verify a checkpoint (None: the newest round of the run).

        ``extras=False`` downloads only the manifest and the tensors (a reader serving the model
        needs no FedAdam state). ``limit`` bounds every file and the whole download (one
        deadline); the tensors file is also capped at the size the manifest's ``files`` table
        records. ``check_manifest`` sees the manifest before the tensors are downloaded and
        raises to refuse them.
        """
        manifest = self.load_manifest(run_id, server_round, limit=limit)
        if check_manifest is not None:
            check_manifest(manifest)
        path = manifest["path"]
        files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
        tensors_limit = limit
        if limit is not None:
            entry = files.get(MODEL_FILE)
            declared = entry.get("size") if isinstance(entry, dict) else None
            if isinstance(declared, int) and not isinstance(declared, bool):
                tensors_limit = limit.capped(max(0, declared))
        tensors = decode_checkpoint(
            self._read(path, MODEL_FILE, tensors_limit), manifest, path=path, check_table=False
        )
        extra: dict[str, bytes] = {}
        for name, info in sorted(files.items() if extras else ()):
            if name == MODEL_FILE:
                continue
            try:
                check_key(name)
            except CheckpointError:
                raise CheckpointCorrupt(
                    f"manifest of checkpoint {path} lists a bad file name {name!r}"
                ) from None
            expected = info.get("sha256") if isinstance(info, dict) else None
            if not isinstance(expected, str):
                raise CheckpointCorrupt(
                    f"manifest of checkpoint {path} lists {name!r} without sha256"
                )
            data = self._read(path, name, limit)
            verify_sha256(data, expected, path, name)
            extra[name] = data
        return Checkpoint(tensors=tensors, manifest=manifest, extra=extra)

    def verify(self, run_id: str, server_round: int | None = None) -> dict[str, Any]:
        """Check every file of a checkpoint against its manifest; return the manifest."""
        return self.load(run_id, server_round).manifest

    def _scan(self, prefix: str) -> dict[str, set[int]]:
        runs: dict[str, set[int]] = {}
        for key in self.backend.list(prefix):
            parts = key.split("/")
            if len(parts) != 4 or parts[0] != "runs" or parts[3] != MANIFEST_FILE:
                continue
            match = _ROUND_DIR_RE.match(parts[2])
            if match:
                runs.setdefault(parts[1], set()).add(int(match.group(1)))
        return runs

    def list_runs(self) -> list[str]:
        """Runs with at least one complete checkpoint, sorted by name."""
        return sorted(self._scan(RUNS_PREFIX))

    def list_rounds(self, run_id: str) -> list[int]:
        """Complete rounds of a run, ascending ([] for an unknown run)."""
        check_run_id(run_id)
        return sorted(self._scan(f"{RUNS_PREFIX}{run_id}/").get(run_id, set()))

    def latest_round(self, run_id: str) -> int | None:
        rounds = self.list_rounds(run_id)
        return rounds[-1] if rounds else None

    def delete_checkpoint(self, run_id: str, server_round: int) -> None:
        """Remove a round (manifest first, so it disappears from listings at once)."""
        path = checkpoint_path(run_id, server_round)
        keys = self.backend.list(f"{path}/")
        manifest_key = f"{path}/{MANIFEST_FILE}"
        if manifest_key in keys:
            self.backend.delete(manifest_key)
        for key in keys:
            if key != manifest_key:
                self.backend.delete(key)
        self._metrics_cache.pop((run_id, server_round), None)

    # -- metrics cache used by auto_release ---------------------------------------------------

    def _remember_metrics(self, manifest: dict[str, Any]) -> None:
        metrics = manifest.get("metrics")
        run_id, server_round = manifest.get("run_id"), manifest.get("round")
        if isinstance(run_id, str) and isinstance(server_round, int):
            self._metrics_cache[(run_id, server_round)] = (
                dict(metrics) if isinstance(metrics, dict) else {}
            )

    def round_metrics(self, run_id: str, server_round: int) -> dict[str, Any]:
        """The metrics recorded in a round's manifest ({} if none)."""
        key = (run_id, server_round)
        if key not in self._metrics_cache:
            self.load_manifest(run_id, server_round)
        return self._metrics_cache.get(key, {})
