"""Replies are checked before they count; robust aggregation and clipping compose with the
project's strategies (fl_app/federation/replies.py, aggregation.py, strategies.py).

Real Flower Messages and the real strategies; the end-to-end simulation with hostile nodes is in
tests/test_hostile_federation.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.serverapp.strategy import FedAvg

from fl_app.federation import protocol as P
from fl_app.federation.config import ConfigError, compose, finalize
from fl_app.federation.replies import screen_replies
from fl_app.federation.robust_config import ReplyChecks
from fl_app.federation.strategies import RoundLedger, build_strategy, save_state

GLOBAL = {"a": np.zeros((4, 3), dtype=np.float32), "b": np.ones(5, dtype=np.float32)}
LIMITS = ReplyChecks(max_num_examples=1000, max_update_ratio=3.0, max_update_norm=None)


def reply(
    arrays: dict | None = None,
    metrics: dict | None = None,
    node: int = 1,
    error: str | None = None,
    kind: str = "train",
) -> Message:
    metadata = Metadata(1, f"m{node}", node, 0, "q", "1", time.time(), 3600.0, kind)
    if error is not None:
        return make_message(metadata, error=Error(code=2, reason=error))
    content = RecordDict(
        {P.METRICS: MetricRecord(metrics or {P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 1.0})}
    )
    if arrays is not None:
        content[P.ARRAYS] = ArrayRecord(
            {k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}
        )
    return make_message(metadata, content)


def moved(delta: float = 0.1, **change) -> dict:
    """The global model moved by `delta` everywhere, with `change` replacing arrays."""
    out = {k: (v + delta).astype(v.dtype) for k, v in GLOBAL.items()}
    out.update(change)
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(
    "arrays,metrics,reason",
    [
        (moved(a=np.full((4, 3), np.nan, np.float32)), None, r"'a' has NaN or infinite"),
        (moved(b=np.array([1, np.inf, 1, 1, 1], np.float32)), None, r"'b' has NaN or infinite"),
        (moved(), {P.NUM_EXAMPLES: 1e12}, r"num-examples 1e\+12 is outside \(0, 1000\]"),
        (moved(), {P.NUM_EXAMPLES: 0}, r"num-examples 0 is outside"),
        (moved(), {P.NUM_EXAMPLES: -10}, r"num-examples -10 is outside"),
        (moved(), {P.NUM_EXAMPLES: float("nan")}, r"num-examples nan is outside"),
        (moved(), {P.TRAIN_LOSS: 1.0}, r"num-examples is missing"),
        (moved(a=np.zeros((3, 3), np.float32)), None, r"'a' has shape \(3, 3\), expected \(4, 3\)"),
        (moved(a=np.zeros((4, 3), np.float64)), None, r"'a' has dtype float64, expected float32"),
        (moved(b=None), None, r"missing \['b'\]"),
        (moved(c=np.zeros(2, np.float32)), None, r"unexpected \['c'\]"),
        (moved(delta=10.0), None, r"update norm 41.23 exceeds 3 x the global model's norm 2.236"),
        (None, None, r"no ArrayRecord 'arrays'"),
    ],
)
def test_each_bad_training_reply_is_rejected_with_its_reason(arrays, metrics, reason):
    good = reply(moved(), node=1)
    bad = reply(arrays, metrics, node=7)
    screened = screen_replies([good, bad], LIMITS, GLOBAL)
    assert screened.accepted == [good]
    assert len(screened.rejected) == 1
    assert screened.rejected[0].startswith("node 7: reply rejected: ")
    assert pytest.approx(screened.update_norms) == [0.1 * np.sqrt(17)]
    import re

    assert re.search(reason, screened.rejected[0]), screened.rejected[0]


def test_an_absolute_update_bound():
    limits = ReplyChecks(max_num_examples=1000, max_update_ratio=None, max_update_norm=0.2)
    screened = screen_replies([reply(moved(0.01)), reply(moved(0.1), node=2)], limits, GLOBAL)
    assert len(screened.accepted) == 1
    assert "exceeds 0.2 (reply_checks.max_update_norm)" in screened.rejected[0]


def test_a_newer_nodes_extra_metric_is_heard_and_left_out_of_the_averages():
    """Flower stops the run when replies' metric keys differ (InconsistentMessageReplies)."""
    newer = reply(moved(), {P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 2.0, "new-metric": 5.0}, node=2)
    odd = reply(moved(), {P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: float("nan")}, node=3)
    screened = screen_replies([reply(moved()), newer, odd], LIMITS, GLOBAL)
    assert len(screened.accepted) == 3 and not screened.rejected
    assert [set(m.content[P.METRICS]) for m in screened.accepted] == [{P.NUM_EXAMPLES}] * 3


