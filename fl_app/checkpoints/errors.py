"""Errors of the checkpoint store.

Messages name checkpoints by their store path (``runs/<run>/round-0003``) and stores by a
credential-free description; they never contain credentials.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """Base class of every checkpoint-store error."""

    code = "CHECKPOINT_ERROR"


class CheckpointNotFound(CheckpointError, LookupError):
    """The checkpoint, run, object or release pointer does not exist."""

    code = "CHECKPOINT_NOT_FOUND"


class CheckpointCorrupt(CheckpointError):
    """A stored file is unreadable or does not match the sha256 in its manifest."""

    code = "CHECKPOINT_CORRUPT"


class StoreUnavailable(CheckpointError):
    """The store could not be reached (after bounded retries): an outage, not a bad request."""

    code = "STORE_UNAVAILABLE"


class CheckpointAuthError(CheckpointError):
    """The store refused the credentials or the permission (HTTP 401/403); never retried."""

    code = "CHECKPOINT_AUTH"


class DownloadTooLarge(CheckpointError):
    """A file is larger than the reader's byte cap (``ReadLimit.max_bytes``); nothing past the
    cap was read."""

    code = "DOWNLOAD_TOO_LARGE"


class DownloadTimeout(StoreUnavailable):
    """A download did not finish before its whole-download deadline (a slow or stalled store:
    an outage, tried again later)."""

    code = "DOWNLOAD_TIMEOUT"


class PointerMalformed(CheckpointCorrupt):
    """The release pointer is not what a pointer must be (fields, types, its path)."""

    code = "POINTER_MALFORMED"


class UnsupportedFormat(CheckpointCorrupt):
    """A pointer or manifest of a ``format_version`` this code does not know."""

    code = "UNSUPPORTED_FORMAT"
