"""Every client reply is checked before it counts (docs/security.md).

A training reply must hold an ArrayRecord ``arrays`` with exactly the global model's names,
shapes and dtypes, all finite; a MetricRecord ``metrics`` whose ``num-examples`` is positive and
at most ``reply_checks.max_num_examples``; and an update ``reply - global`` whose L2 norm is
within ``reply_checks.max_update_ratio`` x the global model's norm and ``max_update_norm``. A
reply that fails is rejected with its reason (the strategy counts it as a failed client); it is
never averaged. An evaluate reply needs the same ``num-examples``.

What passes is normalised for Flower's aggregation, which refuses replies that differ in their
records or metric keys (``InconsistentMessageReplies`` stops the run): each accepted reply keeps
just ``arrays`` and ``metrics``, and ``metrics`` just the finite scalar keys every accepted
reply of the round has. So a node of a newer version that reports an extra metric is heard, and
its extra key is left out of the round's averages.

Accepted replies come out in an order fixed by their content, not by when they arrived: a sum
of floats depends on its order, so a round averaged in arrival order gives different bits
from run to run, and a seeded simulation would not reproduce its models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from fl_app.federation import protocol as P
from fl_app.federation.robust_config import ReplyChecks

log = logging.getLogger(__name__)


class ReplyRejected(ValueError):
    """A reply that must not count; the message says why."""


@dataclass
class ScreenedReplies:
    """The replies that count (normalised, see the module docstring) and why the rest did not."""

    accepted: list[Message] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "node 7: <reason>", one per reply
    update_norms: list[float] = field(default_factory=list)  # of `accepted`, in order


def update_norm(arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """L2 norm of `arrays - reference` over all arrays, in float64 (no overflow)."""
    total = 0.0
    for name, ref in reference.items():
        diff = arrays[name].astype(np.float64) - ref.astype(np.float64)
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


def global_norm(reference: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in reference.values()))


def check_num_examples(metrics: MetricRecord, limits: ReplyChecks) -> float:
    value = metrics.get(P.NUM_EXAMPLES)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReplyRejected(f"{P.NUM_EXAMPLES} is missing or not a number ({value!r})")
    if not (math.isfinite(value) and 0 < value <= limits.max_num_examples):
        raise ReplyRejected(
            f"{P.NUM_EXAMPLES} {value:g} is outside (0, {limits.max_num_examples}] "
            "(reply_checks.max_num_examples)"
        )
    return float(value)


def check_arrays(record: ArrayRecord, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reply's arrays, if they have the global model's names, shapes and dtypes and are
    all finite."""
    missing = sorted(set(reference) - set(record.keys()))
    unexpected = sorted(set(record.keys()) - set(reference))
    if missing or unexpected:
        raise ReplyRejected(
            f"arrays differ from the global model's: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    arrays = {}
    for name, ref in reference.items():
        try:
            arr = record[name].numpy()
        except Exception as exc:  # a hostile payload may fail in many ways; none may stop us
            raise ReplyRejected(f"array {name!r} cannot be read: {exc}") from None
        if arr.dtype != ref.dtype:
            raise ReplyRejected(f"array {name!r} has dtype {arr.dtype}, expected {ref.dtype}")
        if arr.shape != ref.shape:
            raise ReplyRejected(f"array {name!r} has shape {arr.shape}, expected {ref.shape}")
        if not np.isfinite(arr).all():
            raise ReplyRejected(f"array {name!r} has NaN or infinite values")
        arrays[name] = arr
    return arrays


def check_update(
    arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray], limits: ReplyChecks
) -> float:
    """The update's norm, if within the configured bounds."""
    norm = update_norm(arrays, reference)
    if limits.max_update_norm is not None and norm > limits.max_update_norm:
        raise ReplyRejected(
            f"update norm {norm:.4g} exceeds {limits.max_update_norm:g} "
            "(reply_checks.max_update_norm)"
        )
    ratio = limits.max_update_ratio
    scale = global_norm(reference)
    if ratio is not None and scale > 0 and norm > ratio * scale:
        raise ReplyRejected(
            f"update norm {norm:.4g} exceeds {ratio:g} x the global model's norm {scale:.4g} "
            "(reply_checks.max_update_ratio)"
        )
    return norm


def _records(message: Message, want_arrays: bool) -> tuple[ArrayRecord | None, MetricRecord]:
    if not message.has_content():
        raise ReplyRejected("the reply is empty")
    content = message.content
    metrics = content.get(P.METRICS)
    if not isinstance(metrics, MetricRecord):
        raise ReplyRejected(f"the reply has no MetricRecord {P.METRICS!r}")
    if not want_arrays:
        return None, metrics
    arrays = content.get(P.ARRAYS)
    if not isinstance(arrays, ArrayRecord):
        raise ReplyRejected(f"the reply has no ArrayRecord {P.ARRAYS!r}")
    return arrays, metrics


def _scalar_metrics(metrics: MetricRecord) -> dict[str, float]:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _who(message: Message) -> str:
    return f"node {message.metadata.src_node_id}"


def screen_replies(
    replies: Iterable[Message],
    limits: ReplyChecks,
    reference: dict[str, np.ndarray] | None = None,
) -> ScreenedReplies:
    """Check replies without an error (`reference`: the global model sent this round, for a
    training round; None for evaluate replies, which carry no arrays)."""
    out = ScreenedReplies()
    kept: list[tuple[Message, ArrayRecord | None, dict[str, float], float]] = []
    for message in replies:
        try:
            arrays, metrics = _records(message, want_arrays=reference is not None)
            check_num_examples(metrics, limits)
            norm = math.nan
            if arrays is not None and reference is not None:
                norm = check_update(check_arrays(arrays, reference), reference, limits)
        except ReplyRejected as exc:
            out.rejected.append(f"{_who(message)}: reply rejected: {exc}")
            log.warning("%s: reply rejected: %s", _who(message), exc)
            continue
        kept.append((message, arrays, _scalar_metrics(metrics), norm))
    kept.sort(key=lambda entry: content_key(entry[1], entry[2]))
    shared = set.intersection(*(set(m) for _, _, m, _ in kept)) if kept else set()
    for message, arrays, metrics, norm in kept:
        if arrays is not None:  # a training reply (arrays are read only with a reference)
            out.update_norms.append(norm)
        extra = sorted(set(metrics) - shared)
        if extra:
            log.info("%s: metrics %s left out of the round's averages", _who(message), extra)
        content = RecordDict({P.METRICS: MetricRecord({k: metrics[k] for k in sorted(shared)})})
        if arrays is not None:
            content[P.ARRAYS] = arrays
        message.content = content
        out.accepted.append(message)
    return out


def content_key(arrays: ArrayRecord | None, metrics: dict[str, float]) -> str:
    """A reply's place in the round's order: a digest of its tensors and metrics (less the
    training's wall time, which no seed fixes), so the same replies are averaged in the same
    order however they arrived."""
    keyed = sorted((k, v) for k, v in metrics.items() if k != P.TRAIN_SECONDS)
    digest = hashlib.sha256(json.dumps(keyed).encode())
    for name in sorted(arrays.keys()) if arrays is not None else ():
        digest.update(name.encode())
        digest.update(arrays[name].data)
    return digest.hexdigest()
