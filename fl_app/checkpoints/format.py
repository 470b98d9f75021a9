"""The checkpoint format's primitives, owned once: hashing, manifest JSON, atomic file writes.

Everything that writes or reads a checkpoint (the stores, the release pointer, the sidecar's
device cache) goes through these, so a checkpoint written by one is read the same by all.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"
REDACTED = "<redacted>"
# The one rule for which config or manifest keys hold secrets (their values never leave the
# process): names like secret_key, password, api_key, access_key, private_key, *_token.
SECRET_KEY_RE = re.compile(
    r"(secret|password|passwd|credential|api[_-]?key|access[_-]?key|private[_-]?key|(^|[_-])token$)",
    re.IGNORECASE,
)


def sha256_hex(data: bytes) -> str:
    """The hex sha256 a manifest records for its tensors file."""
    return hashlib.sha256(data).hexdigest()


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, fsync: bool = True, mode: int | None = None
) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part.

    A temp file beside `path` is written (and fsynced), then renamed over it; with `fsync` the
    directory entry is synced too, so the rename survives a power cut. `mode` (e.g. 0o600) is
    set before any byte is written, for files that hold secrets.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:12]}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename inside it); a no-op where that is refused."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def redact_secrets(value: Any, secrets: tuple[str, ...] = (), _key: str = "") -> Any:
    """A copy of `value` with the values under secret-looking keys (`SECRET_KEY_RE`), and any
    string containing one of `secrets`, replaced by REDACTED: what manifests and logs carry."""
    if _key and SECRET_KEY_RE.search(_key) and value not in (None, "", {}, []):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_secrets(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    return value
