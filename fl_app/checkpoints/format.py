"""The checkpoint format, owned once: tensors + manifest, sha256, JSON, atomic file writes.

A checkpoint is two files: ``model.safetensors`` (the tensors; safetensors, never pickle) and
``manifest.json`` (what the writer says about them, plus the fields this module owns:
``format_version``, the tensors file's ``sha256`` and the ``tensors`` table of dtypes and
shapes). ``encode_checkpoint`` makes the pair, ``decode_checkpoint`` checks and reads it back.
Everything that writes or reads a checkpoint (the store, the release pointer, the resilient
writer's spool, the sidecar's device cache) goes through these, so a checkpoint written by one
is read the same by all.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .errors import CheckpointCorrupt, CheckpointError

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
# Manifest fields encode_checkpoint owns (a writer's values for them are replaced).
FORMAT_FIELDS = ("format_version", "sha256", "tensors")
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


# -- JSON ------------------------------------------------------------------------------------


def utc_now() -> str:
    """The timestamp manifests, pointers and logs record (UTC, microseconds, ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, PurePath):
        return str(value)
    raise CheckpointError(f"manifest value of type {type(value).__name__} is not JSON-serialisable")


def encode_json(obj: Any) -> bytes:
    """A manifest's or pointer's bytes: sorted keys, indented, strict JSON (no NaN)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def encode_json_line(obj: Any) -> bytes:
    """One line of a JSON-lines log (the release history)."""
    return (json.dumps(obj, sort_keys=True, allow_nan=False) + "\n").encode()


def decode_json(data: bytes, key: str, what: str) -> dict[str, Any]:
    """A JSON object from ``data``; ``CheckpointCorrupt`` naming ``what`` and ``key`` if not."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorrupt(f"{what} {key} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CheckpointCorrupt(f"{what} {key} is not a JSON object")
    return obj


# -- tensors + manifest ----------------------------------------------------------------------


def storable_tensors(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Contiguous numpy arrays by name; ``CheckpointError`` for what safetensors cannot hold."""
    if not isinstance(tensors, Mapping) or not tensors:
        raise CheckpointError("tensors must be a non-empty dict of name -> numpy array")
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"tensor names must be non-empty strings, got {name!r}")
        array = np.asarray(value)
        if array.dtype == object:
            raise CheckpointError(f"tensor {name!r} has dtype object (not storable)")
        arrays[name] = np.ascontiguousarray(array)
    return arrays


def tensor_table(tensors: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The manifest's ``tensors`` table: each tensor's dtype and shape."""
    return {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in tensors.items()}


def encode_checkpoint(
    tensors: Mapping[str, Any], manifest: Mapping[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """The tensors file's bytes and the full manifest (``encode_json`` gives its bytes).

    The manifest is ``manifest`` made JSON-safe (``to_jsonable``) with ``FORMAT_FIELDS`` set
    from the tensors. Write the tensors file first and the manifest last: a present manifest
    means a complete checkpoint.
    """
    arrays = storable_tensors(tensors)
    try:
        data = st_save(arrays)
    except Exception as exc:  # safetensors raises plain exceptions for bad dtypes
        raise CheckpointError(f"cannot serialise tensors: {exc}") from exc
    full = {
        **to_jsonable(dict(manifest)),
        "format_version": FORMAT_VERSION,
        "sha256": sha256_hex(data),
        "tensors": tensor_table(arrays),
    }
    return data, full


def verify_sha256(data: bytes, expected: str | None, path: str, name: str) -> None:
    """``CheckpointCorrupt`` unless ``data`` (file ``name`` of checkpoint ``path``) hashes to
    ``expected``; None expects nothing."""
    actual = sha256_hex(data)
    if expected is not None and actual != expected:
        raise CheckpointCorrupt(
            f"checkpoint {path} is corrupt: sha256 of {name} is {actual[:12]}..., "
            f"the manifest says {expected[:12]}... ({path}/{name})"
        )


def check_tensor_table(manifest: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
    """``CheckpointCorrupt`` unless the manifest's table names exactly these dtypes and shapes."""
    table = manifest.get("tensors")
    if not isinstance(table, dict):
        raise CheckpointCorrupt("manifest has no tensors table")
    if set(table) != set(tensors):
        raise CheckpointCorrupt("manifest tensors table names other tensors")
    for name, info in table.items():
        arr = tensors[name]
        shape = list(info.get("shape", [])) if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if shape != list(arr.shape) or dtype != str(arr.dtype):
            raise CheckpointCorrupt(
                f"tensor {name} is {arr.dtype}{list(arr.shape)}, manifest says {dtype}{shape}"
            )


def decode_checkpoint(
    tensors_bytes: bytes, manifest: Mapping[str, Any], *, path: str, check_table: bool = True
) -> dict[str, np.ndarray]:
    """The tensors of checkpoint ``path``, verified against its manifest.

    Checks the sha256 the manifest records, that safetensors can read the bytes and (with
    ``check_table``) the manifest's ``tensors`` table; raises ``CheckpointCorrupt``. The store
    passes ``check_table=False``: it vouches for bytes, and the sidecar reports a table that
    does not match the tensors as its own refusal reason.
    """
    expected = manifest.get("sha256")
    if not isinstance(expected, str):
        raise CheckpointCorrupt(f"manifest of checkpoint {path} lacks sha256")
    verify_sha256(tensors_bytes, expected, path, MODEL_FILE)
    try:
        tensors = st_load(tensors_bytes)
    except Exception as exc:
        raise CheckpointCorrupt(
            f"checkpoint {path} is corrupt: {MODEL_FILE} is unreadable: {exc}"
        ) from None
    if check_table:
        check_tensor_table(manifest, tensors)
    return tensors


def write_checkpoint_dir(
    directory: str | os.PathLike[str], tensors: Mapping[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    """A checkpoint as a folder (`MODEL_FILE` + `MANIFEST_FILE`): the shipped base, the
    sidecar's device cache. Tensors first, manifest last, so a present manifest means a complete
    checkpoint; returns the full manifest written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors_bytes, full = encode_checkpoint(dict(tensors), manifest)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)
    write_atomic(directory / MODEL_FILE, tensors_bytes)
    write_atomic(directory / MANIFEST_FILE, encode_json(full))
    return full


def read_manifest_dir(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a checkpoint folder (OSError when missing, CheckpointCorrupt when bad)."""
    path = Path(directory) / MANIFEST_FILE
    return decode_json(path.read_bytes(), path.name, "manifest")


def read_checkpoint_dir(
    directory: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(tensors, manifest) of a checkpoint folder, sha256 and tensors table verified."""
    manifest = read_manifest_dir(directory)
    data = (Path(directory) / MODEL_FILE).read_bytes()
    return decode_checkpoint(data, manifest, path=Path(directory).name), manifest
