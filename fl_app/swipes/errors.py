"""The swipe store's errors: each names one reason a write was refused, so callers (the
sidecar) can answer with a stable code, and a refused write has stored nothing."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store file cannot be used (not a database, closed store, settings not applied, ...)."""


class StoreSchemaError(StoreError):
    """The file's schema is newer than this code understands (or unreadable)."""


class StoreFullError(StoreError):
    """The device's storage (or SQLite's page limit) is full; nothing was stored."""


class CapacityError(ValueError):
    """A write holds more rows than the store's `max_rows`; nothing was stored.

    Retention makes room by deleting older rows, never rows of the write being acknowledged,
    so a write larger than the whole store cannot be kept and is refused as a whole.
    """

    def __init__(self, rows: int, max_rows: int) -> None:
        super().__init__(f"{rows} swipes cannot fit in a store that keeps at most {max_rows}")
        self.rows = rows
        self.max_rows = max_rows


class IdempotencyConflictError(ValueError):
    """An idempotency key is already stored with a different body; nothing was stored.

    `index` is the position of the offending row (or, from `append_submissions`, request).
    """

    def __init__(self, index: int) -> None:
        super().__init__("the idempotency key was already used with a different body")
        self.index = index
