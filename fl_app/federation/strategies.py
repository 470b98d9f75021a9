"""Flower's FedAvg, FedProx and FedAdam, each with one narrow addition (`RoundBookkeeping`),
and optionally a robust aggregation rule in place of the mean (fl_app/federation/aggregation.py):

- round numbers continue after a resume: Flower's `start()` counts from 1, so every call into
  the strategy adds the run's round offset (clients see the global round; FedAdam's bias
  correction uses it);
- every reply is checked before it counts (fl_app/federation/replies.py): a rejected reply is
  a failed client, with its reason, and is never aggregated; accepted updates are clipped to
  `aggregation.clip_norm` when set, and an aggregate that is not finite is never the next model;
- training rounds count the sampled clients that succeeded and failed; when fewer than
  `min_success_share` of them succeeded, the round keeps the previous model (no aggregation, so
  no release either) and is reported;
- federated evaluation results (checked the same way) are kept for the round's metrics line;
- with `train.lr_schedule=cosine`, the learning rate sent to a round's clients decays over the
  run's rounds from `train.lr` to a tenth of it (`training.cosine_factor`).

FedAdam's server-side state (first and second moments) is saved beside each checkpoint's tensors
(`strategy_state.safetensors`) and restored on resume.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fl_app.decoder.training import cosine_factor
from fl_app.federation import aggregation
from fl_app.federation import protocol as P
from fl_app.federation.census import Census, EligibleGrid, take_census
from fl_app.federation.replies import screen_replies
from fl_app.federation.robust_config import AggregationConfig, AggregationRule, ReplyChecks
from fl_app.federation.run_config import (
    FedAdamConfig,
    FedAvgConfig,
    FedProxConfig,
    LrSchedule,
    RunConfig,
)

log = logging.getLogger(__name__)

STATE_FILE = "strategy_state.safetensors"


@dataclass
class TrainOutcome:
    """How one training round went, as the strategy saw it."""

    round: int  # global round number
    sampled: int = 0
    ok: int = 0
    failed: int = 0
    accepted: bool = False
    errors: list[str] = field(default_factory=list)  # client errors, then rejected replies
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: int = 0  # replies the checks refused (counted in `failed` too)
    clipped: int = 0  # accepted updates scaled down to aggregation.clip_norm
    kept_reason: str = ""  # why an aggregation gave no model (beyond too few clients)

    @property
    def share_ok(self) -> float:
        return self.ok / self.sampled if self.sampled else 0.0


@dataclass
class RoundLedger:
    """State shared by the strategy and the per-round evaluation callback of one run."""

    offset: int = 0  # global round = Flower's round + offset
    min_success_share: float = 0.5
    train: dict[int, TrainOutcome] = field(default_factory=dict)
    federated_eval: dict[int, dict[str, float]] = field(default_factory=dict)
    census: dict[int, dict[str, int]] = field(default_factory=dict)  # round -> census summary

    def global_round(self, flower_round: int) -> int:
        return int(flower_round) + self.offset


def _metrics(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}


class RoundBookkeeping(FedAvg):
    """Placed before a Flower strategy class (FedAvg or a subclass); see the module docstring.

    Its own settings are keyword arguments; the rest go to the Flower strategy's constructor.
    """

    def __init__(
        self,
        *,
        ledger: RoundLedger,
        lr_schedule: LrSchedule,  # train.lr_schedule
        num_rounds: int,  # this run's rounds (federation.num_rounds)
        census_every: int = 0,  # federation.census_every: 0 samples every node
        census_timeout: float = 300.0,
        reply_checks: ReplyChecks,
        rule: AggregationRule,
        clip_norm: float | Literal["median"] | None,  # aggregation.clip_norm
        **flower_settings: Any,
    ) -> None:
        super().__init__(**flower_settings)
        self.ledger = ledger
        self.lr_schedule = lr_schedule
        self.num_rounds = num_rounds
        self.census_every, self.census_timeout = census_every, census_timeout
        self.census: Census | None = None
        self._census_round = 0
        self.reply_checks = reply_checks
        self.rule = rule
        self.clip_norm = clip_norm
        self.sent_arrays: dict[str, np.ndarray] | None = None  # this round's global model

    def _sampling_grid(self, server_round: int, config: ConfigRecord, grid: Grid) -> Grid:
        """The grid to sample from: only nodes the census found able to train (census.py)."""
        if not self.census_every:
            return grid
        if self.census is None or server_round - self._census_round >= self.census_every:
            min_swipes = int(config["min-swipes"])
            self.census = take_census(
                grid, config, min_swipes, self.census_timeout, self.min_available_nodes
            )
            self._census_round = server_round
            self.ledger.census[self.ledger.global_round(server_round)] = self.census.summary()
        return EligibleGrid(grid, self.census.eligible)  # type: ignore[return-value]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        rnd = self.ledger.global_round(server_round)
        if self.lr_schedule == "cosine":  # over this run's rounds, so a resumed run decays anew
            factor = cosine_factor((server_round - 1) / max(1, self.num_rounds - 1))
            config = ConfigRecord({**dict(config), "lr": float(config["lr"]) * factor})
        grid = self._sampling_grid(server_round, config, grid)
        self.sent_arrays = P.from_record(arrays)
        with self._available_at_most(grid):
            messages = list(super().configure_train(rnd, arrays, config, grid))
        self.ledger.train[rnd] = TrainOutcome(round=rnd, sampled=len(messages))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rnd = self.ledger.global_round(server_round)
        if self.sent_arrays is None:
            raise RuntimeError("aggregate_train before configure_train: no global model to check")
        replies = list(replies)
        outcome = self.ledger.train.setdefault(rnd, TrainOutcome(round=rnd))
        outcome.sampled = max(outcome.sampled, len(replies))
        screened = screen_replies(
            [m for m in replies if not m.has_error()], self.reply_checks, self.sent_arrays
        )
        outcome.ok = len(screened.accepted)
        outcome.rejected = len(screened.rejected)
        outcome.failed = outcome.sampled - outcome.ok
        outcome.errors = [m.error.reason for m in replies if m.has_error()] + screened.rejected
        if outcome.ok == 0 or outcome.share_ok < self.ledger.min_success_share:
            log.warning(
                "round %d: %d of %d sampled clients succeeded (< %.0f%%): model kept, no release",
                rnd,
                outcome.ok,
                outcome.sampled,
                100 * self.ledger.min_success_share,
            )
            outcome.accepted = False
            return None, None
        accepted = screened.accepted
        if self.clip_norm is not None:
            outcome.clipped = aggregation.clip_updates(
                accepted, screened.update_norms, self.sent_arrays, self.clip_norm
            )
        aggregation.configure_rule(self, self.rule, len(accepted))
        state = {k: getattr(self, k) for k in ("m_t", "v_t") if hasattr(self, k)}
        arrays, metrics = super().aggregate_train(rnd, accepted)
        if arrays is None:
            outcome.kept_reason = aggregation.why_no_aggregate(self.rule, len(accepted))
        else:
            arrays, outcome.kept_reason = aggregation.settle_aggregate(arrays, self.sent_arrays)
        if arrays is None:
            for key, value in state.items():  # FedAdam's moments stay as they were
                setattr(self, key, value)
            log.warning("round %d: %s", rnd, outcome.kept_reason)
            outcome.accepted = False
            return None, None
        outcome.accepted = True
        outcome.metrics = _metrics(metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        rnd = self.ledger.global_round(server_round)
        if self.census is not None:  # the last census' nodes: others have nothing held out
            grid = EligibleGrid(grid, self.census.eligible)  # type: ignore[assignment]
        with self._available_at_most(grid):
            return list(super().configure_evaluate(rnd, arrays, config, grid))

    @contextlib.contextmanager
    def _available_at_most(self, grid: Grid) -> Iterator[None]:
        """`min_available_nodes` counts connected nodes, which the census already waited for:
        sampling from its eligible nodes must not wait for nodes that will never be eligible."""
        if not isinstance(grid, EligibleGrid):
            yield
            return
        wanted = self.min_available_nodes
        self.min_available_nodes = min(wanted, len(list(grid.get_node_ids())))
        try:
            yield
        finally:
            self.min_available_nodes = wanted

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        rnd = self.ledger.global_round(server_round)
        replies = [m for m in replies if not m.has_error()]
        metrics = super().aggregate_evaluate(
            rnd, screen_replies(replies, self.reply_checks).accepted
        )
        self.ledger.federated_eval[rnd] = _metrics(metrics)
        return metrics


def build_strategy(cfg: RunConfig, ledger: RoundLedger) -> RoundBookkeeping:
    """The strategy of `cfg.strategy`, built with its settings and wired to `ledger`."""
    fed = cfg.federation
    agg: AggregationConfig = cfg.aggregation
    common: dict[str, Any] = {
        "ledger": ledger,
        "lr_schedule": cfg.train.lr_schedule,
        "num_rounds": fed.num_rounds,
        "census_every": fed.census_every,
        "census_timeout": fed.round_timeout_s,
        "reply_checks": cfg.reply_checks,
        "rule": agg.rule,
        "clip_norm": agg.clip_norm,
        "fraction_train": fed.fraction_train,
        "fraction_evaluate": fed.fraction_evaluate,
        "min_train_nodes": fed.min_train_nodes,
        "min_evaluate_nodes": fed.min_evaluate_nodes,
        "min_available_nodes": fed.min_available_nodes,
    }
    strategy = cfg.strategy

    def cls(base: type[FedAvg]) -> type[RoundBookkeeping]:
        return aggregation.compose(RoundBookkeeping, base, agg.rule.name)  # type: ignore[return-value]

    if isinstance(strategy, FedProxConfig):
        return cls(FedProx)(**common, proximal_mu=strategy.mu)
    if isinstance(strategy, FedAdamConfig):
        return cls(FedAdam)(
            **common,
            eta=strategy.eta,
            eta_l=strategy.eta_l,
            beta_1=strategy.beta_1,
            beta_2=strategy.beta_2,
            tau=strategy.tau,
        )
    assert isinstance(strategy, FedAvgConfig)
    return cls(FedAvg)(**common)


def has_server_state(strategy: FedAvg) -> bool:
    """Whether the strategy keeps server-side optimizer state (FedAdam's moments)."""
    return isinstance(strategy, FedAdam)


def save_state(strategy: FedAvg) -> bytes | None:
    """Server-side optimizer state to store beside the tensors (None: the strategy has none)."""
    m_t = getattr(strategy, "m_t", None)
    v_t = getattr(strategy, "v_t", None)
    if not m_t and not v_t:
        return None
    arrays = {f"m/{k}": np.asarray(v) for k, v in (m_t or {}).items()}
    arrays.update({f"v/{k}": np.asarray(v) for k, v in (v_t or {}).items()})
    return st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def restore_state(strategy: FedAvg, data: bytes) -> None:
    """Put saved moments back into a FedAdam strategy."""
    if not isinstance(strategy, FedAdam):
        raise ValueError(f"{type(strategy).__name__} has no server-side state to restore")
    arrays = st_load(data)
    m_t = {k[2:]: v for k, v in arrays.items() if k.startswith("m/")}
    v_t = {k[2:]: v for k, v in arrays.items() if k.startswith("v/")}
    strategy.m_t = m_t or None
    strategy.v_t = v_t or None
