"""Federated training end to end: `flwr run .` against a real S3 server, resume, failures,
releases. The federations are tiny (experiment=smoke: a 1000-word lexicon, a 32-unit model)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from superlink_helpers import flwr, simulation_superlink, wait_for_run

from fl_app.checkpoints import (
    CheckpointStore,
    LocalDirBackend,
    ResilientCheckpointWriter,
    S3Backend,
)
from fl_app.federation import protocol as P
from fl_app.federation.config import compose, finalize
from fl_app.federation.experiment import run_experiment
from fl_app.federation.metrics import plot_metrics, progress_line, read_lines
from fl_app.federation.resume import ResumeError, ResumePoint, choose_run_id
from fl_app.federation.server import RoundRecorder, RunSummary, make_store, run_federation
from fl_app.federation.strategies import (
    STATE_FILE,
    RoundLedger,
    TrainOutcome,
    build_strategy,
    restore_state,
    save_state,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def smoke(root: Path, cache: str, *extra: str) -> list[str]:
    return ["experiment=smoke", f"paths.root={root}", f"data.cache_dir={cache}", *extra]


def local_store(root: Path, prefix: str = "") -> CheckpointStore:
    base = root / "outputs" / "checkpoints"
    return CheckpointStore(LocalDirBackend(base / prefix if prefix else base))


# -- `flwr run .` with the S3 backend ------------------------------------------------------


@pytest.fixture
def superlink(tmp_path, s3_server, s3_bucket):
    """Our own simulation SuperLink, started with the S3 variables (it keeps its first env)."""
    with simulation_superlink(tmp_path, s3_server.env(s3_bucket)) as env:
        yield env


@pytest.mark.slow
def test_flwr_run_s3_checkpoints_release_and_learning(
    superlink, s3_server, s3_bucket, tmp_path, synth_cache
):
    overrides = " ".join(
        smoke(tmp_path, synth_cache, "checkpoints=s3", "strategy=fedprox", "strategy.mu=0.001",
              "model.hidden=24", "run_id=accept")
    )  # fmt: skip
    started = json.loads(
        flwr(superlink, "run", ".", "t", "--format", "json",
              "--run-config", f"overrides='{overrides}'",
              "--federation-config", "num-supernodes=5")
    )  # fmt: skip
    run = wait_for_run(superlink, str(started["run-id"]))
    logs = flwr(superlink, "log", str(started["run-id"]), "t", "--show")
    assert run["status"] == "finished:completed", (run, logs[-3000:])
    assert "round 2/2 | clients ok 5 failed 0" in logs

    backend = S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket)
    store = CheckpointStore(backend)
    assert store.list_runs() == ["accept"]
    assert store.list_rounds("accept") == [0, 1, 2]
    manifests = {}
    for rnd in (0, 1, 2):
        manifest = store.load_manifest("accept", rnd)
        tensors = backend.get_bytes(f"runs/accept/round-{rnd:04d}/model.safetensors")
        assert hashlib.sha256(tensors).hexdigest() == manifest["sha256"]
        manifests[rnd] = manifest
    top1 = {rnd: m["metrics"]["top1"] for rnd, m in manifests.items()}
    # Learning: clearly above the untrained model after the last round.
    assert top1[2] >= top1[0] + 0.08, top1
    # The release names the best trained round (the first to reach the best top-1).
    best = max(top1[1], top1[2])
    release = store.read_release()
    assert release["run_id"] == "accept" and not release["pinned"]
    assert release["round"] == min(r for r in (1, 2) if top1[r] == best)
    assert release["sha256"] == manifests[release["round"]]["sha256"]
    # The overrides are visible in every manifest.
    for m in manifests.values():
        assert m["strategy"] == "fedprox" and m["config"]["strategy"]["mu"] == 0.001
        assert m["config"]["model"]["hidden"] == 24 and m["decoder"]["model"]["hidden"] == 24
        assert m["config"]["checkpoints"]["kind"] == "s3" and "store" not in m["config"]
        assert m["lexicon_id"].startswith("en-1000-")
    assert manifests[2]["parent"] == "runs/accept/round-0001" and manifests[0]["parent"] is None
    # No secret in anything stored, nor in the run's metrics.
    secrets = (s3_server.secret_key.encode(), s3_server.access_key.encode())
    for key in backend.list(""):
        data = backend.get_bytes(key)
        assert not any(s in data for s in secrets), key
    out = tmp_path / "outputs" / "federation" / "accept"
    assert (out / "plot.png").stat().st_size > 1000
    metrics_text = (out / "metrics.jsonl").read_bytes()
    assert not any(s in metrics_text for s in secrets)
    assert [r["round"] for r in read_lines(out / "metrics.jsonl")] == [0, 1, 2]


# -- resume (FedAdam, server state), corrupted checkpoints ----------------------------------


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, synth_cache):
    """A 2-round FedAdam run on 3 simulated nodes, local checkpoint store."""
    root = tmp_path_factory.mktemp("base")
    overrides = smoke(root, synth_cache, "strategy=fedadam", "simulation.num_supernodes=3")
    summary = run_experiment(finalize(compose(overrides)))
    return root, overrides, summary


@pytest.mark.slow
def test_resume_continues_round_numbers_from_saved_weights_and_state(base_run):
    root, overrides, base = base_run
    store = local_store(root)
    assert store.list_rounds(base.run_id) == [0, 1, 2]
    saved = store.load(base.run_id, 2)
    assert STATE_FILE in saved.extra  # FedAdam's moments beside the tensors
    store.promote(base.run_id, 1)  # pinned: the resumed run must not move it

    lines: list[str] = []
    cfg = finalize(compose([*overrides, f"resume.run_id={base.run_id}", "federation.num_rounds=1"]))
    resumed = run_experiment(cfg, echo=lines.append)

    assert resumed.run_id == base.run_id  # newest round: continues in place
    assert resumed.rounds == [2, 3]
    assert any(
        f"restored fedadam server state from runs/{base.run_id}/round-0002" in x for x in lines
    )
    assert any(x.startswith("round 3/3 | clients ok 3 failed 0") for x in lines), lines
    # Round "0" of the resumed run is the saved model: same weights, same evaluation.
    first = resumed.records[0]
    base_round2 = next(r for r in base.records if r["round"] == 2)
    assert first["note"] == "resumed model" and first["stored"] is None
    assert first["central"]["top1"] == base_round2["central"]["top1"]
    assert first["central"]["loss"] == pytest.approx(base_round2["central"]["loss"], rel=1e-6)
    assert store.list_rounds(base.run_id) == [0, 1, 2, 3]
    m3 = store.load_manifest(base.run_id, 3)
    assert m3["parent"] == f"runs/{base.run_id}/round-0002"
    assert STATE_FILE in m3["files"] and m3["strategy"] == "fedadam"
    assert store.load_manifest(base.run_id, 2)["sha256"] == saved.manifest["sha256"]  # untouched
    release = store.read_release()
    assert (release["round"], release["pinned"], release["reason"]) == (1, True, "promote")
    # Metrics of both runs in one file, rounds continuing.
    assert [r["round"] for r in read_lines(base.metrics_path)] == [0, 1, 2, 2, 3]


@pytest.mark.slow
def test_resume_from_corrupt_checkpoint_names_it(base_run, tmp_path):
    root, overrides, base = base_run
    copy = tmp_path / "copy"
    shutil.copytree(root / "outputs" / "checkpoints", copy / "outputs" / "checkpoints")
    victim = copy / "outputs" / "checkpoints" / "runs" / base.run_id / "round-0001"
    data = bytearray((victim / "model.safetensors").read_bytes())
    data[-10:] = b"\x00" * 10
    (victim / "model.safetensors").write_bytes(bytes(data))
    cfg = compose(
        [*overrides, f"paths.root={copy}", f"resume.run_id={base.run_id}", "resume.round=1"]
    )
    with pytest.raises(ResumeError, match=rf"runs/{base.run_id}/round-0001.*corrupt"):
        run_federation(None, finalize(cfg))  # fails before it talks to any node
    cfg = compose([*overrides, f"paths.root={copy}", "resume.run_id=no-such-run"])
    with pytest.raises(ResumeError, match="cannot resume from run no-such-run"):
        run_federation(None, finalize(cfg))


def test_resume_picks_a_run_id_that_never_overwrites(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache)))
    store = make_store(cfg.checkpoints)
    tensors = {"w": np.zeros(2, dtype=np.float32)}
    for rnd in (0, 1, 2):
        store.save("r1", rnd, tensors, {"metrics": {"top1": 0.1 * rnd}})
    point = lambda rnd: ResumePoint("r1", rnd, tensors, None)  # noqa: E731
    assert choose_run_id(cfg, store, point(2)) == "r1"  # the newest round: in place
    branched = choose_run_id(cfg, store, point(1))  # an older round: a new run
    assert branched != "r1" and branched.endswith(tuple("0123456789abcdef"))
    cfg = cfg.with_run_id("r1")
    with pytest.raises(ResumeError, match=r"rounds \[2\].*overwrite"):
        choose_run_id(cfg, store, point(1))
    with pytest.raises(ResumeError, match="a new run would overwrite"):
        choose_run_id(cfg, store, None)


# -- failed rounds and the release pointer --------------------------------------------------


@pytest.mark.slow
def test_round_where_all_clients_fail_has_no_release(tmp_path, synth_cache):
    lines: list[str] = []
    cfg = finalize(
        compose(
            smoke(tmp_path, synth_cache, "simulation.num_supernodes=2", "federation.num_rounds=1",
                  "federation.fraction_evaluate=0", "train.min_swipes=100000")
        )
    )  # fmt: skip
    summary = run_experiment(cfg, echo=lines.append)
    assert summary.rejected == [1] and summary.released == []
    assert any("round 1/1 | clients ok 0 failed 2" in x and "NO RELEASE" in x for x in lines)
    assert any("fewer than the minimum 100000" in x for x in lines)  # the client's own error
    store = make_store(cfg.checkpoints)
    assert store.read_release() is None
    manifest = store.load_manifest(summary.run_id, 1)
    assert manifest["metrics"]["accepted"] is False and manifest["metrics"]["clients_failed"] == 2
    # The model was kept: round 1 holds round 0's weights.
    assert manifest["sha256"] == store.load_manifest(summary.run_id, 0)["sha256"]


def two_node_run(tmp_path, synth_cache, rounds: int, *extra: str):
    """A smoke federation of 2 simulated nodes, half an epoch a round, no federated
    evaluation: (its config, its summary)."""
    cfg = finalize(
        compose(
            smoke(tmp_path, synth_cache, "simulation.num_supernodes=2",
                  f"federation.num_rounds={rounds}", "federation.fraction_evaluate=0",
                  "train.epochs=0.5", *extra)
        )
    )  # fmt: skip
    return cfg, run_experiment(cfg, echo=lambda line: None)


@pytest.mark.slow
def test_cosine_lr_schedule_decays_over_the_runs_rounds(tmp_path, synth_cache):
    """With train.lr_schedule=cosine the server sends each round a lower learning rate, from
    train.lr to a tenth of it at the last round; the clients train with what they are sent."""
    cfg, summary = two_node_run(tmp_path, synth_cache, 3, "train.lr_schedule=cosine")
    lrs = [r["train"]["train-lr"] for r in summary.records if r["round"] > 0]
    lr = cfg.train.lr
    assert lrs == pytest.approx([lr, 0.55 * lr, 0.1 * lr])


@pytest.mark.slow
def test_word_level_clients_train_in_a_simulation(tmp_path, synth_cache):
    """train.word_weight > 0 travels to every client of a Flower simulation: each mines its
    close calls with the round's decoder and reports the word-level loss, the round averages
    it, and the checkpoints' config records the weight."""
    cfg, summary = two_node_run(tmp_path, synth_cache, 2, "train.word_weight=2.0")
    trained = [r for r in summary.records if r["round"] > 0]
    assert [r["round"] for r in trained] == [1, 2]
    assert all(np.isfinite(r["train"][P.TRAIN_WORD_LOSS]) for r in trained)
    manifest = make_store(cfg.checkpoints).load(summary.run_id, 2).manifest
    assert manifest["config"]["train"]["word_weight"] == 2.0


