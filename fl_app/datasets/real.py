"""The real phone swipes beside the repository, read through one setting.

`SWIPEFL_REAL_SWIPES` names the folder (default ``<repo>/../shared/real-swipes``) holding
``swipes.jsonl.gz`` and ``users.jsonl`` (the "How We Swipe" study: Leiva, Kim, Cui, Bi and
Oulasvirta, MobileHCI 2021; MIT licence). Its absence is an error naming the setting: a figure
measured on real users must never silently become one measured on nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fl_app.datasets.readers import BadRecord, JsonlReader
from fl_app.datasets.split import check_parts, user_part
from fl_app.decoder.errors import SwipeError
from fl_app.decoder.swipe import Swipe, parse_swipe

REAL_SWIPES_ENV = "SWIPEFL_REAL_SWIPES"
SWIPES_FILE = "swipes.jsonl.gz"
USERS_FILE = "users.jsonl"
CITATION = (
    "Leiva, Kim, Cui, Bi, Oulasvirta: How We Swipe: A Large-scale Shape-writing Dataset and "
    "Empirical Findings, MobileHCI 2021 (MIT licence)"
)


class RealSwipesMissing(FileNotFoundError):
    """The real-swipes folder is not where the setting says."""


def real_swipes_dir() -> Path:
    """The folder of the real swipes: $SWIPEFL_REAL_SWIPES, else ../shared/real-swipes."""
    env = os.environ.get(REAL_SWIPES_ENV)
    repo = Path(__file__).resolve().parents[2]
    path = Path(env).expanduser() if env else repo.parent / "shared" / "real-swipes"
    if not (path / SWIPES_FILE).is_file():
        how = f"{REAL_SWIPES_ENV}={env}" if env else f"{REAL_SWIPES_ENV} is unset, so {path}"
        raise RealSwipesMissing(
            f"no real swipes: {how} holds no {SWIPES_FILE}. Set {REAL_SWIPES_ENV} to the folder "
            f"of the real-swipes dataset (or put ../shared/real-swipes beside the repository)"
        )
    return path.resolve()


def real_swipes_file() -> Path:
    return real_swipes_dir() / SWIPES_FILE


@dataclass(frozen=True)
class RealSwipe:
    """A validated real swipe with who swiped it and when."""

    user: str
    seq: int
    swipe: Swipe

    @property
    def part(self) -> str:
        return user_part(self.user)


def read_labelled(path: Path) -> tuple[list[RealSwipe], dict[str, int]]:
    """Every valid labelled row of a JSONL(.gz) file in the project's format (in file order)
    and the refusals by error code. A row without a `user` stands alone (`line-<n>`): resampling
    users then resamples swipes, the most that can be said of rows nobody owns."""
    rows: list[RealSwipe] = []
    refused: dict[str, int] = {}
    for record in JsonlReader().records(path):
        if isinstance(record, BadRecord):
            refused[record.code] = refused.get(record.code, 0) + 1
            continue
        try:
            swipe = parse_swipe(record.swipe, require_word=True)
        except SwipeError as exc:
            refused[exc.code] = refused.get(exc.code, 0) + 1
            continue
        user = record.user if record.user is not None else f"line-{record.line}"
        rows.append(RealSwipe(user, int(record.seq or 0), swipe))
    return rows, refused


@lru_cache(maxsize=2)
def _all_real(path: Path) -> tuple[tuple[RealSwipe, ...], dict[str, int]]:
    """Every valid row of the real file (in file order) and the refusals by code."""
    rows, refused = read_labelled(path)
    return tuple(rows), refused


def load_real(parts: str | Iterable[str]) -> list[RealSwipe]:
    """The valid real swipes of users in `parts` (e.g. ``"dev"`` or ``"public-train,public-val"``),
    each user's rows in seq order, users in id order."""
    keep = set(check_parts(parts if isinstance(parts, str) else list(parts)))
    rows, _ = _all_real(real_swipes_file())
    chosen = [r for r in rows if user_part(r.user) in keep]
    return sorted(chosen, key=lambda r: (r.user, r.seq))


def refused_rows() -> dict[str, int]:
    """Rows of the file the swipe contract refuses, by error code."""
    return dict(_all_real(real_swipes_file())[1])


def real_users() -> dict[str, dict]:
    """users.jsonl: user id -> what the study recorded (phone, screen, finger, familiarity...)."""
    path = real_swipes_dir() / USERS_FILE
    out: dict[str, dict] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[str(row["user"])] = row
    return out


def stratified_sample(rows: list[RealSwipe], n: int, seed: int = 0) -> list[RealSwipe]:
    """At most `n` rows spread evenly over users (each user gives about the same number),
    fixed by `seed`: a small evaluation set that no heavy swiper dominates."""
    if len(rows) <= n:
        return list(rows)
    rng = np.random.default_rng(seed)
    by_user: dict[str, list[RealSwipe]] = {}
    for r in rows:
        by_user.setdefault(r.user, []).append(r)
    users = sorted(by_user)
    for u in users:
        order = rng.permutation(len(by_user[u]))
        by_user[u] = [by_user[u][i] for i in order]
    chosen: list[RealSwipe] = []
    depth = 0
    while len(chosen) < n:
        layer = [by_user[u][depth] for u in users if depth < len(by_user[u])]
        if not layer:
            break
        if len(chosen) + len(layer) > n:
            pick = rng.choice(len(layer), size=n - len(chosen), replace=False)
            layer = [layer[i] for i in sorted(pick)]
        chosen.extend(layer)
        depth += 1
    return sorted(chosen, key=lambda r: (r.user, r.seq))
