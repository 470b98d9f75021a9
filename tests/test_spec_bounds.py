"""A manifest's decoder section is bounded before anything is allocated: every size, the
parameter count (computed, not built), and the types; every reader of a manifest gets it."""

from __future__ import annotations

import copy
import resource

import pytest

from fl_app.decoder.model import count_parameters
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.spec_bounds import (
    MAX_CHECKPOINT_BYTES,
    MAX_PARAMETERS,
    DecoderSpecError,
    parameter_count,
)
from fl_app.federation.config import compose, finalize
from fl_app.federation.run_config import ConfigError

SPECS = [
    DecoderSpec(),  # the production size
    DecoderSpec(conv_channels=64, hidden=64, gru_layers=1),  # conf/model/small.yaml
    DecoderSpec(conv_channels=5, hidden=7, gru_layers=3, language="ru"),
]


@pytest.mark.parametrize("spec", SPECS, ids=["base", "small", "odd-ru"])
def test_parameter_count_is_the_built_models(spec):
    assert parameter_count(spec.model_config) == count_parameters(spec.build_model())


def test_the_shipped_recipe_is_within_bounds():
    shipped = DecoderSpec(lexicon_size=100_000)  # conf/pretrain.yaml: base model, full lexicon
    assert DecoderSpec.from_manifest(shipped.to_manifest()) == shipped
    assert parameter_count(shipped.model_config) * 4 < MAX_CHECKPOINT_BYTES


def _manifest(**changes) -> dict:
    section = copy.deepcopy(DecoderSpec().to_manifest())
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = section
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return section


DELETE = object()
BAD = [
    ({"model__hidden": 16384}, "model_too_large"),
    ({"model__conv_channels": 900}, "model_too_large"),
    ({"model__hidden": 0}, "spec_out_of_range"),
    ({"model__hidden": -4}, "spec_out_of_range"),
    ({"model__gru_layers": 10_000, "model__hidden": 1}, "spec_out_of_range"),
    ({"model__dropout": 1.0}, "spec_out_of_range"),
    ({"lexicon_size": 10**9}, "spec_out_of_range"),
    ({"lexicon_size": 0}, "spec_out_of_range"),
    ({"fusion__shortlist": 100_000}, "spec_out_of_range"),
    ({"fusion__shortlist": 0}, "spec_out_of_range"),
    ({"fusion__template": 1e9}, "spec_out_of_range"),
    ({"template__coarse_keep": 10**7}, "spec_out_of_range"),
    ({"template__coarse_keep": 0}, "spec_out_of_range"),
    ({"template__sigma_shape": 0.0}, "spec_out_of_range"),
    ({"template__start_radius": 1e6}, "spec_out_of_range"),
    ({"template__prior_weight": -1.0}, "spec_out_of_range"),
    ({"model__hidden": "128"}, "spec_malformed"),
    ({"model__hidden": 128.0}, "spec_malformed"),
    ({"model__hidden": True}, "spec_malformed"),
    ({"model__hidden": None}, "spec_malformed"),
    ({"template__sigma_shape": float("nan")}, "spec_malformed"),
    ({"template__sigma_shape": "wide"}, "spec_malformed"),
    ({"template__bogus": 1}, "spec_malformed"),
    ({"template": [1, 2]}, "spec_malformed"),
    ({"model": DELETE}, "spec_malformed"),
    ({"model__n_features": 99}, "spec_malformed"),
    ({"model__n_classes": 99}, "spec_malformed"),
    ({"features__alphabet": "abc"}, "spec_malformed"),
    ({"features__frame_ms": 5.0}, "spec_malformed"),
    ({"features__resample": "arc"}, "spec_malformed"),
    ({"features__resample": None}, "spec_malformed"),
    ({"features__resample": "path"}, "spec_malformed"),  # version 1 readers lay frames in time
    ({"spec_version": True}, "spec_malformed"),
    ({"language": "xx"}, "spec_malformed"),
    ({"spec_version": 2}, "spec_malformed"),
]