def _reply(arrays: dict | None, n: int = 10, error: str | None = None) -> Message:
    metadata = Metadata(1, "m", 2, 1, "q", "1", time.time(), 3600.0, "train")
    if error is not None:
        return make_message(metadata, error=Error(code=2, reason=error))
    content = RecordDict(
        {"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
         "metrics": MetricRecord({"num-examples": n, "train-loss": 1.0})}
    )  # fmt: skip
    return make_message(metadata, content)


def test_strategy_counts_failures_and_keeps_model_below_min_share(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache, "strategy=fedadam")))
    ledger = RoundLedger(offset=5, min_success_share=0.5)
    strategy = build_strategy(cfg, ledger)
    w = {"w": np.ones(3, dtype=np.float32)}
    strategy.current_arrays = {"w": np.zeros(3, dtype=np.float32)}  # FedAdam's
    strategy.sent_arrays = {"w": np.zeros(3, dtype=np.float32)}  # what the replies are checked on
    arrays, _ = strategy.aggregate_train(
        1, [_reply(w), _reply(None, error="x"), _reply(None, error="y")]
    )
    assert arrays is None
    outcome = ledger.train[6]  # global round = 1 + offset
    assert (outcome.sampled, outcome.ok, outcome.failed, outcome.accepted) == (3, 1, 2, False)
    assert outcome.errors == ["x", "y"]
    arrays, metrics = strategy.aggregate_train(2, [_reply(w), _reply(w), _reply(None, error="z")])
    assert arrays is not None and ledger.train[7].accepted and metrics["train-loss"] == 1.0
    state = save_state(strategy)  # FedAdam moments after one update
    other = build_strategy(cfg, RoundLedger())
    restore_state(other, state)
    assert np.array_equal(other.m_t["w"], strategy.m_t["w"])
    assert np.array_equal(other.v_t["w"], strategy.v_t["w"])
    assert (
        save_state(build_strategy(finalize(compose(smoke(tmp_path, synth_cache))), ledger)) is None
    )


