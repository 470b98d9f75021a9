"""Idempotency keys and body fingerprints: what makes a retried write return the same ids.

A client's key names a *request*; a request's rows are stored under keys derived from it, in
namespaces that cannot meet:

- `single:<key>` for a request of one swipe;
- `batch:<key>/<i>` for the i-th swipe of a batch (`i` is the last `/`-separated part, so
  `batch:a/0/1` can only be the swipe 1 of batch `a/0`);
- any other key is a *raw* row key (`SwipeStore.append_many`, e.g. the dataset importer's
  `<source>:<user>:<seq>`), stored as given; raw keys may not start with a namespace prefix.

Each keyed row also stores its request's fingerprint (sha256 of the canonical form of the whole
request: the stored keyboard JSON, the float64 points and the word of every swipe, in order), so
the same key with a different body is recognised as a conflict, not silently answered with the
old ids. Schema-1 stores kept keys unspaced and no fingerprints: those rows stay as they were
(their keys behave as raw keys, their unknown fingerprint accepts any body).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fl_app.decoder.swipe import Swipe

SINGLE_PREFIX = "single:"
BATCH_PREFIX = "batch:"
MAX_KEY_LEN = 255  # a stored key, namespace included
MAX_REQUEST_KEY_LEN = 200  # a client's key: room for `batch:` and `/<i>`

# One encoded row: (keyboard JSON, points blob, n_points, word), as RowCodec.encode returns it.
EncodedRow = tuple[str, bytes, int, str]


@dataclass(frozen=True)
class Submission:
    """One client request: its swipes, its Idempotency-Key (or None), one swipe or a batch."""

    swipes: Sequence[Swipe | dict[str, Any]]
    key: str | None = None
    batch: bool = False


def submission_keys(sub: Submission) -> list[str | None]:
    """The stored key of each swipe of a request (None when the request had no key)."""
    n = len(sub.swipes)
    if sub.key is None:
        return [None] * n
    if not isinstance(sub.key, str) or not sub.key or len(sub.key) > MAX_REQUEST_KEY_LEN:
        raise ValueError(f"a request's idempotency key must be 1..{MAX_REQUEST_KEY_LEN} characters")
    if sub.batch:
        return [f"{BATCH_PREFIX}{sub.key}/{i}" for i in range(n)]
    if n != 1:
        raise ValueError("a single-swipe request holds exactly one swipe")
    return [f"{SINGLE_PREFIX}{sub.key}"]


def check_raw_key(key: str | None) -> None:
    """Refuse a raw row key that is not a 1..MAX_KEY_LEN string or sits in a request namespace."""
    if key is None:
        return
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise ValueError(f"idempotency keys must be 1..{MAX_KEY_LEN} character strings")
    if key.startswith((SINGLE_PREFIX, BATCH_PREFIX)):
        raise ValueError(
            f"idempotency keys starting with {SINGLE_PREFIX!r} or {BATCH_PREFIX!r} are reserved"
            " for requests (Submission)"
        )


def fingerprint(rows: Sequence[EncodedRow], *, batch: bool) -> str:
    """sha256 of a request's canonical body: every field length-prefixed, so no two bodies share
    a byte stream; one swipe alone and a batch of that one swipe differ."""
    h = hashlib.sha256(b"batch" if batch else b"single")
    for kb_json, blob, _n, word in rows:
        for part in (kb_json.encode(), blob, word.encode()):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()