@pytest.mark.parametrize(
    "changes, reason", BAD, ids=[",".join(f"{k}={v!r}"[:40] for k, v in c.items()) for c, _ in BAD]
)
def test_bad_sections_are_refused_with_a_reason(changes, reason):
    with pytest.raises(DecoderSpecError) as err:
        DecoderSpec.from_manifest(_manifest(**changes))
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)  # callers that caught ValueError still do


def test_the_parameter_bound_is_the_named_constant():
    # Widest single-layer model under the bound is accepted; one step wider is refused.
    def spec(hidden):
        return DecoderSpec(conv_channels=128, hidden=hidden, gru_layers=1)

    hidden = max(
        h for h in range(1, 1025) if parameter_count(spec(h).model_config) <= MAX_PARAMETERS
    )
    assert DecoderSpec.from_manifest(spec(hidden).to_manifest()).hidden == hidden
    with pytest.raises(DecoderSpecError, match="3,000,000"):
        DecoderSpec.from_manifest(spec(hidden + 1).to_manifest())


def test_a_huge_section_is_refused_without_allocating():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for hidden in (16384, 2**20, 2**40):
        with pytest.raises(DecoderSpecError) as err:
            DecoderSpec.from_manifest(_manifest(model__hidden=hidden))
        assert err.value.reason == "model_too_large"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50


def test_defaults_fill_template_and_fusion_fields_a_section_leaves_out():
    section = _manifest(template__coarse_keep=DELETE, fusion=DELETE)
    spec = DecoderSpec.from_manifest(section)
    assert spec.template.coarse_keep == 300 and spec.fusion.shortlist == 96


def test_the_resampling_travels_with_the_manifest_and_old_ones_resampled_in_time():
    spec = DecoderSpec(resample="path")
    assert spec.to_manifest()["spec_version"] == 2  # a reader of version 1 refuses it
    assert DecoderSpec.from_manifest(spec.to_manifest()).features.resample == "path"
    before = DecoderSpec().to_manifest()  # frames in time: the section every checkpoint had
    assert before["spec_version"] == 1 and set(before["features"]) == {"alphabet", "frame_ms"}
    assert DecoderSpec.from_manifest(before).resample == "time"
    with pytest.raises(DecoderSpecError, match="resample"):
        DecoderSpec(resample="arc").check()


def test_a_run_config_beyond_the_bound_is_refused_at_once():
    """The ServerApp's spec goes to every client as a manifest section: refuse it in the config,
    not on each client."""
    with pytest.raises(ConfigError, match="config model: .*parameters"):
        finalize(compose(["init=random", "model.hidden=1024"]))
    assert finalize(compose(["init=random", "model=small"])).decoder.hidden == 64


def test_the_cli_will_not_promote_what_sidecars_refuse(tmp_path, capsys):
    from fl_app.checkpoints import CheckpointStore, LocalDirBackend
    from fl_app.checkpoints.cli import main

    store = CheckpointStore(LocalDirBackend(tmp_path, fsync=False))
    small = DecoderSpec(conv_channels=8, hidden=8, gru_layers=1, lexicon_size=100)
    tensors = {k: v.numpy() for k, v in small.build_model().state_dict().items()}
    store.save("r", 1, tensors, {"decoder": small.to_manifest()})
    store.save("r", 2, tensors, {"decoder": _manifest(model__hidden=16384)})
    assert main(["--root", str(tmp_path), "promote", "r", "1"]) == 0
    assert main(["--root", str(tmp_path), "promote", "r", "2"]) == 2
    assert "model_too_large" in capsys.readouterr().err
    assert store.read_release()["round"] == 1  # the pointer did not move
    assert main(["--root", str(tmp_path), "show", "r", "2", "--verify"]) == 2
    assert main(["--root", str(tmp_path), "show", "r", "1", "--verify"]) == 0
