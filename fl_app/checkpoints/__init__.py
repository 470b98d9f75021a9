"""Checkpoint store: safetensors checkpoints per round and a release pointer.

One interface (``CheckpointStore``) over two backends: ``LocalDirBackend`` (a directory) and
``S3Backend`` (an S3-compatible bucket, credentials from ``SWIPEFL_S3_*`` environment variables).
``ResilientCheckpointWriter`` keeps writes pending through a store outage. CLI:
``python -m fl_app.checkpoints --help``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Backend, check_run_id, normalize_prefix
from .errors import (
    CheckpointAuthError,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    DownloadTimeout,
    DownloadTooLarge,
    PointerMalformed,
    StoreUnavailable,
    UnsupportedFormat,
)
from .format import FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE
from .limits import ReadLimit
from .local import LocalDirBackend
from .release import HISTORY_KEY, RELEASE_KEY, check_pointer
from .resilient import ResilientCheckpointWriter
from .s3 import S3Backend
from .store import (
    Checkpoint,
    CheckpointRef,
    CheckpointStore,
    PreparedCheckpoint,
    checkpoint_path,
)

DEFAULT_LOCAL_ROOT = "checkpoints"
STORE_KINDS = ("local", "s3")


def store_from_config(
    kind: str = "local", root: str | os.PathLike[str] | None = None, prefix: str = "", **s3_kwargs
) -> CheckpointStore:
    """A store from a run config's ``checkpoints`` section.

    ``local``: a ``LocalDirBackend`` at ``root`` (default ``./checkpoints``), ``prefix`` a
    subdirectory. ``s3``: ``S3Backend.from_env()`` (``root`` is ignored), ``prefix`` joined under
    ``SWIPEFL_S3_PREFIX``; extra keyword arguments (timeouts, retries) go to ``S3Backend``.
    """
    kind = (kind or "local").strip().lower()
    if kind == "local":
        base = Path(root if root else DEFAULT_LOCAL_ROOT)
        clean = normalize_prefix(prefix).rstrip("/")
        return CheckpointStore(LocalDirBackend(base / clean if clean else base))
    if kind == "s3":
        return CheckpointStore(S3Backend.from_env(prefix=prefix or None, **s3_kwargs))
    raise CheckpointError(f"unknown checkpoint store kind {kind!r}: use one of {STORE_KINDS}")


__all__ = [
    "Backend",
    "Checkpoint",
    "CheckpointAuthError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNotFound",
    "CheckpointRef",
    "CheckpointStore",
    "DEFAULT_LOCAL_ROOT",
    "DownloadTimeout",
    "DownloadTooLarge",
    "FORMAT_VERSION",
    "HISTORY_KEY",
    "LocalDirBackend",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PointerMalformed",
    "PreparedCheckpoint",
    "RELEASE_KEY",
    "ReadLimit",
    "ResilientCheckpointWriter",
    "S3Backend",
    "STORE_KINDS",
    "StoreUnavailable",
    "UnsupportedFormat",
    "check_pointer",
    "check_run_id",
    "checkpoint_path",
    "store_from_config",
]
