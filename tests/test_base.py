"""The shipped base decoder: verified in the package, served by a sidecar with no release, the
ServerApp's default starting point (init=base) with its whole decoder spec."""

from __future__ import annotations

import hashlib

import pytest

from fl_app.base import base_dir, base_manifest, base_spec, has_base, read_base
from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.checkpoints.format import MODEL_FILE
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
        "evaluation.users=2",
        "evaluation.swipes_per_user=10",
    ]
    summary = run_experiment(finalize(compose(overrides)))
    store = CheckpointStore(LocalDirBackend(tmp_path / "outputs" / "checkpoints"))
    round0 = store.load_manifest(summary.run_id, 0)
    assert round0["sha256"] == base_manifest("en")["sha256"]  # the base's very tensors
    assert round0["decoder"] == base_manifest("en")["decoder"]
    assert store.load_manifest(summary.run_id, 1)["decoder"] == base_manifest("en")["decoder"]
