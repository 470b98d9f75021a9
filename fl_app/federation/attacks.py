"""Hostile ClientApps, for the tests and bench/attack.py: the real ClientApp trains, then the
reply is corrupted the way a broken, outdated or malicious node would send it.

`hostile_client_app(choose)` asks `choose(partition_id, server_round)` which attack a simulated
node mounts in a round (None: it behaves). Attacks on the reply's form, which the server's reply
checks refuse: `nan`, `huge-examples` (1e12), `wrong-shape`; one the server must tolerate:
`extra-metric` (a node of a newer version). Attacks that pass the checks (the benchmark's):
`flip` (the update negated), `flip-scaled` (negated and scaled to just under the server's update
bound), `labels` (honest training on the node's swipes with their words shuffled).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp import ClientApp

from fl_app.federation import protocol as P
from fl_app.federation.client import evaluate_on_store, node_store_path, train_on_store
from fl_app.federation.replies import global_norm, update_norm
from fl_app.federation.robust_config import ReplyChecks
from fl_app.swipes.store import SwipeStore

log = logging.getLogger(__name__)

FORM_ATTACKS = ("nan", "huge-examples", "wrong-shape", "extra-metric")
PASSING_ATTACKS = ("flip", "flip-scaled", "labels")
ATTACKS = FORM_ATTACKS + PASSING_ATTACKS
EXTRA_METRIC = "metric-of-a-newer-version"

Chooser = Callable[[int, int], str | None]


def _arrays(reply: Message) -> dict[str, np.ndarray]:
    return P.from_record(reply.content[P.ARRAYS])


def _set_arrays(reply: Message, arrays: dict[str, np.ndarray]) -> None:
    reply.content[P.ARRAYS] = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}
    )


def _set_metric(reply: Message, key: str, value: float) -> None:
    metrics = dict(reply.content[P.METRICS])
    metrics[key] = value
    reply.content[P.METRICS] = MetricRecord(metrics)


def _flipped(
    arrays: dict[str, np.ndarray], sent: dict[str, np.ndarray], scale: float
) -> dict[str, np.ndarray]:
    """`sent - scale * (arrays - sent)`, in the arrays' dtypes."""
    return {
        k: (sent[k].astype(np.float64) - scale * (a.astype(np.float64) - sent[k])).astype(a.dtype)
        for k, a in arrays.items()
    }


def update_bound(sent: dict[str, np.ndarray], checks: ReplyChecks) -> float:
    """The largest update norm the server's reply checks accept against `sent`."""
    bounds = [math.inf]
    if checks.max_update_norm is not None:
        bounds.append(checks.max_update_norm)
    if checks.max_update_ratio is not None:
        bounds.append(checks.max_update_ratio * global_norm(sent))
    return min(bounds)


def corrupt(
    kind: str, reply: Message, sent: dict[str, np.ndarray], checks: ReplyChecks, margin: float
) -> None:
    """Corrupt an honest training reply in place (`labels` happens before, in training)."""
    arrays = _arrays(reply)
    if kind == "nan":
        first = next(iter(arrays))
        arrays[first] = np.full_like(arrays[first], np.nan)
        _set_arrays(reply, arrays)
    elif kind == "huge-examples":
        _set_metric(reply, P.NUM_EXAMPLES, 1e12)
    elif kind == "wrong-shape":
        first = next(k for k, a in arrays.items() if a.ndim and a.shape[0] > 1)
        arrays[first] = arrays[first][:-1]
        _set_arrays(reply, arrays)
    elif kind == "extra-metric":
        _set_metric(reply, EXTRA_METRIC, 1.0)
    elif kind == "flip":
        _set_arrays(reply, _flipped(arrays, sent, 1.0))
    elif kind == "flip-scaled":
        norm = update_norm(arrays, sent)
        scale = margin * update_bound(sent, checks) / norm if norm > 0 else 0.0
        _set_arrays(reply, _flipped(arrays, sent, scale))
    elif kind != "labels":
        raise ValueError(f"unknown attack {kind!r}; known: {ATTACKS}")


def poisoned_store(context: Context, message: Message, directory: Path) -> Path:
    """A copy of the node's store with the words shuffled among its swipes (made once)."""
    task = P.RoundTask.from_record(message.content[P.CONFIG])
    source = node_store_path(context, task)
    path = directory / f"labels-{source.stem}.sqlite"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with SwipeStore(source) as src:
            swipes = [r.swipe for r in src.load()]
        words = [s.word for s in swipes]
        rng = np.random.default_rng(len(words))
        for swipe, word in zip(swipes, np.roll(rng.permutation(words), 1), strict=True):
            swipe.word = str(word)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # a copy a crashed run left half-written
        with SwipeStore(tmp) as dst:
            dst.append_many(swipes, source="poisoned")
        tmp.rename(path)
    return path


def hostile_client_app(
    choose: Chooser,
    *,
    checks: ReplyChecks | None = None,
    margin: float = 0.95,
    poison_dir: str | Path | None = None,
) -> ClientApp:
    """The real ClientApp, whose simulated nodes attack when `choose` says so.

    `checks`: the server's reply checks (`flip-scaled` scales to `margin` x their update bound);
    `poison_dir`: where `labels` attackers keep their poisoned store copies.
    """
    limits = checks or ReplyChecks(
        max_num_examples=5000, max_update_ratio=3.0, max_update_norm=None
    )

    def train(message: Message, context: Context) -> Message:
        partition = context.node_config.get(P.NODE_PARTITION)
        round_ = int(message.content[P.CONFIG].get("server-round", 0))
        kind = choose(int(partition), round_) if partition is not None else None
        if kind == "labels":
            if poison_dir is None:
                raise ValueError("the labels attack needs a poison_dir")
            store = poisoned_store(context, message, Path(poison_dir))
            context = Context(
                run_id=context.run_id,
                node_id=context.node_id,
                node_config={P.NODE_STORE: str(store), P.NODE_THREADS: 1},
                state=context.state,
                run_config=context.run_config,
            )
        sent = P.from_record(message.content[P.ARRAYS])
        reply = train_on_store(message, context)
        if kind is not None:
            corrupt(kind, reply, sent, limits, margin)
            log.info("partition %s round %d: attack %s", partition, round_, kind)
        return reply

    app = ClientApp()
    app.train()(train)
    app.evaluate()(evaluate_on_store)
    return app
