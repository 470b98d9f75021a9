"""Helpers for the swipe store's tests: labelled swipes through key centres, a settable clock,
a look at the raw bytes of a store's files (database and WAL), a row an older version wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.swipe import Swipe

KB = named_keyboard("qwerty-en", 375, 217)


def trace(word: str, kb=KB, per_key: int = 3, shift: float = 0.0) -> np.ndarray:
    """A simple trace through the word's key centres, 10 ms per point; `shift` moves every
    point by a fraction of a pixel, so a trace's bytes can be told from any other's."""
    centres = np.repeat(kb.word_centres(word), per_key, axis=0) + shift
    t = np.arange(len(centres), dtype=np.float64) * 10.0
    return np.column_stack([centres, t])


def swipe(word: str, kb=KB, shift: float = 0.0) -> Swipe:
    return Swipe(trace(word, kb, shift=shift), kb, word)


def swipe_dict(word: str, kb=KB) -> dict:
    return swipe(word, kb).to_dict()


class FakeClock:
    """A settable clock (seconds since the epoch) so age-based retention needs no sleeping."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:  # 2025-06: a believed clock
        self.now = now

    def __call__(self) -> float:
        return self.now


def file_bytes(db: Path) -> dict[str, bytes]:
    """The raw bytes of the database file and its WAL (empty when absent)."""
    out = {}
    for suffix in ("", "-wal"):
        path = Path(str(db) + suffix)
        out[path.name] = path.read_bytes() if path.exists() else b""
    return out


def traces_of(s: Swipe) -> list[bytes]:
    """Byte patterns that would give a stored swipe away: its word and its first points."""
    return [s.word.encode(), np.ascontiguousarray(s.points[:3], dtype="<f8").tobytes()]


def files_holding(db: Path, s: Swipe) -> list[str]:
    """The store files in which any of the swipe's byte patterns can be found."""
    return [
        name
        for name, data in file_bytes(db).items()
        if any(pattern in data for pattern in traces_of(s))
    ]


def store_legacy_keyboard(db: Path, row_id: int) -> None:
    """Rewrite one stored row as an older version accepted it, bypassing today's checks: its
    keyboard's keys 1e-300 px wide (today's contract refuses it: KEY_TOO_SMALL), so its
    features overflow to infinity."""
    from fl_app.decoder.keyboard import keyboard_from_spec

    with sqlite3.connect(db) as conn:
        (spec,) = conn.execute("SELECT keyboard FROM swipes WHERE id = ?", (row_id,)).fetchone()
        kb = keyboard_from_spec(json.loads(spec))
        keys = [{"label": k.label, "x": k.x, "y": k.y, "w": 1e-300, "h": k.h} for k in kb.keys]
        legacy = {"width": kb.width, "height": kb.height, "language": "en", "keys": keys}
        conn.execute("UPDATE swipes SET keyboard = ? WHERE id = ?", (json.dumps(legacy), row_id))
