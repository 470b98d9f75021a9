"""The Flower run-config keys a Flower user types, as Hydra overrides of `conf/`.

`flwr run . --run-config "num-server-rounds=5 strategy=\"fedprox\""` should work without
knowing Hydra. Flower refuses keys that `[tool.flwr.app.config]` (pyproject) does not declare,
and hands the ServerApp every declared key, with its pyproject default when the user gave none.
So each default is a sentinel (0 or "") meaning "take conf/": a real default there would
silently override both `overrides` and `conf/`. A key that is set becomes a Hydra override
appended after the `overrides` string; Hydra lets the last value of a key win, which gives the
precedence explicit key > `overrides` > `conf/`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fl_app.federation.run_config import ConfigError

__all__ = ["RUN_KEYS", "RunKey", "key_overrides"]

# A config group option (conf/strategy/<name>.yaml): nothing Hydra would read as syntax.
_OPTION = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class RunKey:
    """One run-config key: its Flower name, the Hydra key it sets, and its value's kind."""

    name: str
    target: str
    kind: type  # int, float (an int is accepted) or str (a config group option)

    def override(self, value: Any) -> str | None:
        """The Hydra override for `value`, or None for the sentinel (take `conf/`)."""
        if self.kind is str:
            if not isinstance(value, str):
                raise self._refuse(value, 'a string, e.g. strategy="fedprox"')
            if value == "":
                return None
            if not _OPTION.fullmatch(value):
                raise self._refuse(value, f"the name of a conf/{self.target}/ option")
            return f"{self.target}={value}"
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self._refuse(value, "an integer" if self.kind is int else "a number")
        if value == 0:
            return None
        if value < 0:
            raise self._refuse(value, "positive (0 takes conf/)")
        return f"{self.target}={value!r}"

    def _refuse(self, value: Any, what: str) -> ConfigError:
        return ConfigError(f"run-config key {self.name}={value!r}: {what}")


# Declared in pyproject [tool.flwr.app.config] with the sentinel defaults (0 or "").
RUN_KEYS: tuple[RunKey, ...] = (
    RunKey("num-server-rounds", "federation.num_rounds", int),
    RunKey("strategy", "strategy", str),
    RunKey("fraction-train", "federation.fraction_train", float),
    RunKey("local-epochs", "train.epochs", float),
    RunKey("lr", "train.lr", float),
)


def key_overrides(run_config: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides of the keys set in a Flower run config (in `RUN_KEYS` order)."""
    out = []
    for key in RUN_KEYS:
        if key.name in run_config:
            item = key.override(run_config[key.name])
            if item is not None:
                out.append(item)
    return out
