"""Word-level discriminative fine-tuning (fl_app/decoder/discriminative.py) and the recipe's
stage that runs it (fl_app/pretrain/recipe.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fl_app.decoder.augment import AugmentConfig
from fl_app.decoder.discriminative import (
    DiscriminativeConfig,
    fine_tune,
    local_word_level_round,
    mine_choices,
    word_level_losses,
)
from fl_app.decoder.features import encode_word, swipe_features
from fl_app.decoder.ranking import FusionWeights
from fl_app.decoder.training import Progress, TrainConfig
from fl_app.synthetic.centralized import user_swipes

FUSION = FusionWeights(template=0.3, prior=0.5, shortlist=24, wide=24, length_bonus=1.0)


@pytest.fixture(scope="module")
def mined(small_trained, small_lexicon):
    """The small model's decoder, the swipes it was offered and the choices mined from them."""
    spec, model, _, _ = small_trained
    decoder = spec.build_decoder(model, small_lexicon)
    decoder.fusion = FUSION
    swipes = user_swipes(12, 20, seed=5, lexicon=small_lexicon)
    return decoder, swipes, mine_choices(decoder, swipes, candidates=6)


def test_mining_keeps_the_truth_first_and_its_best_ranked_rivals_with_their_evidence(mined):
    decoder, swipes, choices = mined
    lexicon, alphabet = decoder.lexicon, decoder.spec.alphabet
    assert 0 < len(choices) <= len(swipes)
    for choice in choices[:40]:
        scores = decoder.score_many([choice.swipe])[0]
        words = [lexicon.words[i] for i in scores.lexicon_index]
        fused = dict(zip(words, scores.combined(FUSION)))
        evidence = dict(zip(words, scores.fixed_evidence(FUSION)))
        named = choice.words
        assert named[0] == choice.swipe.word
        assert choice.swipe.word not in named[1:] and 1 < len(named) <= 6
        assert choice.targets == [encode_word(w, alphabet) for w in named]
        rivals = sorted((w for w in words if w != choice.swipe.word), key=lambda w: -fused[w])
        assert named[1:] == rivals[: len(named) - 1]  # the strongest competitors, in order
        np.testing.assert_allclose(choice.offsets, [evidence[w] for w in named], rtol=1e-5)


def test_a_swipe_whose_word_the_shortlist_misses_is_not_mined(mined):
    decoder, swipes, choices = mined
    kept = {id(c.swipe) for c in choices}
    for swipe, scores in zip(swipes, decoder.score_many(swipes)):
        listed = decoder.lexicon.index(swipe.word) in set(scores.lexicon_index.tolist())
        assert (id(swipe) in kept) == listed


def test_the_word_level_loss_is_the_truths_share_of_the_fused_scores(mined):
    """Recomputed from the decoder's own CTC scores: -log softmax over the candidates."""
    decoder, _, choices = mined
    model = decoder.model.eval()
    batch = choices[:8]
    feats = [swipe_features(c.swipe.points, c.swipe.keyboard, decoder.spec) for c in batch]
    with torch.no_grad():
        _, word = word_level_losses(model, feats, batch)
    expected = []
    for c, f in zip(batch, feats):
        logp = decoder.log_probs_of_features([f])[0]
        words = [decoder.lexicon.index(w) for w in c.words]
        fused = decoder.ctc_scores(logp, np.array(words)) + c.offsets
        expected.append(-(fused[0] - np.logaddexp.reduce(fused)))
    assert float(word) == pytest.approx(np.mean(expected), rel=1e-4)


def test_fine_tuning_on_the_word_level_beats_ctc_alone_at_its_own_objective(mined):
    """The same steps with the word-level term off (weight 0: the truth's CTC loss only) leave
    the truth a smaller share of its candidates than with it on."""
    decoder, _, choices = mined
    feats = [swipe_features(c.swipe.points, c.swipe.keyboard, decoder.spec) for c in choices]

    def word_loss(model) -> float:
        with torch.no_grad():
            return float(word_level_losses(model.eval(), feats, choices)[1])

    after = {}
    for weight in (0.0, 1.0):
        model = copy.deepcopy(decoder.model)
        config = DiscriminativeConfig(steps=40, batch_size=16, lr=2e-3, word_weight=weight)
        result = fine_tune(model, decoder.spec, [], choices, config, AugmentConfig(), seed=0)
        assert result["steps"] == 40 and np.isfinite(result["word_loss"])
        after[weight] = word_loss(model)
    before = word_loss(decoder.model)
    assert after[1.0] < before
    assert after[1.0] < 0.9 * after[0.0]


@pytest.mark.slow
def test_the_recipe_runs_its_word_level_stage_and_records_it(real_swipes_dir):
    """A miniature recipe (few synthetic users and steps, a sample of public-val) end to end:
    the stage mines real and synthetic swipes, fine-tunes, and its record reaches the manifest."""
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import run

    cfg = PretrainConfig()
    cfg.model.conv_channels = cfg.model.hidden = 32
    cfg.model.gru_layers = 1
    cfg.data.synthetic_users, cfg.data.synthetic_swipes_per_user = 20, 10
    cfg.data.real_parts = ["public-train"]
    cfg.train.steps, cfg.train.threads = 30, 0
    cfg.decoding.coarse_keep, cfg.decoding.wide, cfg.decoding.shortlist = 300, 60, 16
    cfg.discriminative.steps, cfg.discriminative.synthetic_users = 12, 3
    cfg.evaluate_dev, cfg.eval_swipes = False, 60
    out = run(cfg, log=lambda _: None)
    record = out["manifest"]["train"]["word_level"]
    assert record["steps"] == 12
    assert record["offered"] == {"real": 14459, "synthetic": 30}
    assert 0 < record["mined"]["real"] <= 14459 and record["mined"]["synthetic"] <= 30
    assert np.isfinite(record["ctc_loss"]) and np.isfinite(record["word_loss"])
    assert out["manifest"]["recipe"]["config"]["discriminative"]["steps"] == 12


def test_a_local_round_reports_progress_and_stops_when_asked(mined):
    """The sidecar's personalization drives the round like `train()`: Progress with the planned
    step count, and `should_stop` ends it early with the steps taken reported."""
    decoder, _, choices = mined
    swipes = [c.swipe for c in choices[:40]]
    seen = []

    def progress(p: Progress) -> None:
        seen.append((p.step, p.total_steps, p.loss))

    model = copy.deepcopy(decoder.model)
    train = TrainConfig(epochs=2, batch_size=8, lr=1e-3)
    stats = local_word_level_round(
        model, decoder, swipes, train, 1.0, 8, progress=progress, should_stop=lambda: len(seen) >= 3
    )
    assert stats["steps"] == 3 < stats["planned_steps"] == 2 * -(-stats["choices"] // 8)
    assert [s for s, _, _ in seen] == [1, 2, 3]
    assert {t for _, t, _ in seen} == {stats["planned_steps"]}
    assert all(np.isfinite(loss) for _, _, loss in seen)
