"""The object API every checkpoint backend implements, and key/name validation shared by them.

A key is a relative, ``/``-separated path such as ``runs/r1/round-0003/manifest.json``: the same
key names a file under a local directory and an object under a bucket (and optional prefix).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from .limits import ReadLimit

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUNS_PREFIX = "runs/"


@runtime_checkable
class Backend(Protocol):
    """A tiny object store: whole objects, addressed by relative keys."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (replacing it); a reader sees the old or the new bytes."""

    def get_bytes(self, key: str, *, limit: ReadLimit | None = None) -> bytes:
        """Return the bytes under ``key``; raise ``CheckpointNotFound`` when there are none.

        ``limit``: refuse a file above ``limit.max_bytes`` (``DownloadTooLarge``) without
        holding it, and stop at ``limit.deadline`` (``DownloadTimeout``); see ``limits.py``.
        """

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix`` (a plain string prefix, recursive), sorted."""

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def describe(self) -> str:
        """A short description for messages and logs, without credentials."""


def check_key(key: str) -> str:
    """Validate an object key: relative, ``/``-separated, no empty/``.``/``..`` segments."""
    if not isinstance(key, str) or not key:
        raise CheckpointError(f"invalid store key {key!r}: empty")
    if key.startswith("/") or key.endswith("/") or "\\" in key or "//" in key:
        raise CheckpointError(f"invalid store key {key!r}")
    for segment in key.split("/"):
        if not _SEGMENT_RE.match(segment) or segment in {".", ".."}:
            raise CheckpointError(f"invalid store key {key!r}: bad segment {segment!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Validate a listing prefix: '' or a key-like string (a trailing '/' is allowed)."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or prefix.startswith("/") or "\\" in prefix or ".." in prefix:
        raise CheckpointError(f"invalid store prefix {prefix!r}")
    return prefix


def check_run_id(run_id: str) -> str:
    """A run id is one path segment: letters, digits, ``.``, ``_``, ``-`` (at most 128)."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise CheckpointError(
            f"invalid run id {run_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def check_round(server_round: int) -> int:
    """A server round is a non-negative int (round 0 is the initial model)."""
    if isinstance(server_round, bool) or not isinstance(server_round, int) or server_round < 0:
        raise CheckpointError(f"invalid server round {server_round!r}: a non-negative int")
    return server_round


def checkpoint_path(run_id: str, server_round: int) -> str:
    """The store path of a checkpoint: ``runs/<run-id>/round-0003``."""
    return f"{RUNS_PREFIX}{check_run_id(run_id)}/round-{check_round(server_round):04d}"


def normalize_prefix(prefix: str | None) -> str:
    """'' or ``a/b/`` (no leading slash, exactly one trailing slash)."""
    prefix = (prefix or "").strip().strip("/")
    if not prefix:
        return ""
    check_key(prefix)
    return prefix + "/"


def new_run_id(tag: str) -> str:
    """A fresh run id, ``<UTC time>-<tag>-<random>`` (tag: the strategy, or ``deploy``), valid
    by `check_run_id`: the one place run ids are made."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return check_run_id(f"{stamp}-{tag}-{secrets.token_hex(3)}")