def test_strategies_are_built_with_their_settings(tmp_path, synth_cache):
    ledger = RoundLedger()
    cfg = finalize(
        compose(smoke(tmp_path, synth_cache, "strategy=fedprox", "strategy.mu=0.3",
                      "train.lr_schedule=cosine", "federation.fraction_train=0.5"))
    )  # fmt: skip
    prox = build_strategy(cfg, ledger)
    assert prox.proximal_mu == 0.3 and prox.fraction_train == 0.5
    assert prox.ledger is ledger and prox.lr_schedule == "cosine" and prox.num_rounds == 2
    adam = build_strategy(
        finalize(compose(smoke(tmp_path, synth_cache, "strategy=fedadam", "strategy.tau=0.002"))),
        ledger,
    )
    assert (adam.eta, adam.tau, adam.lr_schedule) == (0.01, 0.002, "constant")


def test_recorder_releases_best_rounds_but_never_moves_a_pinned_pointer(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache, "run_id=rec")))
    spec = cfg.decoder
    store = make_store(cfg.checkpoints)
    writer = ResilientCheckpointWriter(store)
    ledger = RoundLedger()
    strategy = build_strategy(cfg, ledger)
    scores = iter([0.05, 0.3, 0.5, 0.6, 0.9])

    def evaluator(arrays):
        return {"top1": next(scores), "top4": 0.9, "mrr": 0.5, "loss": 1.0, "n": 10}

    summary = RunSummary("rec", store.describe(), tmp_path / "out", cfg.evaluation.metric)
    lines: list[str] = []
    recorder = RoundRecorder(
        cfg, spec, ledger, strategy, writer, evaluator, summary, None, lines.append
    )
    arrays = P.to_record({k: v for k, v in spec.build_model().state_dict().items()})

    def trained_round(rnd: int, ok: int, sampled: int) -> None:
        ledger.train[rnd] = TrainOutcome(rnd, sampled, ok, sampled - ok, ok / sampled >= 0.5)
        recorder(rnd, arrays)

    recorder(0, arrays)
    assert store.read_release() is None  # the untrained model is never released
    trained_round(1, 2, 2)
    assert store.read_release()["round"] == 1
    store.promote("rec", 0)  # an operator pins round 0
    trained_round(2, 2, 2)  # best so far, but the pointer is pinned
    assert (store.read_release()["round"], store.read_release()["pinned"]) == (0, True)
    store.unpin()
    trained_round(3, 2, 2)
    assert store.read_release()["round"] == 3
    trained_round(4, 1, 4)  # best top-1 ever, but only 25% of the clients succeeded
    assert store.read_release()["round"] == 3
    assert summary.released == [1, 3] and summary.rejected == [4]
    assert "NO RELEASE: 1/4 clients succeeded (< 50%)" in lines[-1]
    assert store.list_rounds("rec") == [0, 1, 2, 3, 4]  # a checkpoint every round regardless


