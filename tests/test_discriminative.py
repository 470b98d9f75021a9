"""Word-level discriminative fine-tuning (fl_app/decoder/discriminative.py) and the recipe's
stage that runs it (fl_app/pretrain/recipe.py)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from fl_app.base import base_dir
from fl_app.checkpoints.format import read_manifest_dir, write_checkpoint_dir
from fl_app.decoder.augment import AugmentConfig
from fl_app.decoder.discriminative import (
    DiscriminativeConfig,
    Teacher,
    candidate_scores,
    fine_tune,
    local_word_level_round,
    mine_choices,
    teacher_choice,
    word_level_losses,
)
from fl_app.decoder.features import encode_word, swipe_features
from fl_app.decoder.ranking import FusionWeights
from fl_app.decoder.spec import DecoderSpec, model_arrays
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


def test_the_teachers_choice_is_their_averaged_decision_each_through_its_own_view(mined):
    """Recomputed with the decoders' own CTC scoring: a teacher reading frames in time and one
    reading them along the path, their CTC log-likelihoods averaged, plus the fixed evidence."""
    decoder, _, choices = mined
    batch = choices[:6]
    along = decoder.with_features(replace(decoder.spec, resample="path"))
    teachers = [Teacher(d.model.eval(), d.spec) for d in (decoder, along)]
    q = teacher_choice(teachers, [c.swipe.points for c in batch], batch).numpy()
    for row, c in zip(q, batch):
        index = np.array([decoder.lexicon.index(w) for w in c.words])
        ctc = []
        for d in (decoder, along):
            f = swipe_features(c.swipe.points, c.swipe.keyboard, d.spec)
            ctc.append(d.ctc_scores(d.log_probs_of_features([f])[0], index))
        fused = np.mean(ctc, axis=0) + c.offsets
        expected = np.exp(fused - np.logaddexp.reduce(fused))
        np.testing.assert_allclose(row[: len(c.words)], expected, rtol=1e-3, atol=1e-6)
        assert row[len(c.words) :].sum() == 0  # padding of a swipe with fewer candidates


def test_a_student_learns_its_teachers_choice_not_only_the_truth(mined, small_trained):
    """The untrained twin as teacher: its choice among the candidates is not the truth's. With
    the whole target given to it, the student ends closer to that choice (cross-entropy against
    the teacher) and further from the truth than the same steps on the truth alone; a share
    outside [0, 1] is refused."""
    decoder, _, choices = mined
    _, _, untrained, _ = small_trained
    teacher = [Teacher(untrained, decoder.spec)]
    points = [c.swipe.points for c in choices]
    feats = [swipe_features(c.swipe.points, c.swipe.keyboard, decoder.spec) for c in choices]
    q = teacher_choice(teacher, points, choices)

    def against(model) -> tuple[float, float]:
        with torch.no_grad():
            logp = torch.log_softmax(candidate_scores(model.eval(), feats, choices)[0], dim=1)
        return (
            float(-torch.where(q > 0, q * logp, torch.zeros_like(q)).sum(1).mean()),
            float(-logp[:, 0].mean()),
        )

    after = {}
    for share in (0.0, 1.0):
        model = copy.deepcopy(decoder.model)
        config = DiscriminativeConfig(steps=40, batch_size=16, lr=2e-3, teacher_share=share)
        fine_tune(model, decoder.spec, [], choices, config, None, seed=0, teachers=teacher)
        after[share] = against(model)
    assert after[1.0][0] < after[0.0][0]  # nearer the teacher
    assert after[1.0][1] > after[0.0][1]  # further from the truth
    with pytest.raises(ValueError, match="teacher_share"):
        config = DiscriminativeConfig(steps=1, teacher_share=1.5)
        fine_tune(
            copy.deepcopy(decoder.model), decoder.spec, [], choices, config, None, teachers=teacher
        )


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
    cfg.discriminative.teachers = [str(base_dir())]  # another architecture: the base's
    cfg.evaluate_dev, cfg.eval_swipes = False, 60
    out = run(cfg, log=lambda _: None)
    record = out["manifest"]["train"]["word_level"]
    base = read_manifest_dir(base_dir())
    assert record["teachers"] == [
        {"dir": str(base_dir()), "sha256": base["sha256"], "resample": "time"}
    ]
    assert record["steps"] == 12
    assert record["offered"] == {"real": 14459, "synthetic": 30}
    assert 0 < record["mined"]["real"] <= 14459 and record["mined"]["synthetic"] <= 30
    assert np.isfinite(record["ctc_loss"]) and np.isfinite(record["word_loss"])
    assert out["manifest"]["recipe"]["config"]["discriminative"]["steps"] == 12


def test_the_recipe_loads_teachers_with_their_own_frames_and_refuses_another_lexicon(tmp_path):
    """A teacher reading frames along the path is read with those features; one that spells
    another lexicon is refused before any mining, naming it."""
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import decoder_spec, load_teachers

    spec = decoder_spec(PretrainConfig())
    small = dict(conv_channels=16, hidden=16, gru_layers=1)
    along = DecoderSpec(lexicon_size=spec.lexicon_size, resample="path", **small)
    other = DecoderSpec(lexicon_size=400, **small)
    for name, s in (("along", along), ("other", other)):
        model = s.build_model(seed=0, device=None)
        write_checkpoint_dir(tmp_path / name, model_arrays(model), {"decoder": s.to_manifest()})
    dc = DiscriminativeConfig(teachers=[str(tmp_path / "along")])
    (teacher,), (record,) = load_teachers(dc, spec)
    assert teacher.spec == along.features and teacher.spec.resample == "path"
    assert record["resample"] == "path" and not teacher.model.training
    with pytest.raises(ValueError, match="400"):
        load_teachers(replace(dc, teachers=[*dc.teachers, str(tmp_path / "other")]), spec)


@pytest.mark.parametrize(
    "teachers, share, refusal",
    [(["no-such-teacher"], 0.5, "no-such-teacher"), ([str(base_dir())], 1.5, "teacher_share")],
)
def test_the_recipe_refuses_a_bad_teacher_before_making_data(teachers, share, refusal):
    """A missing teacher or a share outside [0, 1] is refused at once, not after an hour of
    CTC training (the data it would read first names a part that does not exist)."""
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import run

    cfg = PretrainConfig()
    cfg.discriminative.teachers, cfg.discriminative.teacher_share = teachers, share
    cfg.train.threads = 0  # leave this process's torch threads alone
    cfg.data.real_parts = ["no-such-part"]  # reached only if the teachers passed
    with pytest.raises((ValueError, OSError), match=refusal):
        run(cfg, log=lambda line: None)


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
