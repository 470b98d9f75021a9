"""The sidecar's checkpoints on the device: the served release's cache and the personalized model.

Files (under ``settings.device_dir``), each pair in the checkpoint format of
``fl_app.checkpoints.format`` (tensors first, manifest last; sha256 and tensors table checked
on reading)::

    release/model.safetensors, manifest.json   # cache of the served release (offline restarts)
    personal/model.safetensors, manifest.json  # the personalized model, names its base release
    refused.json                               # releases refused (serve/services/refusals.py)

``release`` and ``personal`` are replaced whole (``fl_app.checkpoints.dir_swap``: the new
version is written into a sibling directory, then a link is renamed over the old one), so a
crash or a full disk never leaves the device without its complete previous cache.

The release cache's manifest is ``{"kind": "release-cache", "release": <pointer>,
"manifest": <the release's manifest>}``; the personalized model's is the trainer's metadata
plus ``{"kind": "personalized", "base": {run_id, round, path, sha256}}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fl_app.checkpoints.dir_swap import read_consistent, remove_dir, replace_dir
from fl_app.checkpoints.errors import CheckpointError
from fl_app.checkpoints.format import read_checkpoint_dir, read_manifest_dir, write_checkpoint_dir

log = logging.getLogger("serve.model")

Tensors = dict[str, np.ndarray]


def read_device_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a device checkpoint, or None when it is missing or not a JSON object."""
    try:
        return read_consistent(directory, read_manifest_dir)
    except (OSError, CheckpointError):
        return None


def read_device_checkpoint(directory: Path) -> tuple[Tensors, dict[str, Any]] | None:
    """(tensors, manifest) of a complete, verified device checkpoint, else None."""
    try:
        return read_consistent(directory, read_checkpoint_dir)
    except OSError:
        return None
    except CheckpointError:
        log.warning("device checkpoint is corrupt; ignored", extra={"dir": directory.name})
        return None


class DeviceCache:
    """The release cache and the personalized model under one device directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    @property
    def personal_dir(self) -> Path:
        return self.root / "personal"

    def release(self) -> tuple[Tensors, dict[str, Any], dict[str, Any]] | None:
        """(tensors, pointer, manifest) of the cached release, or None."""
        found = read_device_checkpoint(self.release_dir)
        if found is None:
            return None
        tensors, meta = found
        pointer, manifest = meta.get("release"), meta.get("manifest")
        if not isinstance(pointer, dict) or not isinstance(manifest, dict):
            return None
        return tensors, pointer, manifest

    def keep_release(
        self, pointer: dict[str, Any], manifest: dict[str, Any], tensors: Tensors
    ) -> None:
        """Cache the release (unless it is cached already); a failure is logged, not raised:
        the release still serves, it just will not survive an offline restart."""
        try:
            cached = read_device_manifest(self.release_dir) or {}
            if cached.get("release") != pointer:
                meta = {"kind": "release-cache", "release": pointer, "manifest": manifest}
                replace_dir(self.release_dir, lambda d: write_checkpoint_dir(d, tensors, meta))
        except (OSError, CheckpointError) as exc:
            log.warning("cannot cache the release on the device", extra={"detail": str(exc)})

    def personal(self) -> tuple[Tensors, dict[str, Any]] | None:
        """(tensors, manifest) of the personalized model, or None."""
        return read_device_checkpoint(self.personal_dir)

    def keep_personal(self, tensors: Tensors, meta: dict[str, Any], base: dict[str, Any]) -> None:
        """Write the personalized model, naming the release it was trained from."""
        full = {**meta, "kind": "personalized", "base": base}
        replace_dir(self.personal_dir, lambda d: write_checkpoint_dir(d, tensors, full))

    def drop_personal(self) -> bool:
        """Remove the personalized model; whether there was one."""
        return remove_dir(self.personal_dir)