def test_evaluation_metric_chooses_the_release_metric(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache, "run_id=mrr", "evaluation.metric=mrr")))
    store = make_store(cfg.checkpoints)
    ledger = RoundLedger()
    # top-1 improves every round, MRR only in round 1: the release follows MRR.
    scores = iter([(0.1, 0.1), (0.2, 0.6), (0.3, 0.5), (0.4, 0.4)])

    def evaluator(arrays):
        top1, mrr = next(scores)
        return {"top1": top1, "top4": 0.9, "mrr": mrr, "loss": 1.0, "n": 10}

    summary = RunSummary("mrr", store.describe(), tmp_path / "out", cfg.evaluation.metric)
    recorder = RoundRecorder(
        cfg, cfg.decoder, ledger, build_strategy(cfg, ledger), ResilientCheckpointWriter(store),
        evaluator, summary, None, lambda line: None,
    )  # fmt: skip
    arrays = P.to_record({k: v for k, v in cfg.decoder.build_model().state_dict().items()})
    recorder(0, arrays)
    for rnd in (1, 2, 3):
        ledger.train[rnd] = TrainOutcome(rnd, 2, 2, 0, True)
        recorder(rnd, arrays)
    assert store.read_release()["round"] == 1 and summary.released == [1]
    assert summary.best_round() == 1


