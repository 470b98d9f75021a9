"""A release must beat the release it replaces, measured on the run's own evaluator; the run
can measure itself on real public-val users (evaluation.source=real) and report dev users."""

from __future__ import annotations

import pytest

from fl_app.checkpoints import ResilientCheckpointWriter
from fl_app.datasets.real import REAL_SWIPES_ENV, RealSwipesMissing
from fl_app.decoder.spec import model_arrays
from fl_app.federation import protocol as P
from fl_app.federation.config import compose, finalize
from fl_app.federation.evaluation import (
    Evaluator,
    evaluation_swipes,
    incumbent_measure,
    measure_incumbent,
)
from fl_app.federation.experiment import run_experiment
from fl_app.federation.metrics import read_lines
from fl_app.federation.run_config import ConfigError
from fl_app.federation.server import RoundRecorder, RunSummary, make_store
from fl_app.federation.strategies import RoundLedger, TrainOutcome, build_strategy


def smoke(root, cache, *extra):
    return ["experiment=smoke", f"paths.root={root}", f"data.cache_dir={cache}", *extra]


def test_a_round_that_does_not_beat_the_current_release_is_not_released(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache, "run_id=newer")))
    spec = cfg.decoder
    store = make_store(cfg.checkpoints)
    # The release devices serve now: another run's checkpoint, measured for real.
    older = spec.build_model(seed=7)
    store.save("older", 3, model_arrays(older), {"decoder": spec.to_manifest()})
    store.promote("older", 3)
    store.unpin()
    swipes = evaluation_swipes(cfg, spec)
    incumbent = measure_incumbent(store, swipes, spec.language)
    assert incumbent.label == "release older/round 3"
    assert incumbent.metrics == Evaluator(spec, swipes)(model_arrays(older))
    floor = incumbent.floor("top1")
    assert floor is not None

    # This run's rounds, scored around the incumbent: better than its own round 0 is not enough.
    scores = iter([floor - 0.05, floor - 0.01, floor + 0.01])
    ledger = RoundLedger()
    summary = RunSummary("newer", store.describe(), tmp_path / "out", "top1")
    recorder = RoundRecorder(
        cfg, spec, ledger, build_strategy(cfg, ledger), ResilientCheckpointWriter(store),
        lambda arrays: {"top1": next(scores), "top4": 0.9, "mrr": 0.5, "loss": 1.0, "n": 10},
        summary, None, lambda line: None,
        incumbent=lambda: measure_incumbent(store, swipes, spec.language),
    )  # fmt: skip
    arrays = P.to_record(model_arrays(spec.build_model()))
    recorder(0, arrays)
    ledger.train[1] = TrainOutcome(1, 2, 2, 0, True)
    recorder(1, arrays)  # beats round 0, not the release
    assert store.read_release()["run_id"] == "older" and summary.released == []
    ledger.train[2] = TrainOutcome(2, 2, 2, 0, True)
    recorder(2, arrays)
    assert (store.read_release()["run_id"], store.read_release()["round"]) == ("newer", 2)
    assert summary.released == [2]


def test_an_unmeasurable_release_blocks_automatic_releases(tmp_path, synth_cache):
    cfg = finalize(compose(smoke(tmp_path, synth_cache, "run_id=blind")))
    store = make_store(cfg.checkpoints)
    store.save("older", 1, model_arrays(cfg.decoder.build_model()), {"decoder": {"bad": 1}})
    store.promote("older", 1)
    store.unpin()
    incumbent = measure_incumbent(store, evaluation_swipes(cfg, cfg.decoder), "en")
    assert not incumbent.measurable and incumbent.floor("top1") == float("inf")


def test_must_beat_chooses_whether_the_shipped_base_counts(tmp_path, synth_cache):
    from fl_app.base import has_base

    assert has_base("en")
    served = finalize(compose(smoke(tmp_path, synth_cache, "evaluation.must_beat=served")))
    spec = served.decoder
    store = make_store(served.checkpoints)
    swipes = evaluation_swipes(served, spec)[:20]
    base = incumbent_measure(served, store, swipes, "en")()
    assert base.label == "shipped base" and base.floor("top1") is not None
    release_only = finalize(compose(smoke(tmp_path, synth_cache)))  # smoke: must_beat=release
    assert release_only.evaluation.must_beat == "release"
    assert incumbent_measure(release_only, store, swipes, "en")().floor("top1") is None
    # ... while an earlier release still counts.
    store.save("older", 1, model_arrays(spec.build_model(seed=3)), {"decoder": spec.to_manifest()})
    store.promote("older", 1)
    assert incumbent_measure(release_only, store, swipes, "en")().label == "release older/round 1"
    nothing = finalize(compose(smoke(tmp_path, synth_cache, "evaluation.must_beat=none")))
    assert incumbent_measure(nothing, store, swipes, "en")().floor("top1") is None
    with pytest.raises(ConfigError, match="must_beat"):
        finalize(compose(smoke(tmp_path, synth_cache, "evaluation.must_beat=always")))


@pytest.mark.slow
def test_a_run_measured_on_real_public_val_users_reports_dev(
    tmp_path, synth_cache, real_swipes_dir
):
    cfg = finalize(
        compose(
            smoke(
                tmp_path, synth_cache, "evaluation.source=real", "evaluation.real_swipes=120",
                "federation.num_rounds=1", "simulation.num_supernodes=3",
            )
        )
    )  # fmt: skip
    summary = run_experiment(cfg)
    records = read_lines(summary.metrics_path)
    rounds = [r for r in records if "round" in r]
    assert [r["central"]["n"] for r in rounds] == [120, 120]
    dev = [r for r in records if r.get("report") == "dev"]
    assert (
        len(dev) == 1
        and dev[0]["n"] > 5000
        and summary.dev == {k: v for k, v in dev[0].items() if k not in ("run_id", "report")}
    )


@pytest.mark.parametrize(
    ("overrides", "source"),
    [
        ([], "real"),  # the main job: the base fine-tuned on synthetic users, judged on real ones
        (["init=random"], "synthetic"),
        (["experiment=smoke"], "synthetic"),
        (["evaluation.source=synthetic"], "synthetic"),  # an explicit choice wins
        (["init=random", "evaluation.source=real"], "real"),
    ],
)
def test_releases_from_the_base_are_chosen_on_real_people_by_default(tmp_path, overrides, source):
    """Synthetic held-out users rank the base's fine-tuned rounds unlike real users do
    (bench/results/main-job.md), so a run from the base measures itself on real public-val
    users unless told otherwise; the manifests' config says which source ran."""
    cfg = finalize(compose([f"paths.root={tmp_path}", *overrides]))
    assert cfg.evaluation.source == source
    assert cfg.resolved["evaluation"]["source"] == source


def test_a_run_from_the_base_without_the_real_swipes_says_how_to_run_without_them(
    tmp_path, monkeypatch
):
    """The default source needs the real swipes; a newcomer without them is told the one
    override that runs anyway, and that override does run on synthetic users."""
    monkeypatch.setenv(REAL_SWIPES_ENV, str(tmp_path / "nowhere"))
    cfg = finalize(compose([f"paths.root={tmp_path}"]))
    with pytest.raises(RealSwipesMissing, match=r"evaluation\.source=synthetic .*needs no real"):
        evaluation_swipes(cfg, cfg.decoder)
    cfg = finalize(compose([f"paths.root={tmp_path}", "evaluation.source=synthetic"]))
    assert len(evaluation_swipes(cfg, cfg.decoder)) == cfg.evaluation.users * (
        cfg.evaluation.swipes_per_user
    )
