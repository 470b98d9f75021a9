"""Typed reads of plain key-value data, each error naming the key: the one place that converts.

Two kinds of data reach the federation as loosely typed mappings: the composed Hydra config
(YAML and overrides: `train.epochs=1` is an int) and a round's Flower ConfigRecord. `Fields`
turns them into ints, floats, strings and paths once, so the code that reads the typed result
never casts, and a wrong value fails early with its key instead of deep inside a round.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Fields:
    """One mapping and its dotted path (`train`, `checkpoints`), read with type checks."""

    def __init__(
        self,
        data: Mapping[str, Any],
        where: str = "",
        *,
        label: str = "config",
        error: type[ValueError] = ValueError,
    ) -> None:
        self.data, self.where, self.label, self.error = data, where, label, error

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, what: str) -> ValueError:
        return self.error(f"{self.label} {self.key(key)}: {what}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise self.error(f"{self.label} lacks {self.key(key)!r}")
        return self.data[key]

    def section(self, key: str) -> Fields:
        value = self.raw(key)
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a section of keys, got {value!r}")
        return Fields(value, self.key(key), label=self.label, error=self.error)

    def integer(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        return value

    def number(self, key: str) -> float:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        return float(value)

    def text(self, key: str) -> str:
        """A name or id; YAML and Hydra read `run_id=20250101` as an int, which is fine."""
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, f"expected a string, got {value!r}")
        return str(value)

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        """A sub-section as a plain dict (e.g. decoding weights handed to a dataclass)."""
        self.section(key)
        return dict(self.data[key])

    def path(self, key: str) -> Path:
        return Path(self.text(key))

    def choice(self, key: str, options: tuple[T, ...]) -> T:
        value = self.raw(key)
        for option in options:
            if value == option:
                return option
        raise self.fail(key, f"one of {options}, got {value!r}")

    def optional_integer(self, key: str) -> int | None:
        return self.integer(key) if self.has(key) else None

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def optional_path(self, key: str) -> Path | None:
        return self.path(key) if self.has(key) else None