def _strategy(tmp_path, *overrides: str):
    cfg = finalize(compose([f"paths.root={tmp_path}", "init=random", *overrides]))
    ledger = RoundLedger(min_success_share=0.5)
    strategy = build_strategy(cfg, ledger)
    strategy.sent_arrays = {k: v.copy() for k, v in GLOBAL.items()}  # what configure_train sets
    strategy.current_arrays = {k: v.copy() for k, v in GLOBAL.items()}  # FedAdam's copy
    return strategy, ledger


def test_bad_replies_are_failed_clients_with_reasons_and_never_averaged(tmp_path):
    strategy, ledger = _strategy(tmp_path)
    replies = [
        reply(moved(0.1), node=1),
        reply(moved(0.3), node=2),
        reply(moved(0.2), {P.NUM_EXAMPLES: 10, P.TRAIN_LOSS: 1.0, "new-metric": 1.0}, node=3),
        reply(moved(0.2), node=9),
        reply(moved(a=np.full((4, 3), np.nan, np.float32)), node=4),
        reply(moved(), {P.NUM_EXAMPLES: 1e12, P.TRAIN_LOSS: 1.0}, node=5),
        reply(moved(a=np.zeros((5, 3), np.float32)), node=6),
        reply(error="NotEnoughSwipes: too few", node=8),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    outcome = ledger.train[1]
    assert (outcome.sampled, outcome.ok, outcome.failed, outcome.rejected) == (8, 4, 4, 3)
    assert outcome.accepted and outcome.errors[0] == "NotEnoughSwipes: too few"
    assert [e.split(":")[0] for e in outcome.errors[1:]] == ["node 4", "node 5", "node 6"]
    got = {k: a.numpy() for k, a in arrays.items()}
    np.testing.assert_allclose(got["a"], np.full((4, 3), 0.2), rtol=1e-6)  # mean of the 4 good ones
    assert got["a"].dtype == np.float32 and metrics[P.TRAIN_LOSS] == 1.0


def test_a_round_of_mostly_bad_replies_keeps_the_model(tmp_path):
    strategy, ledger = _strategy(tmp_path)
    nan = moved(b=np.full(5, np.nan, np.float32))
    arrays, _ = strategy.aggregate_train(
        1, [reply(moved()), reply(nan, node=2), reply(nan, node=3)]
    )
    assert arrays is None and not ledger.train[1].accepted and ledger.train[1].rejected == 2


def _cluster(n_honest: int, outlier: float = -50.0) -> list[Message]:
    """Honest updates +1 (slightly apart), and one hostile update far the other way."""
    rng = np.random.default_rng(0)
    honest = [reply(moved(1.0 + 0.01 * rng.standard_normal()), node=i) for i in range(n_honest)]
    return [*honest, reply(moved(outlier), node=99)]


@pytest.mark.parametrize(
    "rule",
    ["trimmed_mean", "median", "krum", "multikrum", "bulyan aggregation.malicious_share=0.2"],
)
@pytest.mark.parametrize("strategy_name", ["fedavg", "fedprox"])
def test_robust_rules_ignore_an_outlier_that_drags_the_mean(tmp_path, rule, strategy_name):
    name, *extra = rule.split()
    checks = "reply_checks.max_update_ratio=null"  # the outlier passes the checks
    mean, _ = _strategy(tmp_path, f"strategy={strategy_name}", checks)
    robust, ledger = _strategy(
        tmp_path, f"strategy={strategy_name}", f"aggregation={name}", *extra, checks
    )
    replies = _cluster(8)  # 9 replies: bulyan with f = 1 needs 7
    dragged = {k: a.numpy() for k, a in mean.aggregate_train(1, _cluster(8))[0].items()}
    assert dragged["b"].mean() < 0  # FedAvg: one of nine replies pulls everything below zero
    got = {k: a.numpy() for k, a in robust.aggregate_train(1, replies)[0].items()}
    np.testing.assert_allclose(got["b"], GLOBAL["b"] + 1.0, atol=0.05)
    assert ledger.train[1].accepted and ledger.train[1].ok == 9


def test_bulyan_keeps_the_model_when_a_round_has_too_few_replies(tmp_path):
    strategy, ledger = _strategy(
        tmp_path,
        "aggregation=bulyan",
        "aggregation.malicious_share=0.2",
        "reply_checks.max_update_ratio=null",
    )
    arrays, _ = strategy.aggregate_train(1, _cluster(5))
    assert arrays is None and not ledger.train[1].accepted
    assert ledger.train[1].kept_reason == (
        "bulyan needs at least 7 accepted replies, got 6; model kept"
    )


def test_fedadam_steps_on_the_median_and_keeps_finite_state(tmp_path):
    strategy, _ = _strategy(
        tmp_path, "strategy=fedadam", "aggregation=median", "reply_checks.max_update_ratio=null"
    )
    got = {k: a.numpy() for k, a in strategy.aggregate_train(1, _cluster(4))[0].items()}
    assert (got["b"] > GLOBAL["b"]).all()  # Adam moved towards +1, not towards -50
    assert all(np.isfinite(v).all() for v in strategy.m_t.values())
    assert save_state(strategy) is not None


def test_server_side_clipping_scales_large_updates_down(tmp_path):
    strategy, ledger = _strategy(tmp_path, "aggregation.clip_norm=0.5")
    small, large = moved(0.01), moved(1.0)  # update norms 0.04 and 4.1
    arrays, _ = strategy.aggregate_train(1, [reply(small), reply(large, node=2)])
    assert ledger.train[1].clipped == 1
    got = {k: a.numpy() for k, a in arrays.items()}
    clipped_b = 1.0 * 0.5 / np.sqrt(17)  # the large update scaled to norm 0.5
    np.testing.assert_allclose(got["b"], GLOBAL["b"] + (0.01 + clipped_b) / 2, rtol=1e-5)


def test_clipping_to_the_rounds_median_norm_needs_no_tuning(tmp_path):
    strategy, ledger = _strategy(tmp_path, "aggregation.clip_norm=median")
    assert strategy.clip_norm == "median"
    replies = [reply(moved(0.01)), reply(moved(0.1), node=2), reply(moved(1.0), node=3)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert ledger.train[1].clipped == 1  # the largest, to the middle one's norm
    got = {k: a.numpy() for k, a in arrays.items()}
    np.testing.assert_allclose(got["b"], GLOBAL["b"] + (0.01 + 0.1 + 0.1) / 3, rtol=1e-5)


def test_evaluate_replies_are_checked_too(tmp_path):
    strategy, ledger = _strategy(tmp_path)
    replies = [
        reply(None, {P.NUM_EXAMPLES: 10, P.EVAL_TOP1: 0.5}, kind="evaluate"),
        reply(None, {P.NUM_EXAMPLES: 10, P.EVAL_TOP1: 0.7, "new": 1.0}, node=2, kind="evaluate"),
        reply(None, {P.NUM_EXAMPLES: 1e12, P.EVAL_TOP1: 0.0}, node=3, kind="evaluate"),
    ]
    metrics = strategy.aggregate_evaluate(1, replies)
    assert metrics[P.EVAL_TOP1] == pytest.approx(0.6)
    assert ledger.federated_eval[1] == {P.EVAL_TOP1: pytest.approx(0.6)}


@pytest.mark.parametrize(
    "override,message",
    [
        ("aggregation.clip_norm=0", "aggregation.clip_norm: positive, median, or null"),
        ("aggregation.clip_norm=mean", "aggregation.clip_norm: expected a number"),
        ("reply_checks.max_num_examples=0", "reply_checks.max_num_examples: at least 1"),
        ("reply_checks.max_update_ratio=-1", "reply_checks.max_update_ratio: positive"),
        ("+aggregation.beta=0.2", None),  # mean ignores a stray key
    ],
)
def test_reply_checks_and_aggregation_settings_are_checked(tmp_path, override, message):
    if message is None:
        finalize(compose([f"paths.root={tmp_path}", "init=random", override]))
        return
    with pytest.raises(ConfigError, match=message):
        finalize(compose([f"paths.root={tmp_path}", "init=random", override]))
    with pytest.raises(ConfigError, match=r"aggregation.beta: in \[0, 0.5\)"):
        finalize(
            compose([f"paths.root={tmp_path}", "aggregation=trimmed_mean", "aggregation.beta=0.5"])
        )


def test_a_rounds_average_does_not_depend_on_the_order_replies_arrive_in(tmp_path):
    """Floats summed in another order give other bits: Flower's FedAvg averages in arrival
    order, which a simulation does not fix. The project's strategy averages the same replies
    to the same bits in any order (a seeded run reproduces its models)."""
    rng = np.random.default_rng(0)
    updates = [
        {
            k: (v + rng.standard_normal(v.shape) * 10.0**e).astype(np.float32)
            for k, v in GLOBAL.items()
        }
        for e in (-3, 0, 2, -1, 1)
    ]
    orders = [list(range(5)), [4, 2, 0, 3, 1], [1, 3, 4, 0, 2]]

    def average(strategy, order):
        replies = [reply(updates[i], node=i + 1) for i in order]
        arrays, _ = strategy.aggregate_train(1, replies)
        return {k: a.numpy().tobytes() for k, a in arrays.items()}

    plain = [average(FedAvg(), order) for order in orders]
    assert plain[0] != plain[1] or plain[0] != plain[2]  # arrival order changes Flower's bits
    checks = "reply_checks.max_update_ratio=null"
    ours = [average(_strategy(tmp_path / str(i), checks)[0], o) for i, o in enumerate(orders)]
    assert ours[0] == ours[1] == ours[2]
