"""The shipped base decoder: verified in the package, served by a sidecar with no release, the
ServerApp's default starting point (init=base) with its whole decoder spec."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from serve_helpers import SidecarProcess, publish, trace_for, wait_for

from fl_app.base import base_dir, base_manifest, base_spec, has_base, read_base
from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.checkpoints.format import MODEL_FILE, read_checkpoint_dir
from fl_app.federation.config import ConfigError, compose, finalize
from fl_app.federation.experiment import run_experiment


def test_the_shipped_manifest_matches_its_tensors():
    assert has_base("en")
    data = (base_dir("en") / MODEL_FILE).read_bytes()
    manifest = base_manifest("en")
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    tensors, _ = read_base("en")  # the tensor table and shapes verified too
    spec = base_spec("en")
    model = spec.build_model()
    assert set(tensors) == set(model.state_dict())
    # What a user of the package needs to know about it travels with it.
    assert "How We Swipe" in manifest["citation"] and "wordfreq" in manifest["licence_note"]
    assert manifest["recipe"]["command"] == "python -m fl_app.pretrain"
    assert manifest["data"]["real"]["parts"] == ["public-train"]
    assert {"public_val", "dev"} <= set(manifest["metrics"])


def test_a_checkpoint_folder_reads_as_a_working_decoder_model(tmp_path):
    """read_model_dir (benchmarks, the recipe's teachers) gives the folder's spec and tensors
    in an eval-mode model, and refuses a folder whose tensors are not the manifest's."""
    import shutil

    import numpy as np

    from fl_app.checkpoints import CheckpointCorrupt
    from fl_app.decoder.spec import model_arrays, read_model_dir

    spec, model, manifest = read_model_dir(base_dir("en"))
    assert spec == base_spec("en") and manifest == base_manifest("en")
    assert not model.training
    tensors, _ = read_base("en")
    loaded = model_arrays(model)
    assert all(np.array_equal(loaded[name], tensors[name]) for name in tensors)

    copy = tmp_path / "base"
    shutil.copytree(base_dir("en"), copy)
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor's bytes
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointCorrupt):
        read_model_dir(copy)


def test_the_committed_synthetic_only_twin_saw_no_real_trace():
    """bench/real_federation.py starts from it: the base's recipe and architecture without
    real traces, so what federating over real people adds is measured from zero real data."""
    twin = Path(__file__).resolve().parent.parent / "bench" / "models" / "synthetic-only"
    tensors, manifest = read_checkpoint_dir(twin)  # verifies the sha256 and the tensor table
    assert manifest["data"]["real"]["parts"] == [] and manifest["data"]["real"]["swipes"] == 0
    base = base_manifest("en")
    # Same architecture, lexicon and features; only the decoding weights were tuned per model.
    assert {k: v for k, v in manifest["decoder"].items() if k != "fusion"} == {
        k: v for k, v in base["decoder"].items() if k != "fusion"
    }
    assert manifest["recipe"]["config"]["train"] == base["recipe"]["config"]["train"]
    assert set(tensors) == set(read_base("en")[0])


def test_the_committed_recipe_is_the_one_that_made_the_base():
    """conf/pretrain.yaml, the typed defaults it is merged over and the shipped manifest's
    recorded recipe agree, so `python -m fl_app.pretrain` with or without the yaml rebuilds the
    base (a drifted dataclass default once said 16,000 CTC steps where the base took 10,000)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from fl_app.federation.config import conf_dir
    from fl_app.pretrain.config import PretrainConfig

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        committed = hydra_compose(config_name="pretrain")
    typed = OmegaConf.merge(OmegaConf.structured(PretrainConfig), committed)
    as_run = OmegaConf.to_container(typed)
    as_defaults = OmegaConf.to_container(OmegaConf.structured(PretrainConfig))
    as_shipped = dict(base_manifest("en")["recipe"]["config"])
    for config in (as_run, as_defaults, as_shipped):
        config.pop("out")  # where the checkpoint went, not how it was made
    assert as_defaults == as_run
    # Settings added since (FedProx's discriminative.mu) are absent from the base's record;
    # every setting it does record must be the recipe's.
    shipped, run = _flat(as_shipped), _flat(as_run)
    assert {key: run.get(key) for key in shipped} == shipped


def _flat(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_init_base_takes_the_whole_spec_and_refuses_conflicting_overrides(tmp_path):
    cfg = finalize(compose(["init=base", f"paths.root={tmp_path}"]))
    assert cfg.decoder == base_spec("en")  # architecture, lexicon, template and fusion
    assert cfg.init_sha256 == base_manifest("en")["sha256"]
    for override in ("model.hidden=64", "model=small", "data.lexicon_size=1000"):
        with pytest.raises(ConfigError, match="init=random"):
            compose(["init=base", override])


@pytest.mark.slow
def test_a_run_from_the_base_starts_from_its_tensors(tmp_path, synth_cache):
    overrides = [
        "init=base",
        f"paths.root={tmp_path}",
        f"data.cache_dir={synth_cache}",
        "simulation.num_supernodes=2",
        "federation.num_rounds=1",
        "data.swipes_per_user=40",
        "train.epochs=1",
        "evaluation.source=synthetic",  # this test checks tensors; real users cost a minute
        "evaluation.users=2",
        "evaluation.swipes_per_user=10",
    ]
    summary = run_experiment(finalize(compose(overrides)))
    store = CheckpointStore(LocalDirBackend(tmp_path / "outputs" / "checkpoints"))
    round0 = store.load_manifest(summary.run_id, 0)
    assert round0["sha256"] == base_manifest("en")["sha256"]  # the base's very tensors
    assert round0["decoder"] == base_manifest("en")["decoder"]
    assert store.load_manifest(summary.run_id, 1)["decoder"] == base_manifest("en")["decoder"]


@pytest.mark.parametrize("serve_base", ["true", "false"])
def test_a_sidecar_with_no_release_serves_the_shipped_base(tmp_path, serve_base):
    """A fresh device answers from its first swipe (the base), then moves to the first release;
    with SWIPEFL_SERVE_BASE=false it waits for a release (503 MODEL_NOT_LOADED)."""
    sidecar = SidecarProcess(tmp_path, serve_base=serve_base)
    body = {"points": trace_for("hello"), "keyboard": {"layout": "qwerty-en", "width": 375,
            "height": 217}, "k": 4}  # fmt: skip
    sidecar.start()
    try:
        with sidecar.client() as c:
            wait_for(lambda: c.get("/health").status_code == 200, 60)
            answer = c.post("/api/v1/predict", json=body)
            if serve_base == "false":
                assert answer.status_code == 503 and answer.json()["code"] == "MODEL_NOT_LOADED"
            else:
                assert answer.status_code == 200, answer.text
                version = answer.json()["model_version"]
                assert version["base"] is True and version["run_id"] == "base"
                assert version["sha256"] == base_manifest("en")["sha256"]
                assert "hello" in [c["word"] for c in answer.json()["candidates"]]
            publish(sidecar.checkpoints(), "run-a", 1)
            wait_for(
                lambda: c.get("/ready").json().get("model_version", {}).get("run_id") == "run-a",
                60,
            )
            version = c.post("/api/v1/predict", json=body).json()["model_version"]
            assert version["run_id"] == "run-a" and version["base"] is False
    finally:
        sidecar.stop()
