"""The fixed split of real users into four parts, by a stable hash of the user id.

Which part a user is in never depends on the data file, its order or the other users, so the
split is the same on every machine, in every run, and for users added later:

- ``dev`` (11.2%: 152 of the 1,198 public users): reported on at the end; never trained on and never used
  to choose anything;
- ``public-train`` (21%: 250) and ``public-val`` (3.8%: 49): stand in for a public
  dataset a server may hold; every choice (generator, early stopping, hyperparameters, decoding
  weights, releases) is made on public-val;
- ``device`` (the rest: 747): reachable only through federation, one device each.
"""

from __future__ import annotations

import hashlib

SPLIT_VERSION = "swipe-fl/user-split/v1"
# Upper bounds of each part on the hash's [0, 1) scale, in order.
PARTS: tuple[tuple[str, float], ...] = (
    ("dev", 0.112),
    ("public-train", 0.322),
    ("public-val", 0.36),
    ("device", 1.0),
)
PART_NAMES = tuple(name for name, _ in PARTS)


def user_hash(user: str) -> float:
    """A user's fixed position in [0, 1): the first 8 bytes of a salted sha256."""
    digest = hashlib.sha256(f"{SPLIT_VERSION}/{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def user_part(user: str) -> str:
    """The part (`PART_NAMES`) of a user id."""
    u = user_hash(user)
    return next(name for name, upper in PARTS if u < upper)


def check_parts(parts: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Part names from a comma-separated string or a list; unknown names are an error."""
    names = tuple(p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts))
    unknown = [p for p in names if p not in PART_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown user split part(s) {unknown}; known: {', '.join(PART_NAMES)}")
    return names


def user_sample(users: set[str] | list[str], limit: int, seed: int = 0) -> set[str]:
    """At most `limit` of `users` (0: all), chosen by a seeded hash of each id: a learning curve
    over people, whose smaller samples are inside the larger ones of the same seed."""
    if limit < 0:
        raise ValueError(f"a user sample needs limit >= 0 (0: all users), got {limit}")
    ids = set(users)
    if not limit or limit >= len(ids):
        return ids

    def rank(user: str) -> bytes:
        return hashlib.sha256(f"swipe-fl/user-sample/{seed}/{user}".encode()).digest()

    return set(sorted(ids, key=rank)[:limit])
