"""The shared training loop: learns, resumes from given weights, FedProx, progress, cancel."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from fl_app.decoder.spec import load_arrays, model_arrays
from fl_app.decoder.training import SwipeDataset, TrainConfig, check_ema, mean_loss, train
from fl_app.synthetic.centralized import user_swipes


@pytest.fixture(scope="module")
def data(small_trained, small_lexicon):
    spec = small_trained[0]
    return SwipeDataset.from_swipes(user_swipes(8, 8, seed=5, lexicon=small_lexicon), spec.features)


def test_short_training_beats_untrained_loss(small_trained, small_lexicon):
    spec, model, untrained, test = small_trained
    test_data = SwipeDataset.from_swipes(test, spec.features)
    assert mean_loss(model, test_data) < 0.5 * mean_loss(untrained, test_data)


def test_seeded_and_starts_from_given_weights(small_trained, data):
    spec, model, _, _ = small_trained
    runs = []
    for _ in range(2):
        m = spec.build_model(seed=1)
        load_arrays(m, model_arrays(model))
        train(m, data, TrainConfig(epochs=1, batch_size=16, seed=3))
        runs.append(model_arrays(m))
    for k in runs[0]:
        assert (runs[0][k] == runs[1][k]).all()
    # Starting from the trained weights, one epoch keeps a low loss (it did not restart).
    m = copy.deepcopy(model)
    train(m, data, TrainConfig(epochs=1, batch_size=16, lr=1e-4))
    assert mean_loss(m, data) < 0.6 * mean_loss(spec.build_model(seed=1), data)


def test_proximal_term_keeps_weights_close(small_trained, data):
    spec, model, _, _ = small_trained

    def drift(mu):
        m = copy.deepcopy(model)
        train(m, data, TrainConfig(epochs=2, batch_size=16, lr=5e-3, mu=mu, seed=0))
        return sum(((a - b) ** 2).sum() for a, b in zip(m.parameters(), model.parameters()))

    assert drift(mu=10.0) < 0.5 * drift(mu=0.0)


def test_progress_and_cancellation(small_trained, data):
    spec = small_trained[0]
    seen = []
    m = spec.build_model(seed=0)
    result = train(
        m,
        data,
        TrainConfig(epochs=5, batch_size=8),
        progress=seen.append,
        should_stop=lambda: len(seen) >= 3,
    )
    assert result.cancelled and result.steps == 3
    assert [p.step for p in seen] == [1, 2, 3] and seen[0].total_steps == 40


def test_fractional_epochs(small_trained, data):
    m = small_trained[0].build_model(seed=0)
    result = train(m, data, TrainConfig(epochs=0.5, batch_size=8))
    assert result.steps == 4 and result.examples == 32 and not result.cancelled
    assert torch.isfinite(torch.tensor(result.loss))


def test_time_budget_shortens_the_schedule(small_trained, data):
    m = small_trained[0].build_model(seed=0)
    seen = []
    result = train(
        m, data, TrainConfig(epochs=500, batch_size=8, max_seconds=2.0), progress=seen.append
    )
    assert result.steps < 500 * 8 and not result.cancelled
    assert seen[-1].total_steps == result.steps  # the plan was re-fitted and then completed
    assert result.seconds < 10


def test_a_non_finite_example_is_skipped_not_stepped_on(small_trained, data):
    """One example with infinite features (a row an older version stored over a keyboard whose
    keys were 1e-300 px wide) would make the loss NaN and, after one step, every weight NaN."""
    import numpy as np

    spec, model, _, _ = small_trained
    poisoned = np.full_like(data.features[0], np.inf)
    mixed = SwipeDataset([poisoned, *data.features], [data.targets[0], *data.targets])
    m = spec.build_model(seed=1)
    load_arrays(m, model_arrays(model))
    result = train(m, mixed, TrainConfig(epochs=1, batch_size=len(mixed), seed=0))
    assert result.skipped_examples == 1 and result.examples == len(data)
    assert all(np.isfinite(a).all() for a in model_arrays(m).values())
    assert np.isfinite(result.loss)
    # A batch of nothing but non-finite examples passes without an update.
    only = SwipeDataset([poisoned], [data.targets[0]])
    before = model_arrays(m)
    result = train(m, only, TrainConfig(epochs=3, batch_size=1, seed=0))
    assert result.steps == 3 and result.skipped_examples == 3 and result.examples == 0
    assert all(np.array_equal(before[k], v) for k, v in model_arrays(m).items())


def test_a_non_finite_step_never_reaches_the_weights(small_trained, data):
    """A learning rate of 1e30: the first step leaves huge but finite weights, whose forward pass
    overflows; the NaN gradients that follow are never applied."""
    import numpy as np

    spec, model, _, _ = small_trained
    m = spec.build_model(seed=1)
    load_arrays(m, model_arrays(model))
    result = train(m, data, TrainConfig(epochs=1, lr=1e30, batch_size=8, seed=0))
    assert result.skipped_steps >= 1 and result.skipped_steps < result.steps
    assert all(np.isfinite(a).all() for a in model_arrays(m).values())


def test_a_weight_average_ends_the_run_on_the_average_of_its_steps(small_trained, data):
    """With `ema` the run ends on the moving average of the weights after each step (from the
    start's), not on its last step; the steps themselves are the same as without it."""
    _, model, _, _ = small_trained
    config = TrainConfig(steps=6, batch_size=16, lr=1e-3, seed=3)
    plain, after_each = copy.deepcopy(model), []
    expected = model_arrays(plain)
    train(plain, data, config, progress=lambda p: after_each.append(model_arrays(plain)))
    averaged = copy.deepcopy(model)
    train(averaged, data, replace(config, ema=0.75))
    for weights in after_each:
        expected = {k: 0.75 * expected[k] + 0.25 * weights[k] for k in expected}
    got, last = model_arrays(averaged), model_arrays(plain)
    assert len(after_each) == 6
    assert all(np.allclose(got[k], expected[k], atol=1e-6) for k in expected)
    assert not all(np.allclose(got[k], last[k], atol=1e-4) for k in last)
    assert not averaged.training


def test_a_weight_average_outside_its_range_is_refused_before_any_data():
    """ema 1 would never leave the starting weights; the recipe refuses it at once, not after
    minutes of data generation (the data it would read first names a part that does not exist)."""
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import run

    for decay in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema"):
            check_ema(decay)
    cfg = PretrainConfig()
    cfg.train.ema, cfg.train.threads = 1.0, 0
    cfg.data.real_parts = ["no-such-part"]
    with pytest.raises(ValueError, match="ema"):
        run(cfg, log=lambda line: None)
