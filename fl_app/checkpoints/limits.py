"""Bounded reads: a byte cap per file and a deadline for a whole download.

A reader that does not trust the store (the sidecar on a device) passes a ``ReadLimit`` to
``Backend.get_bytes``: a file larger than ``max_bytes`` raises ``DownloadTooLarge`` before (local:
its size; S3: its Content-Length) or while (S3: counted as it streams) it is read, never after
holding it all; passing ``deadline`` (a ``time.monotonic()`` value shared by every file of one
download) raises ``DownloadTimeout``. A socket read in flight is bounded by the backend's read
timeout, so a download ends at most one read timeout after its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .errors import DownloadTimeout, DownloadTooLarge

CHUNK_BYTES = 256 * 1024
# What the release pointer may weigh for anyone (a real one is a few hundred bytes).
MAX_POINTER_BYTES = 64 * 1024
# What a checkpoint's manifest may weigh for a bounded reader (a real one is a few KiB).
MAX_MANIFEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReadLimit:
    """How many bytes of one file a reader accepts, and until when (``time.monotonic()``)."""

    max_bytes: int | None = None
    deadline: float | None = None

    @classmethod
    def within(cls, max_bytes: int | None, seconds: float | None) -> ReadLimit:
        """A limit whose deadline is ``seconds`` from now: make it once per download."""
        return cls(max_bytes, None if seconds is None else time.monotonic() + seconds)

    def capped(self, max_bytes: int | None) -> ReadLimit:
        """The same deadline with the smaller of the two caps."""
        if max_bytes is None:
            return self
        cap = max_bytes if self.max_bytes is None else min(self.max_bytes, max_bytes)
        return replace(self, max_bytes=cap)

    def check_deadline(self, key: str) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DownloadTimeout(f"download of {key} ran past its deadline")

    def check_size(self, size: int, key: str) -> None:
        if self.max_bytes is not None and size > self.max_bytes:
            raise DownloadTooLarge(
                f"{key} is {size:,} bytes or more, above the cap of {self.max_bytes:,} bytes"
            )


def read_limited(read_some: Callable[[int], bytes], limit: ReadLimit, key: str) -> bytes:
    """Read a stream to its end through ``read_some(n)`` (returns at most n bytes, b"" at the
    end; ideally after one socket read), checking the cap and the deadline between reads."""
    chunks: list[bytes] = []
    total = 0
    while True:
        limit.check_deadline(key)
        chunk = read_some(CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        limit.check_size(total, key)
        chunks.append(chunk)
