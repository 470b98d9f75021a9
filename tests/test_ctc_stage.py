"""The recipe's CTC stage kept and reused (fl_app/pretrain/ctc_stage.py): a run that starts
from a kept stage ends with the very weights of the run that made it, and a stage made with
other settings is refused before any data is made."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fl_app.base import base_dir
from fl_app.checkpoints.format import read_manifest_dir
from fl_app.pretrain.config import PretrainConfig
from fl_app.pretrain.ctc_stage import differing_settings, read_stage, write_stage
from fl_app.pretrain.recipe import decoder_spec, run


def miniature() -> PretrainConfig:
    """A recipe of seconds: few synthetic users and steps, no real training rows, a sample of
    public-val; the word-level stage mines fresh synthetic users."""
    cfg = PretrainConfig()
    cfg.model.conv_channels = cfg.model.hidden = 24
    cfg.model.gru_layers = 1
    cfg.data.synthetic_users, cfg.data.synthetic_swipes_per_user = 12, 8
    cfg.data.real_parts = []
    cfg.train.steps, cfg.train.threads = 20, 0  # 0: this process's threads, left alone
    cfg.decoding.coarse_keep, cfg.decoding.wide, cfg.decoding.shortlist = 200, 40, 12
    cfg.discriminative.steps, cfg.discriminative.synthetic_users = 6, 4
    cfg.evaluate_dev, cfg.eval_swipes = False, 40
    return cfg


@pytest.mark.slow
def test_a_run_from_a_kept_stage_ends_with_the_same_weights(tmp_path, real_swipes_dir):
    stage_dir = tmp_path / "stage"
    cfg = miniature()
    cfg.ctc_stage_out = str(stage_dir)
    made = run(cfg, log=lambda _: None)
    written = read_manifest_dir(stage_dir)
    assert written["kind"] == "ctc-stage" and written["stage"]["steps"] == 20

    again = miniature()
    again.ctc_stage_from = str(stage_dir)
    lines: list[str] = []
    reused = run(again, log=lines.append)
    assert any("no CTC training" in line for line in lines)
    assert not any(line.startswith("  step ") for line in lines)  # CTC steps are logged so
    assert made["tensors"].keys() == reused["tensors"].keys()
    for name, tensor in made["tensors"].items():
        assert np.array_equal(tensor, reused["tensors"][name]), name
    first, second = made["manifest"], reused["manifest"]
    assert second["metrics"] == first["metrics"]
    assert second["train"]["ctc_stage"] == {
        "dir": str(stage_dir),
        "sha256": written["sha256"],
        "threads": written["stage"]["threads"],
    }
    assert first["train"]["ctc_stage"]["sha256"] == written["sha256"]
    assert second["train"]["steps"] == 20 and second["data"]["synthetic"]["swipes"] == 96


def test_a_stage_made_with_other_settings_is_refused_before_any_data(tmp_path):
    """Refused at once, naming the setting; the word-level stage's settings and the thread
    count are not the stage's and may differ."""
    stage_dir = tmp_path / "stage"
    cfg = miniature()
    model = decoder_spec(cfg).build_model(seed=0, device=None)
    record = {"steps": 20, "final_loss": 1.0, "seconds": {}, "threads": 1, "synthetic_swipes": 96}
    write_stage(stage_dir, cfg, decoder_spec(cfg), model, record)

    other = miniature()
    other.ctc_stage_from = str(stage_dir)
    other.train.lr = 1e-3
    other.data.real_parts = ["no-such-part"]  # reached only if the stage were accepted
    lines: list[str] = []
    with pytest.raises(ValueError, match=r"train\.lr is 0\.002 there, 0\.001 here"):
        run(other, log=lines.append)
    assert lines == []

    fine = miniature()
    fine.train.threads = 2
    fine.discriminative.steps, fine.discriminative.candidates = 0, 8
    reused, recorded = read_stage(stage_dir, fine)
    assert recorded["steps"] == 20 and recorded["dir"] == str(stage_dir)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reused.state_dict()[name]), name

    shipped = miniature()
    shipped.ctc_stage_from = str(base_dir())
    with pytest.raises(ValueError, match="not a CTC stage"):
        run(shipped, log=lambda _: None)


def test_differing_settings_names_every_nested_difference_once():
    """What the refusal above and bench/paired_models.py's "changes" column are made of."""
    there = {"train": {"lr": 0.002, "steps": 10}, "seed": 0, "gone": 1}
    here = {"train": {"lr": 0.001, "steps": 10}, "seed": 0, "new": [1, 2]}
    assert differing_settings(there, here) == [
        ("gone", 1, None),
        ("new", None, [1, 2]),
        ("train.lr", 0.002, 0.001),
    ]
    assert differing_settings(here, json.loads(json.dumps(here))) == []
