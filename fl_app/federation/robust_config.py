"""The typed settings against hostile clients: `aggregation=` (conf/aggregation/) and
`reply_checks` (conf/config.yaml), read into frozen dataclasses like the rest of the run config
(fl_app/federation/run_config.py holds them as `RunConfig.aggregation` and `.reply_checks`).

Kept apart from run_config.py so that each group's options, and their checks, sit in one small
module; docs/security.md explains what each choice defends against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from fl_app.federation.fields import Fields


@dataclass(frozen=True)
class MeanRule:
    """The strategy's own weighted mean (FedAdam: its server step on that mean)."""

    name: ClassVar[str] = "mean"


@dataclass(frozen=True)
class TrimmedMeanRule:
    name: ClassVar[str] = "trimmed_mean"
    beta: float  # per coordinate, this share of the values is cut off at each end


@dataclass(frozen=True)
class MedianRule:
    name: ClassVar[str] = "median"


@dataclass(frozen=True)
class KrumRule:
    name: ClassVar[str] = "krum"
    malicious_share: float  # of a round's accepted replies assumed hostile (Krum's f)


@dataclass(frozen=True)
class MultiKrumRule:
    """Averages the n - f replies with the best Krum scores."""

    name: ClassVar[str] = "multikrum"
    malicious_share: float


@dataclass(frozen=True)
class BulyanRule:
    """Multi-Krum, then a trimmed mean around the median; needs n >= 4f + 3 replies."""

    name: ClassVar[str] = "bulyan"
    malicious_share: float


AggregationRule = MeanRule | TrimmedMeanRule | MedianRule | KrumRule | MultiKrumRule | BulyanRule
AGGREGATION_RULES = tuple(
    r.name for r in (MeanRule, TrimmedMeanRule, MedianRule, KrumRule, MultiKrumRule, BulyanRule)
)


@dataclass(frozen=True)
class AggregationConfig:
    rule: AggregationRule
    # Server-side: each accepted update scaled down to this L2 norm; "median": to the median
    # norm of the round's accepted updates (needs no tuning while most replies are honest).
    clip_norm: float | Literal["median"] | None


@dataclass(frozen=True)
class ReplyChecks:
    """What a training reply must satisfy to count (fl_app/federation/replies.py)."""

    max_num_examples: int  # also sent to nodes: they train on at most their newest this many
    max_update_ratio: float | None  # ||update|| <= ratio * ||global model||
    max_update_norm: float | None  # ||update|| <= this


def _optional_number(f: Fields, key: str) -> float | None:
    return f.number(key) if f.has(key) else None


def _need(cond: bool, f: Fields, key: str, what: str) -> None:
    if not cond:
        raise f.fail(key, what)


def _share(f: Fields, key: str) -> float:
    value = f.number(key)
    _need(0.0 <= value < 0.5, f, key, f"in [0, 0.5), got {value!r}")
    return value


def read_aggregation(a: Fields) -> AggregationConfig:
    name = a.choice("name", AGGREGATION_RULES)
    rule: AggregationRule
    if name == TrimmedMeanRule.name:
        rule = TrimmedMeanRule(beta=_share(a, "beta"))
    elif name == MedianRule.name:
        rule = MedianRule()
    elif name == KrumRule.name:
        rule = KrumRule(malicious_share=_share(a, "malicious_share"))
    elif name == MultiKrumRule.name:
        rule = MultiKrumRule(malicious_share=_share(a, "malicious_share"))
    elif name == BulyanRule.name:
        rule = BulyanRule(malicious_share=_share(a, "malicious_share"))
    else:
        rule = MeanRule()
    clip: float | Literal["median"] | None = "median"
    if a.data.get("clip_norm") != "median":
        clip = _optional_number(a, "clip_norm")
        _need(clip is None or clip > 0, a, "clip_norm", "positive, median, or null (no clipping)")
    return AggregationConfig(rule=rule, clip_norm=clip)


def read_reply_checks(r: Fields) -> ReplyChecks:
    checks = ReplyChecks(
        max_num_examples=r.integer("max_num_examples"),
        max_update_ratio=_optional_number(r, "max_update_ratio"),
        max_update_norm=_optional_number(r, "max_update_norm"),
    )
    _need(checks.max_num_examples >= 1, r, "max_num_examples", "at least 1")
    for key in ("max_update_ratio", "max_update_norm"):
        bound = getattr(checks, key)
        _need(bound is None or bound > 0, r, key, "positive, or null for no bound")
    return checks
