"""Which nodes can train a round: ask every node its count of training swipes, cheaply.

A phone with three swipes cannot make a useful update; sampling it and counting its refusal as
a failure would both waste the round's slot and push the round toward the `min_success_share`
rule. So before sampling, the server sends each node a "query" message (the ClientApp answers
with one SQL count, `P.TRAIN_SWIPES`), and the strategy samples only nodes at or above
`train.min_swipes`. The census is repeated every `federation.census_every` rounds, since devices
keep collecting swipes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fl_app.federation import protocol as P

log = logging.getLogger(__name__)


@dataclass
class Census:
    """The answer of one census: training swipes per node, and who may be sampled."""

    counts: dict[int, int] = field(default_factory=dict)  # node id -> training swipes
    unanswered: list[int] = field(default_factory=list)
    min_swipes: int = 1

    @property
    def eligible(self) -> list[int]:
        return sorted(n for n, c in self.counts.items() if c >= self.min_swipes)

    def summary(self) -> dict[str, int]:
        return {
            "nodes": len(self.counts) + len(self.unanswered),
            "eligible": len(self.eligible),
            "below_min": sum(c < self.min_swipes for c in self.counts.values()),
            "unanswered": len(self.unanswered),
        }


def take_census(
    grid: Grid, config: ConfigRecord, min_swipes: int, timeout: float, min_nodes: int = 0
) -> Census:
    """Query every connected node for its training swipes (see the module docstring), once
    `min_nodes` are connected (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < min_nodes and time.monotonic() < deadline:
        time.sleep(1.0)
    messages = [
        Message(RecordDict({P.CONFIG: config}), dst_node_id=n, message_type=MessageType.QUERY)
        for n in nodes
    ]
    census = Census(min_swipes=min_swipes)
    answered: set[int] = set()
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            log.warning("census: node %s answered with an error: %s", node, reply.error.reason)
            continue
        metrics = reply.content.metric_records.get(P.METRICS)
        count = metrics.get(P.TRAIN_SWIPES) if metrics is not None else None
        if isinstance(count, int | float):
            census.counts[node] = int(count)
            answered.add(node)
    census.unanswered = [n for n in nodes if n not in answered]
    log.info("census: %s", census.summary())
    return census


class EligibleGrid:
    """A grid whose `get_node_ids` names only the census' eligible nodes: Flower's samplers
    then draw from them alone. Everything else goes to the real grid."""

    def __init__(self, grid: Grid, eligible: Iterable[int]) -> None:
        self._grid = grid
        self._eligible = set(eligible)

    def get_node_ids(self) -> Iterator[int]:
        return iter([n for n in self._grid.get_node_ids() if n in self._eligible])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)
