"""Frames laid over a trace in time or along its path (fl_app/decoder/features.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fl_app.decoder.augment import AugmentConfig
from fl_app.decoder.features import FeatureSpec, frame_count, resampled_key_units, swipe_features
from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.training import AugmentedSwipes, SwipeDataset, ViewMix
from fl_app.federation.config import compose, finalize
from fl_app.federation.run_config import ConfigError

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
KEYBOARD = named_keyboard("qwerty-en", 400, 240)


def _trace(word: str, ms_per_segment: list[float], points_per_segment: int = 12) -> np.ndarray:
    """(n, 3) points along the keys of `word`, each segment drawn in the given time."""
    centres = KEYBOARD.word_centres(word)
    points, t0 = [centres[:1]], 0.0
    times = [np.zeros(1)]
    for (a, b), ms in zip(zip(centres[:-1], centres[1:]), ms_per_segment, strict=True):
        u = np.linspace(0.0, 1.0, points_per_segment + 1)[1:, None]
        points.append(a + u * (b - a))
        times.append(t0 + u[:, 0] * ms)
        t0 += ms
    return np.column_stack([np.concatenate(points), np.concatenate(times)])


def test_along_the_path_a_slow_and_a_fast_hand_give_the_same_frames():
    """The same shape drawn at an even pace and with a slow second stroke: resampled along the
    path the frames are the same; resampled in time the slow stroke takes most of them."""
    even = _trace("help", [200, 200, 200])
    slow_middle = _trace("help", [150, 900, 150])
    path = FeatureSpec(alphabet=ALPHABET, resample="path")
    time = FeatureSpec(alphabet=ALPHABET, resample="time")
    np.testing.assert_allclose(
        swipe_features(even, KEYBOARD, path), swipe_features(slow_middle, KEYBOARD, path), atol=1e-5
    )
    assert (
        swipe_features(even, KEYBOARD, time).shape
        != swipe_features(slow_middle, KEYBOARD, time).shape
    )


def test_path_frames_are_a_step_apart_until_the_path_needs_more_than_max_frames():
    spec = FeatureSpec(alphabet=ALPHABET, resample="path")
    short = resampled_key_units(_trace("rt", [100]), KEYBOARD, spec)  # one key width
    assert len(short) == spec.min_frames  # too short for its own step: spread over the minimum
    medium = resampled_key_units(_trace("qp", [300]), KEYBOARD, spec)  # nine key widths
    steps = np.linalg.norm(np.diff(medium, axis=0), axis=1)
    np.testing.assert_allclose(steps, spec.path_step_ku, rtol=1e-3)
    long = resampled_key_units(_trace("qpqpq", [300] * 4), KEYBOARD, spec)  # 36 key widths
    assert len(long) == spec.max_frames
    chords = np.linalg.norm(np.diff(long, axis=0), axis=1)  # shorter only across the 3 turns
    assert np.sum(~np.isclose(chords, 36 / 95, rtol=1e-3)) <= 3


def test_a_trace_that_never_moves_still_gets_frames():
    still = np.array([[100.0, 100.0, 0.0], [100.0, 100.0, 40.0], [100.0, 100.0, 80.0]])
    feats = swipe_features(still, KEYBOARD, FeatureSpec(alphabet=ALPHABET, resample="path"))
    assert len(feats) == FeatureSpec(alphabet=ALPHABET).min_frames and np.isfinite(feats).all()


@pytest.mark.parametrize("resample", ["time", "path"])
def test_frame_count_is_what_swipe_features_makes(resample):
    """Training buckets swipes by `frame_count`; it must agree with the features it batches."""
    spec = FeatureSpec(alphabet=ALPHABET, resample=resample)
    rng = np.random.default_rng(0)
    for _ in range(50):
        word = "".join(rng.choice(list(ALPHABET), size=int(rng.integers(2, 12))))
        trace = _trace(word, list(rng.uniform(20, 900, size=len(word) - 1)))
        assert frame_count(trace, KEYBOARD, spec) == len(swipe_features(trace, KEYBOARD, spec))


def test_a_federation_config_chooses_the_resampling_and_refuses_an_unknown_one(tmp_path):
    root = f"paths.root={tmp_path}"
    run = finalize(compose(["init=random", "model=small", "model.resample=path", root]))
    assert run.decoder.features.resample == "path"
    assert finalize(compose(["init=random", "model=small", root])).decoder.resample == "time"
    with pytest.raises(ConfigError, match="resample"):
        finalize(compose(["init=random", "model=small", "model.resample=arc", root]))


def test_a_run_from_a_checkpoint_with_frames_along_the_path_keeps_them(tmp_path):
    """`init=base` takes the whole decoder spec from the checkpoint it starts from: a model
    trained on frames along the path must not be fine-tuned on frames in time."""
    from fl_app.checkpoints.format import write_checkpoint_dir
    from fl_app.decoder.spec import DecoderSpec, model_arrays

    spec = DecoderSpec(lexicon_size=1000, conv_channels=8, hidden=8, gru_layers=1, resample="path")
    tensors = model_arrays(spec.build_model(device=torch.device("cpu")))
    write_checkpoint_dir(tmp_path / "ck", tensors, {"decoder": spec.to_manifest()})
    run = finalize(compose(["init=base", f"init_from={tmp_path / 'ck'}", f"paths.root={tmp_path}"]))
    assert run.decoder == spec and run.decoder.features.resample == "path"


def test_a_view_mix_shows_the_other_layout_in_its_share():
    time, path = FeatureSpec(alphabet=ALPHABET), FeatureSpec(alphabet=ALPHABET, resample="path")
    assert {ViewMix(time, 0.0).pick().resample for _ in range(50)} == {"time"}
    assert {ViewMix(time, 1.0).pick().resample for _ in range(50)} == {"path"}
    assert {ViewMix(path, 1.0).pick().resample for _ in range(50)} == {"time"}
    mix = ViewMix(time, 0.3, seed=2)
    share = np.mean([mix.pick().resample == "path" for _ in range(4000)])
    assert 0.27 < share < 0.33
    with pytest.raises(ValueError, match="other_view_share"):
        ViewMix(time, 1.5)


def test_training_data_lays_each_example_out_as_the_view_mix_picks():
    """A slow trace takes the 96-frame cap in time and far fewer frames along its path: the
    view each training example was given shows in its frames."""
    slow = Swipe(_trace("help", [900, 900, 900]), KEYBOARD, "help")
    time, path = FeatureSpec(alphabet=ALPHABET), FeatureSpec(alphabet=ALPHABET, resample="path")
    in_time = swipe_features(slow.points, KEYBOARD, time)
    along_path = swipe_features(slow.points, KEYBOARD, path)
    assert len(in_time) == time.max_frames and len(along_path) < 70

    as_is = SwipeDataset.from_swipes([slow] * 3, time)
    all_path = SwipeDataset.from_swipes([slow] * 3, time, ViewMix(time, 1.0))
    for plain, other in zip(as_is.features, all_path.features, strict=True):
        np.testing.assert_array_equal(plain, in_time)
        np.testing.assert_array_equal(other, along_path)

    augmented = AugmentedSwipes([slow], time, AugmentConfig(), seed=0, views=ViewMix(time, 0.5))
    lengths = [len(augmented.examples([0])[0][0]) for _ in range(40)]
    assert lengths.count(time.max_frames) in range(8, 33)  # both views, about half each
    assert max(n for n in lengths if n != time.max_frames) < 70


def test_a_decoder_reads_the_same_model_through_the_other_view(small_trained, small_lexicon):
    spec, model, _, test = small_trained
    decoder = spec.build_decoder(model, small_lexicon)
    path = replace(decoder.spec, resample="path")
    second = decoder.with_features(path)
    built = replace(spec, resample="path").build_decoder(model, small_lexicon)
    traces = [(s.points, s.keyboard) for s in test[:6]]
    for ours, theirs, first in zip(
        second.frame_log_probs(traces),
        built.frame_log_probs(traces),
        decoder.frame_log_probs(traces),
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs)
        assert ours.shape != first.shape or not torch.equal(ours, first)
    assert decoder.spec.resample == "time"  # the first view is untouched
    with pytest.raises(ValueError, match="alphabet"):
        decoder.with_features(replace(path, alphabet="abc"))


def test_the_recipe_refuses_a_view_share_outside_0_to_1_before_making_data():
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import run

    cfg = PretrainConfig()
    cfg.data.other_view_share = 1.5
    cfg.train.threads = 0  # leave this process's torch threads alone
    cfg.data.real_parts = ["no-such-part"]  # reached only if the share passed
    with pytest.raises(ValueError, match="other_view_share must lie in"):
        run(cfg, log=lambda line: None)
