"""The shared training loop: learns, resumes from given weights, FedProx, progress, cancel."""

import copy

import pytest
import torch

from fl_app.decoder.spec import load_arrays, model_arrays
from fl_app.decoder.training import SwipeDataset, TrainConfig, mean_loss, train
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
