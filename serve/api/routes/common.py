"""Small helpers shared by routes: error-response docs, JSON-safe values."""

from __future__ import annotations

import math
from typing import Any

from ...schemas import ErrorBody


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: every error answer is an ErrorBody."""
    return {code: {"model": ErrorBody} for code in codes}


def finite(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
