"""On-device personalization over real HTTP: job lifecycle, 409 while running, swap only when
it beats the release on the held-out slice, kept across restarts, replaced by a new release."""

from __future__ import annotations

import json

import pytest
from serve_helpers import (
    KEYBOARD,
    SidecarProcess,
    publish,
    synthetic_swipes,
    trace_for,
    wait_for,
)
from store_helpers import store_legacy_keyboard

from fl_app.swipes.store import SwipeStore

PREDICT = {"points": trace_for("hello"), "keyboard": KEYBOARD}
TOKEN = "personal-token-42"


def finished(c, job_id):
    job = c.get(f"/api/v1/train/{job_id}").json()
    return job if job["state"] in ("succeeded", "failed", "cancelled") else None


def progressed_and_succeeded(c, job_id):
    """Wait for a job that must report a step, then succeed; its result and last state."""
    assert wait_for(lambda: c.get(f"/api/v1/train/{job_id}").json()["step"] > 0, 60, 0.05)
    done = wait_for(lambda: finished(c, job_id), 120, 0.2)
    assert done["state"] == "succeeded", done
    return done["result"], done


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """A sidecar whose acceptance margin is negative: any fine-tuned model is accepted."""
    proc = SidecarProcess(
        tmp_path_factory.mktemp("personal"),
        token=TOKEN,
        heldout_fraction=0.25,
        train_epochs=1,
        train_batch_size=16,
        train_accept_margin=-10,
    )
    publish(proc.checkpoints(), "run-p", 1)
    proc.start(wait_ready=True)
    yield proc
    proc.stop()


def test_not_enough_swipes(device):
    with device.client() as c:
        body = c.post("/api/v1/train").json()
        assert body["code"] == "NOT_ENOUGH_SWIPES"
        assert c.post("/api/v1/train").status_code == 409


def test_train_job_swaps_in_personalized_model(device):
    with device.client() as c:
        swipes = synthetic_swipes(64, seed=11)
        assert c.post("/api/v1/swipes", json={"swipes": swipes[:32]}).status_code == 202
        assert c.post("/api/v1/swipes", json={"swipes": swipes[32:]}).status_code == 202
        release_sha = c.get("/api/v1/model").json()["version"]["sha256"]

        resp = c.post("/api/v1/train", json={"epochs": 40})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert job["state"] in ("queued", "running") and job["base"]["run_id"] == "run-p"
        busy = c.post("/api/v1/train")
        assert busy.status_code == 409 and busy.json()["code"] == "TRAINING_IN_PROGRESS"
        assert busy.json()["job_id"] == job["id"]
        result, done = progressed_and_succeeded(c, job["id"])
        assert result["accepted"] is True and result["outcome"] == "accepted"
        assert result["n_heldout"] >= 2 and result["n_train"] >= 2
        assert done["progress"] == 1.0 and done["total_steps"] > 0
        for key in ("top1", "top4", "mrr"):
            assert key in result["release_metrics"] and key in result["personalized_metrics"]

        resp = c.post("/api/v1/predict", json=PREDICT)
        assert resp.headers["X-Model-Version"] == "run-p/1+personal"
        version = resp.json()["model_version"]
        assert version["personalized"] is True and version["sha256"] == release_sha
        stats = c.get("/api/v1/stats").json()
        assert stats["personalization"]["id"] == job["id"]
        assert stats["model"]["metrics"]["personalized"]["heldout"]["n"] >= 2

    manifest = json.loads((device.device_dir / "personal" / "manifest.json").read_text())
    assert manifest["base"]["sha256"] == release_sha
    assert (device.device_dir / "personal" / "model.safetensors").exists()


def test_personalized_model_survives_restart(device):
    device.stop()
    device.start(wait_ready=True)
    with device.client() as c:
        resp = c.post("/api/v1/predict", json=PREDICT)
        assert resp.headers["X-Model-Version"] == "run-p/1+personal"
        # The store still names the same release: the watcher keeps the personalized model.
        assert c.post("/api/v1/model/reload").json()["result"] == "unchanged"
        assert c.get("/api/v1/model").json()["version"]["personalized"] is True


