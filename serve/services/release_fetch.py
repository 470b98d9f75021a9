"""What the sidecar downloads of a release, bounded, and what it checks before each download.

The checkpoint store is outside the device's control (a compromised server or bucket, or a
broken writer), so nothing it says is trusted for sizes:

1. the release pointer: at most ``MAX_POINTER_BYTES``; its fields, types and path checked
   (``check_pointer``): ``POINTER_MALFORMED`` / ``UNSUPPORTED_FORMAT`` otherwise;
2. the manifest: at most ``MAX_MANIFEST_BYTES``; its format version, its sha256 equal to the
   pointer's, its decoder section bounded (``DecoderSpec.from_manifest``: the parameter count
   from the sizes, before anything is allocated) and its tensors file's declared size under
   the cap, all before the tensors are downloaded;
3. the tensors file: at most the cap and the size the manifest declares; nothing else
   (no ``strategy_state.safetensors`` or other extras).

One deadline covers the whole download (``DownloadLimits.deadline_s``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fl_app.checkpoints import CheckpointStore
from fl_app.checkpoints.errors import CheckpointCorrupt
from fl_app.checkpoints.format import FORMAT_VERSION, MODEL_FILE
from fl_app.checkpoints.limits import ReadLimit
from fl_app.checkpoints.release import check_pointer
from fl_app.checkpoints.store import Checkpoint
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.spec_bounds import MAX_CHECKPOINT_BYTES, DecoderSpecError

from .refusals import CheckpointRefused

DEFAULT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class DownloadLimits:
    """The most bytes one file of a release may have, and the time its whole download may take."""

    max_bytes: int = MAX_CHECKPOINT_BYTES
    deadline_s: float = DEFAULT_DEADLINE_S

    def start(self) -> ReadLimit:
        """The limit of one download, its deadline counted from now."""
        return ReadLimit.within(self.max_bytes, self.deadline_s)


def read_pointer(store: CheckpointStore, limit: ReadLimit) -> dict[str, Any] | None:
    """The release pointer, checked; None when nothing was released. Raises
    ``CheckpointCorrupt`` (its ``code`` names why) for a pointer a reader must not follow."""
    pointer = store.read_release(limit)
    return None if pointer is None else check_pointer(pointer)


def fetch_release(store: CheckpointStore, pointer: dict[str, Any], limit: ReadLimit) -> Checkpoint:
    """The manifest and tensors of the release ``pointer`` names (module docstring)."""
    return store.load(
        pointer["run_id"],
        pointer["round"],
        extras=False,
        limit=limit,
        check_manifest=lambda manifest: check_release_manifest(pointer, manifest, limit),
    )


def check_release_manifest(
    pointer: Mapping[str, Any], manifest: Mapping[str, Any], limit: ReadLimit
) -> DecoderSpec:
    """Refuse a manifest before its tensors are downloaded; the spec it describes."""
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointRefused(
            "UNSUPPORTED_FORMAT", f"manifest format_version {version!r} is not {FORMAT_VERSION}"
        )
    if manifest.get("sha256") != pointer["sha256"]:
        raise CheckpointRefused(
            "pointer_mismatch", "the release pointer's sha256 differs from the manifest's"
        )
    section = manifest.get("decoder")
    if not isinstance(section, dict):
        raise CheckpointRefused("mismatch", "manifest has no decoder section")
    try:
        spec = DecoderSpec.from_manifest(section)
    except DecoderSpecError as exc:
        raise CheckpointRefused(exc.reason, str(exc)) from None
    files = manifest.get("files")
    entry = files.get(MODEL_FILE) if isinstance(files, dict) else None
    size = entry.get("size") if isinstance(entry, dict) else None
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise CheckpointCorrupt(f"manifest's {MODEL_FILE} size {size!r} is not a byte count")
    if size is not None:
        limit.check_size(size, f"{manifest.get('path')}/{MODEL_FILE}")  # DownloadTooLarge
    return spec