def test_progress_line_and_plot(tmp_path):
    records = [
        {"round": 0, "seconds": 1.0, "central": {"top1": 0.01, "loss": 20.0}, "note": "initial model"},
        {"round": 1, "seconds": 12.34, "clients": {"ok": 9, "failed": 1},
         "central": {"top1": 0.412, "top4": 0.65, "mrr": 0.45, "loss": 3.0},
         "federated": {"eval-top1": 0.4, "eval-loss": 3.1}, "train": {"train-loss": 3.3},
         "released": True},
    ]  # fmt: skip
    line = progress_line(records[1], 3)
    assert line == "round 1/3 | clients ok 9 failed 1 | top1 0.412 top4 0.650 | 12.3 s | released"
    assert progress_line(records[0]).startswith(
        "round 0 | clients ok 0 failed 0 | top1 0.010 top4 -"
    )
    png = plot_metrics(records, tmp_path / "p" / "plot.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_main_job_exits_nonzero_when_the_run_fails(tmp_path):
    """A failed Flower run exits 0 from `flwr run`; the main job must not."""
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "SWIPEFL_LOG_DIR": str(tmp_path / "logs"),
        "SUPERNODES": "2",
    }
    out = subprocess.run(
        [str(ROOT / "scripts" / "run-federation"), "strategy=no-such-strategy"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "status: finished:failed" in out.stdout
    assert "no-such-strategy" in out.stderr  # the reason, from the run's status details
    assert "stopped SuperLink" in out.stdout


@pytest.mark.slow
def test_a_seeded_run_reproduces_its_models_bit_for_bit(tmp_path, synth_cache):
    """The main job's setup (from the base, 10 word-level nodes) run twice gives the same
    tensors every round: replies arrive in whatever order the simulation finishes them, and
    the average must not depend on it (fl_app/federation/replies.py)."""
    digests = []
    for name in ("first", "second"):
        cfg = finalize(
            compose(
                [
                    f"paths.root={tmp_path / name}",
                    f"data.cache_dir={synth_cache}",
                    "evaluation.source=synthetic",  # what is measured does not change training
                    "federation.num_rounds=2",
                ]
            )
        )
        summary = run_experiment(cfg)
        store = make_store(cfg.checkpoints)
        digests.append(
            [store.load(summary.run_id, r, extras=False).manifest["sha256"] for r in summary.rounds]
        )
    assert len(digests[0]) == 3 and len(set(digests[0])) == 3  # round 0 (the base), 1 and 2
    assert digests[0] == digests[1]
