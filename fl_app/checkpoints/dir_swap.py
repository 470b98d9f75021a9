"""Replace a whole directory at once: readers see the old one or the complete new one, never a
half-written one or none, even across a crash.

``replace_dir(target, fill)`` fills a fresh sibling ``.<name>-<id>`` and then points ``target``,
a symbolic link, at it with one ``os.replace`` (atomic on POSIX); the old sibling is removed
after. A ``target`` that is still a real directory (written before this module existed, or on a
filesystem without symbolic links) is first renamed to ``.<name>-legacy``: ``readable_dir``
reads that name while ``target`` is missing, which covers the moment between the two renames.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .format import fsync_dir

T = TypeVar("T")


def _legacy(target: Path) -> Path:
    return target.with_name(f".{target.name}-legacy")


def readable_dir(target: Path) -> Path | None:
    """The directory holding ``target``'s current contents (the link resolved: read every file
    of one version from it), or None when there are none."""
    if target.exists():
        return Path(target).resolve()
    legacy = _legacy(target)
    return legacy.resolve() if legacy.is_dir() else None


def read_consistent(target: Path, read: Callable[[Path], T], attempts: int = 3) -> T | None:
    """``read(directory)`` of ``target``'s current version; a read that fails because the
    version was replaced meanwhile (its files removed) is made again on the new one. None when
    there is none; a failure of a version that stayed current is raised."""
    for attempt in range(attempts):
        found = readable_dir(target)
        if found is None:
            return None
        try:
            return read(found)
        except Exception:
            if attempt + 1 == attempts or readable_dir(target) == found:
                raise
    return None  # pragma: no cover


def replace_dir(target: Path, fill: Callable[[Path], object]) -> None:
    """Make ``target`` hold what ``fill(directory)`` writes, all at once (module docstring).

    When ``fill`` raises, the new directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    fresh = parent / f".{target.name}-{uuid.uuid4().hex[:12]}"
    try:
        fresh.mkdir()
        fill(fresh)
        fsync_dir(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    legacy = _legacy(target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(legacy, ignore_errors=True)
        os.rename(target, legacy)  # readable_dir reads it until the link is in place
    link = parent / f".{target.name}-link-{uuid.uuid4().hex[:12]}"
    try:
        os.symlink(fresh.name, link)
    except OSError:  # no symbolic links here: the renamed legacy copy covers the gap
        os.rename(fresh, target)
    else:
        os.replace(link, target)
    fsync_dir(parent)
    _remove_siblings(target, keep=fresh)


def remove_dir(target: Path) -> bool:
    """Remove ``target`` (the link first, so it disappears at once); whether it existed."""
    target = Path(target)
    existed = readable_dir(target) is not None
    if target.is_symlink():
        target.unlink()
    elif target.is_dir():
        trash = target.with_name(f".{target.name}-trash-{uuid.uuid4().hex[:12]}")
        os.rename(target, trash)
    fsync_dir(target.parent)
    _remove_siblings(target, keep=None)
    return existed


def _remove_siblings(target: Path, keep: Path | None) -> None:
    """Earlier versions, the legacy copy and leftovers of interrupted swaps."""
    for sibling in target.parent.glob(f".{target.name}-*"):
        if keep is not None and sibling.name == keep.name:
            continue
        if sibling.is_symlink() or not sibling.is_dir():
            sibling.unlink(missing_ok=True)
        else:
            shutil.rmtree(sibling, ignore_errors=True)
