"""One reader class per dataset file format; each yields rows in the project's swipe format.

A reader only decodes its format: validation is the swipe contract's (`parse_swipe`), applied
by whoever consumes the rows, so a row is refused for the same reasons everywhere. Adding a
public dataset means adding a reader here and naming it in `READERS`.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class SourceRow:
    """One record of a dataset file: a swipe dict (project format) and who swiped it when."""

    line: int  # 1-based position in the file, for error messages
    swipe: dict[str, Any]  # points, keyboard, word (as the swipe contract reads them)
    user: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class BadRecord:
    """A record the reader could not decode at all (not JSON, not an object, bad user/seq)."""

    line: int
    code: str
    message: str


class SwipeReader(Protocol):
    """Reads one file format."""

    name: str

    def records(self, path: Path) -> Iterator[SourceRow | BadRecord]: ...


def open_text(path: Path) -> io.TextIOBase:
    """A text stream over `path`, gunzipped when it ends in .gz."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


class JsonlReader:
    """The project's own format, one swipe a line, with optional ``user`` and ``seq``::

        {"user": "u0000", "seq": 0, "word": "is", "keyboard": {...}, "points": [[x, y, t], ...]}

    (`points` may also be ``{x, y, t}`` objects). `.jsonl` or `.jsonl.gz`.
    """

    name = "jsonl"

    def records(self, path: Path) -> Iterator[SourceRow | BadRecord]:
        with open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                yield self._record(line_no, line)

    @staticmethod
    def _record(line_no: int, line: str) -> SourceRow | BadRecord:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            return BadRecord(line_no, "BAD_JSON", f"line {line_no}: not JSON ({exc.msg})")
        if not isinstance(obj, dict):
            return BadRecord(line_no, "BAD_JSON", f"line {line_no}: not a JSON object")
        user, seq = obj.pop("user", None), obj.pop("seq", None)
        if user is not None and (not isinstance(user, str) or not _safe_user(user)):
            return BadRecord(
                line_no, "BAD_USER", f"line {line_no}: user must be a short id of [A-Za-z0-9_.-]"
            )
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            return BadRecord(line_no, "BAD_SEQ", f"line {line_no}: seq must be an integer")
        return SourceRow(line_no, obj, user, seq)


def _safe_user(user: str) -> bool:
    """User ids name store files (`<user>.sqlite`): no path separators, no dot files."""
    return (
        0 < len(user) <= 64
        and not user.startswith(".")
        and all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in user)
    )


READERS: dict[str, SwipeReader] = {JsonlReader.name: JsonlReader()}


def reader_for(path: Path, fmt: str | None = None) -> SwipeReader:
    """The reader named `fmt`, or the one a file name implies (`.jsonl`, `.jsonl.gz`)."""
    if fmt is None:
        name = path.name.lower()
        fmt = "jsonl" if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")) else None
    if fmt not in READERS:
        raise ValueError(
            f"no reader for {path.name!r} (format {fmt!r}); known formats: {', '.join(READERS)}"
        )
    return READERS[fmt]
