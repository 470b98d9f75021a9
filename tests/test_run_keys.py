"""Flower run-config keys (`num-server-rounds`, `strategy`, `fraction-train`, `local-epochs`,
`lr`): declared with sentinel defaults, mapped onto Hydra overrides, explicit key > `overrides`
> conf/. The slow tests submit `flwr run .` to a real simulation SuperLink."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from superlink_helpers import run_log, simulation_superlink, start_run, wait_for_run

from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.federation.config import compose, finalize, public_config, run_overrides
from fl_app.federation.run_config import ConfigError, FedAdamConfig, FedProxConfig
from fl_app.federation.run_keys import RUN_KEYS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def declared() -> dict:
    """What Flower hands the ServerApp when `--run-config` names no key: the pyproject defaults."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["flwr"]["app"]["config"]


def smoke(root: Path, cache: str, *extra: str) -> str:
    return " ".join(["experiment=smoke", f"paths.root={root}", f"data.cache_dir={cache}", *extra])


def test_declared_keys_are_the_mapped_ones_with_sentinel_defaults():
    config = declared()
    assert set(config) == {"overrides"} | {key.name for key in RUN_KEYS}
    # Every default means "take conf/": the defaults alone add no override.
    assert run_overrides(config) == []
    given = {**config, "overrides": "experiment=smoke 'paths.outputs=/a b' strategy=fedprox"}
    assert run_overrides(given) == ["experiment=smoke", "paths.outputs=/a b", "strategy=fedprox"]


def test_keys_map_onto_conf_and_win_over_overrides():
    overrides = "experiment=smoke federation.num_rounds=1 strategy=fedadam train.lr=0.1"
    plain = finalize(compose(run_overrides({**declared(), "overrides": overrides})))
    assert plain.federation.num_rounds == 1 and isinstance(plain.strategy, FedAdamConfig)
    assert plain.train.lr == 0.1 and plain.train.epochs == 3.0  # smoke's epochs
    assert plain.federation.fraction_train == 1.0  # conf/

    keys = {"num-server-rounds": 4, "strategy": "fedprox", "fraction-train": 0.5,
            "local-epochs": 1, "lr": 0.002}  # fmt: skip
    run = finalize(compose(run_overrides({**declared(), "overrides": overrides, **keys})))
    assert run.federation.num_rounds == 4
    assert isinstance(run.strategy, FedProxConfig) and run.strategy.mu == 0.01
    assert run.federation.fraction_train == 0.5
    assert run.train.epochs == 1 and run.train.lr == 0.002
    # Everything else is what `overrides` and conf/ gave.
    assert run.decoder == plain.decoder and run.data == plain.data


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("num-server-rounds", "2", "an integer"),
        ("num-server-rounds", 2.5, "an integer"),
        ("num-server-rounds", True, "an integer"),
        ("num-server-rounds", -1, "positive"),
        ("lr", "fast", "a number"),
        ("local-epochs", -0.5, "positive"),
        ("strategy", 3, "a string"),
        ("strategy", "fedprox strategy.mu=9", "conf/strategy/"),
    ],
)
def test_bad_key_values_are_refused_by_name(key, value, says):
    with pytest.raises(ConfigError, match=rf"run-config key {key}=.*{says}"):
        run_overrides({**declared(), key: value})


def test_unknown_strategy_and_out_of_range_fraction_are_refused():
    with pytest.raises(ConfigError, match="fedsgd"):
        compose(run_overrides({**declared(), "strategy": "fedsgd"}))
    cfg = compose(run_overrides({**declared(), "fraction-train": 1.5}))
    with pytest.raises(ConfigError, match="federation.fraction_train"):
        finalize(cfg)


# -- `flwr run .` against a real SuperLink ----------------------------------------------------


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    with simulation_superlink(tmp_path_factory.mktemp("superlink")) as env:
        yield env


def _run(superlink, run_config: str) -> None:
    run_id = start_run(superlink, run_config)
    run = wait_for_run(superlink, run_id)
    assert run["status"] == "finished:completed", (run, run_log(superlink, run_id)[-3000:])


def _manifests(root: Path, run_id: str) -> dict[int, dict]:
    store = CheckpointStore(LocalDirBackend(root / "outputs" / "checkpoints"))
    assert store.list_runs() == [run_id]
    return {rnd: store.load_manifest(run_id, rnd) for rnd in store.list_rounds(run_id)}


@pytest.mark.slow
def test_flwr_run_with_keys_records_their_rounds_and_strategy(superlink, tmp_path, synth_cache):
    # `overrides` says 1 round: the explicit key wins.
    overrides = smoke(tmp_path, synth_cache, "federation.num_rounds=1", "run_id=keys")
    _run(superlink, f"overrides='{overrides}' num-server-rounds=2 strategy=\"fedprox\"")
    manifests = _manifests(tmp_path, "keys")
    assert sorted(manifests) == [0, 1, 2]
    for manifest in manifests.values():
        assert manifest["strategy"] == "fedprox"
        assert manifest["config"]["strategy"]["name"] == "fedprox"
        assert manifest["config"]["federation"]["num_rounds"] == 2


@pytest.mark.slow
def test_flwr_run_without_keys_runs_overrides_and_conf_as_before(superlink, tmp_path, synth_cache):
    overrides = smoke(tmp_path, synth_cache, "federation.num_rounds=1", "run_id=plain")
    _run(superlink, f"overrides='{overrides}'")
    manifests = _manifests(tmp_path, "plain")
    assert sorted(manifests) == [0, 1]
    # The run's whole config is what `overrides` over conf/ composes, nothing added.
    expected = public_config(finalize(compose(overrides)))
    for manifest in manifests.values():
        assert manifest["strategy"] == "fedavg"
        assert manifest["config"] == expected
