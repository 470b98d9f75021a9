"""A checkpoint backend on a local directory: keys are relative paths, writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

from .base import check_key, check_prefix
from .errors import CheckpointError, CheckpointNotFound, StoreUnavailable
from .format import TMP_MARK, write_atomic
from .limits import ReadLimit


class LocalDirBackend:
    """Objects as files under ``root``; ``put_bytes`` writes a temp file then ``os.replace``."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"LocalDirBackend(root={str(self.root)!r})"

    def describe(self) -> str:
        return f"local directory {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _unavailable(self, what: str, key: str, exc: OSError) -> CheckpointError:
        reason = exc.strerror or type(exc).__name__
        return StoreUnavailable(f"{self.describe()}: cannot {what} {key}: {reason}")

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, fsync=self.fsync)
        except OSError as exc:
            raise self._unavailable("write", key, exc) from exc

    def get_bytes(self, key: str, *, limit: ReadLimit | None = None) -> bytes:
        path = self._path(key)
        try:
            if limit is None:
                return path.read_bytes()
            limit.check_deadline(key)
            with path.open("rb") as fh:
                limit.check_size(os.fstat(fh.fileno()).st_size, key)  # its size first
                cap = limit.max_bytes
                data = fh.read() if cap is None else fh.read(cap + 1)  # it may have grown
            limit.check_size(len(data), key)
            return data
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise CheckpointNotFound(f"{key} not found in {self.describe()}") from exc
        except OSError as exc:
            raise self._unavailable("read", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            raise self._unavailable("check", key, exc) from exc

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        # Walk only the deepest directory that the prefix fully names.
        base_parts = prefix.split("/")[:-1]
        base = self.root.joinpath(*base_parts) if base_parts else self.root
        keys: list[str] = []
        try:
            if not base.is_dir():
                return []
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith(".") or TMP_MARK in name:
                        continue
                    key = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise self._unavailable("list", prefix, exc) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable("delete", key, exc) from exc
        # Prune directories left empty, up to (not including) the root.
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
