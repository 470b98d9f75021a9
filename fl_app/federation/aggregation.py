"""Robust aggregation (`aggregation=`), composed from Flower's own strategies.

Flower 1.42's FedTrimmedAvg, FedMedian, Krum, MultiKrum and Bulyan are FedAvg subclasses that
override only `aggregate_train`, and FedAvg, FedProx and FedAdam reach the average through
`super().aggregate_train`. So one class per (strategy, rule) with the bases
``(RoundBookkeeping, <strategy>, <rule>)`` gives, in method order: the project's bookkeeping
(reply checks, failures, round offset, lr schedule), then the strategy (FedProx's mu to the
clients, FedAdam's server step), then the rule's aggregate in place of FedAvg's mean. FedAdam
with `aggregation=median` steps on the median, and its moments are checkpointed as before.

Server-side clipping reuses Flower's `compute_clip_model_update` (the FlatClip step of its DP
strategies). Flower's DP wrapper strategies themselves are not used: they skip aggregation when
any sampled client failed (the project keeps a round while `min_success_share` succeeded), clip
before the reply checks could refuse a wrongly shaped reply, and hide the wrapped strategy's
state (FedAdam's moments) from checkpoints.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Literal

import numpy as np
from flwr.app import Array, ArrayRecord, Message
from flwr.serverapp.strategy import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum
from flwr.supercore.differential_privacy import compute_clip_model_update

from fl_app.federation import protocol as P
from fl_app.federation.robust_config import (
    AggregationRule,
    BulyanRule,
    KrumRule,
    MeanRule,
    MedianRule,
    MultiKrumRule,
    TrimmedMeanRule,
)

RULE_STRATEGIES: dict[str, type[FedAvg]] = {
    MeanRule.name: FedAvg,
    TrimmedMeanRule.name: FedTrimmedAvg,
    MedianRule.name: FedMedian,
    KrumRule.name: Krum,
    MultiKrumRule.name: MultiKrum,
    BulyanRule.name: Bulyan,
}


@cache
def compose(bookkeeping: type[FedAvg], strategy: type[FedAvg], rule_name: str) -> type[FedAvg]:
    """The class ``(bookkeeping, strategy, <rule's Flower strategy>)`` (module docstring)."""
    robust = RULE_STRATEGIES[rule_name]
    if issubclass(strategy, robust):  # mean: the strategy's own aggregation
        return type(f"Swipe{strategy.__name__}", (bookkeeping, strategy), {})
    if issubclass(robust, strategy):  # FedAvg with a rule: the rule's class is a FedAvg
        return type(f"Swipe{robust.__name__}", (bookkeeping, robust), {})
    return type(f"Swipe{strategy.__name__}{robust.__name__}", (bookkeeping, strategy, robust), {})


def assumed_malicious(rule: AggregationRule, replies: int) -> int:
    """Krum's and Bulyan's f for a round with this many accepted replies."""
    share = getattr(rule, "malicious_share", 0.0)
    return int(math.floor(share * replies))


def configure_rule(strategy: FedAvg, rule: AggregationRule, replies: int) -> None:
    """Set the Flower rule's per-round settings from the round's accepted replies."""
    f = assumed_malicious(rule, replies)
    if isinstance(rule, TrimmedMeanRule):
        strategy.beta = rule.beta  # type: ignore[attr-defined]
    elif isinstance(rule, KrumRule | BulyanRule):
        strategy.num_malicious_nodes = f  # type: ignore[attr-defined]
    elif isinstance(rule, MultiKrumRule):
        strategy.num_malicious_nodes = f  # type: ignore[attr-defined]
        strategy.num_nodes_to_select = max(1, replies - f)  # type: ignore[attr-defined]


def why_no_aggregate(rule: AggregationRule, replies: int) -> str:
    """Why the rule produced no model from this many replies (Bulyan needs 4f + 3)."""
    if isinstance(rule, BulyanRule):
        need = 4 * assumed_malicious(rule, replies) + 3
        return f"bulyan needs at least {need} accepted replies, got {replies}; model kept"
    return f"{rule.name} aggregated nothing from {replies} replies; model kept"


def clip_updates(
    replies: list[Message],
    norms: list[float],
    reference: dict[str, np.ndarray],
    clip_norm: float | Literal["median"],
) -> int:
    """Scale each reply's update (reply - reference) down to `clip_norm` (or the median of
    `norms`); how many were."""
    if clip_norm == "median":
        clip_norm = float(np.median(norms))
    clipped = 0
    names = list(reference)
    for message, norm in zip(replies, norms, strict=True):
        if norm <= clip_norm:
            continue
        record = message.content[P.ARRAYS]
        params = [record[name].numpy() for name in names]
        compute_clip_model_update(params, [reference[n] for n in names], clip_norm)
        message.content[P.ARRAYS] = ArrayRecord(
            {
                n: Array(np.ascontiguousarray(p, dtype=reference[n].dtype))
                for n, p in zip(names, params)
            }
        )
        clipped += 1
    return clipped


def settle_aggregate(
    arrays: ArrayRecord, reference: dict[str, np.ndarray]
) -> tuple[ArrayRecord | None, str]:
    """The aggregate in the global model's dtypes, or None and why it cannot be the next model
    (a last guard: checked, finite replies make a finite aggregate)."""
    out = {}
    for name, ref in reference.items():
        if name not in arrays:
            return None, f"the aggregate lacks array {name!r}; model kept"
        arr = arrays[name].numpy()
        if arr.shape != ref.shape or not np.isfinite(arr).all():
            return None, f"the aggregate's array {name!r} is malformed or non-finite; model kept"
        out[name] = Array(np.ascontiguousarray(arr, dtype=ref.dtype))
    return ArrayRecord(out), ""