def test_new_release_replaces_personalized_model(device):
    publish(device.checkpoints(), "run-p", 2, seed=5)
    with device.client() as c:
        wait_for(lambda: c.get("/api/v1/model").json()["version"]["round"] == 2, 30)
        resp = c.post("/api/v1/predict", json=PREDICT)
        assert resp.headers["X-Model-Version"] == "run-p/2"
        assert resp.json()["model_version"]["personalized"] is False
    assert not (device.device_dir / "personal").exists()


def test_rejected_when_not_better(device):
    # Restart with an impossible margin: the fine-tuned model never beats the release.
    device.stop()
    device.settings["train_accept_margin"] = 10
    device.start(wait_ready=True)
    with device.client() as c:
        job = c.post("/api/v1/train", json={"epochs": 1}).json()
        done = wait_for(lambda: finished(c, job["id"]), 120, 0.2)
        assert done["state"] == "succeeded"
        assert done["result"]["accepted"] is False and done["result"]["outcome"] == "rejected"
        assert done["result"]["objective"] == "ctc"  # the default
        assert c.get("/api/v1/model").json()["version"]["personalized"] is False
    assert not (device.device_dir / "personal").exists()


def test_word_level_personalization(device):
    """With train_word_weight > 0 the job trains on the release decoder's close calls: it
    reports the swipes it mined (those whose word the shortlist holds) and a word-level loss,
    and the swapped-in model's manifest records the objective. A row an older version stored
    over a keyboard today's contract refuses (infinite features) is left out, not trained on:
    one such row in a sampled batch makes the word-level loss NaN."""
    device.stop()
    db = device.device_dir / "swipes.sqlite"
    with SwipeStore(db) as store:
        stored, legacy_id = store.count(), store.max_id()
    store_legacy_keyboard(db, legacy_id)
    device.settings.update(train_accept_margin=-10, train_word_weight=1.0)
    device.start(wait_ready=True)
    with device.client() as c:
        job = c.post("/api/v1/train", json={"epochs": 4}).json()
        result, done = progressed_and_succeeded(c, job["id"])
        assert result["objective"] == "word-level" and result["accepted"] is True
        assert result["n_train"] + result["n_heldout"] == stored - 1  # the legacy row left out
        assert 0 < result["mined"] <= result["n_train"]
        assert result["steps"] == done["total_steps"] > 0 and done["progress"] == 1.0
        assert result["train_word_loss"] >= 0 and result["train_loss"] >= 0
        assert c.get("/api/v1/model").json()["version"]["personalized"] is True
    manifest = json.loads((device.device_dir / "personal" / "manifest.json").read_text())
    assert manifest["train"]["objective"] == "word-level"
    assert manifest["train"]["word_weight"] == 1.0


@pytest.mark.slow
def test_personalization_beats_a_trained_release(sidecar_factory):
    """No margin tricks: a briefly trained release, one user's swipes, default settings."""
    import torch

    from fl_app.decoder.lexicon import load_lexicon
    from fl_app.decoder.spec import DecoderSpec, model_arrays
    from fl_app.decoder.training import SwipeDataset, TrainConfig, train
    from fl_app.synthetic.users import make_user

    torch.set_num_threads(1)
    spec = DecoderSpec(conv_channels=64, hidden=64, gru_layers=1, lexicon_size=2000)
    lexicon = load_lexicon("en", 2000)
    pool = [s for seed in range(12) for s in make_user(seed, lexicon).swipes(30)]
    model = spec.build_model(device=torch.device("cpu"))
    train(
        model,
        SwipeDataset.from_swipes(pool, spec.features),
        TrainConfig(epochs=5, lr=3e-3, batch_size=32),
    )
    proc = sidecar_factory(token=TOKEN, heldout_fraction=0.2)
    publish(proc.checkpoints(), "run-t", 6, spec=spec, tensors=model_arrays(model))
    proc.start(wait_ready=True)
    user = [s.to_dict() for s in make_user(777, lexicon).swipes(180)]
    with proc.client() as c:
        for i in range(0, len(user), 60):
            assert c.post("/api/v1/swipes", json={"swipes": user[i : i + 60]}).status_code == 202
        job = c.post("/api/v1/train").json()
        done = wait_for(lambda: finished(c, job["id"]), 240, 0.5)
        result = done["result"]
        assert done["state"] == "succeeded", done
        assert result["personalized_metrics"]["mrr"] > result["release_metrics"]["mrr"]
        assert result["accepted"] is True
        assert c.get("/api/v1/model").json()["version"]["personalized"] is True
