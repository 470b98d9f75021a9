"""conf/ composition (the one source of configuration) and the Hydra entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fl_app.federation.config import (
    ConfigError,
    compose,
    conf_dir,
    finalize,
    public_config,
    split_overrides,
)
from fl_app.federation.run_config import (
    FedAdamConfig,
    FedProxConfig,
    LocalCheckpoints,
    S3Checkpoints,
)

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_compose_to_a_valid_federation():
    cfg = finalize(compose())
    assert cfg.strategy.name == "fedavg" and isinstance(cfg.checkpoints.location, LocalCheckpoints)
    assert cfg.checkpoints.location.kind == "local" and cfg.checkpoints.max_wait_s == 10.0
    assert cfg.federation.min_success_share == 0.5
    assert cfg.evaluation.metric == "top1"
    assert cfg.checkpoints.location.root.is_absolute() and cfg.paths.outputs.is_absolute()
    assert cfg.data.cache_dir.is_absolute()
    assert conf_dir() == ROOT / "conf"


def test_overrides_change_the_run(tmp_path):
    cfg = finalize(
        compose(
            f"init=random strategy=fedprox strategy.mu=0.2 model.hidden=48 'paths.root={tmp_path}'"
        )
    )
    assert isinstance(cfg.strategy, FedProxConfig)
    assert cfg.strategy.name == "fedprox" and cfg.strategy.mu == 0.2
    assert cfg.decoder.hidden == 48
    assert cfg.checkpoints.location.root == tmp_path / "outputs" / "checkpoints"
    adam = compose(["strategy=fedadam", "experiment=smoke", "checkpoints=s3"])
    assert adam.strategy.eta == 0.01 and adam.data.lexicon_size == 1000
    assert adam.checkpoints.kind == "s3" and adam.checkpoints.max_wait_s == 10
    typed = finalize(adam)
    assert isinstance(typed.strategy, FedAdamConfig) and typed.strategy.eta == 0.01
    assert isinstance(typed.checkpoints.location, S3Checkpoints)
    assert typed.checkpoints.location.max_attempts == 4
    assert split_overrides("a=1 'b=x y'") == ["a=1", "b=x y"]


def test_typed_config_reads_without_casts_and_keeps_the_composed_values(tmp_path):
    cfg = finalize(compose(["train.epochs=1", "federation.num_rounds=4.0", "run_id=20250101"]))
    assert cfg.train.epochs == 1.0 and isinstance(cfg.train.epochs, float)
    assert cfg.federation.num_rounds == 4 and isinstance(cfg.federation.num_rounds, int)
    assert cfg.run_id == "20250101"
    # The manifests get the composed values as they were (an int stays an int).
    assert public_config(cfg)["train"]["epochs"] == 1
    assert isinstance(public_config(cfg)["train"]["epochs"], int)
    renamed = cfg.with_run_id("other-run")
    assert renamed.run_id == "other-run" and public_config(renamed)["run_id"] == "other-run"
    assert renamed.train == cfg.train and cfg.run_id == "20250101"


@pytest.mark.parametrize(
    "override, new",
    [
        ("store=s3", "checkpoints=s3"),
        ("store.kind=s3", "checkpoints.kind=s3"),
        ("store.prefix=tests/x", "checkpoints.prefix=tests/x"),
        ("store.root=/tmp/ckpt", "checkpoints.root=/tmp/ckpt"),
        ("+store.secret_key=x", "+checkpoints.secret_key=x"),
    ],
)
def test_the_old_store_group_is_refused_with_its_new_name(override, new):
    message = f"the config group `store` is now `checkpoints`: use {new}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose(["experiment=smoke", override])


def test_the_hydra_command_line_refuses_the_old_store_group():
    cmd = [sys.executable, "-m", "fl_app.federation.experiment", "store=s3"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "the config group `store` is now `checkpoints`: use checkpoints=s3" in out.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        ("strategy=nope", "strategy"),
        ("federation.min_success_share=1.5", "min_success_share"),
        ("train.lr=0", "train.lr"),
        ("train.lr_schedule=linear", "train.lr_schedule"),
        ("resume.round=3", "resume.round: needs resume.run_id"),
        ("run_id=../x", "run_id"),
        ("no_such_key=1", "cannot compose"),
        ("evaluation.metric=loss", "evaluation.metric"),
        ("strategy.name=nope", "strategy.name"),
        ("checkpoints.kind=ftp", "checkpoints.kind"),
        ("train.batch_size=2.5", "train.batch_size: expected an integer"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.word_weight=-1", "train.word_weight: non-negative"),
        ("train.word_candidates=1", "train.word_candidates: at least 2"),
    ],
)
def test_bad_config_is_refused_with_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        finalize(compose(overrides))


def test_secrets_never_enter_the_config(monkeypatch):
    monkeypatch.setenv("SWIPEFL_S3_SECRET_KEY", "super-secret-value-123")
    monkeypatch.setenv("SWIPEFL_S3_ACCESS_KEY", "access-key-value-456")
    cfg = finalize(compose("checkpoints=s3"))
    text = json.dumps(public_config(cfg))
    assert "super-secret-value-123" not in text and "access-key-value-456" not in text
    # Even a secret-looking key someone adds by hand is dropped from what manifests get.
    leaked = finalize(
        compose(["+checkpoints.secret_key=oops-oops", "+checkpoints.access_key=oops2"])
    )
    assert public_config(leaked)["checkpoints"]["secret_key"] == "<redacted>"
    assert "oops" not in json.dumps(public_config(leaked))


@pytest.mark.slow
def test_two_point_sweep_produces_two_runs(tmp_path, synth_cache):
    sweep = tmp_path / "multirun"
    cmd = [
        sys.executable, "-m", "fl_app.federation.experiment", "-m", "experiment=smoke",
        "strategy=fedavg,fedprox", "simulation.num_supernodes=2", "federation.num_rounds=1",
        "federation.fraction_evaluate=0", f"paths.root={tmp_path}", f"data.cache_dir={synth_cache}",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    run_ids = []
    for job in jobs:
        lines = [json.loads(x) for x in (job / "metrics.jsonl").read_text().splitlines()]
        assert [r["round"] for r in lines] == [0, 1]
        assert (job / "plot.png").stat().st_size > 1000
        run_ids.append(lines[0]["run_id"])
    assert len(set(run_ids)) == 2
    # Sweep runs checkpoint under their own prefix, never the main release pointer.
    checkpoints = tmp_path / "outputs" / "checkpoints"
    assert not (checkpoints / "releases").exists()
    manifests = sorted(checkpoints.glob("sweeps/*/runs/*/round-0001/manifest.json"))
    strategies = sorted(json.loads(m.read_text())["strategy"] for m in manifests)
    assert strategies == ["fedavg", "fedprox"]
