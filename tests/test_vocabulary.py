"""Synthetic users who also swipe the words real people were asked for (data.vocabulary_from)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from fl_app.decoder.lexicon import load_lexicon
from fl_app.synthetic.users import iter_users, make_user, with_vocabulary

PROMPTS = {"im": 30, "youre": 10, "gjensidige": 5, "a": 100, "straße": 50}


def test_users_swipe_the_vocabulary_in_its_share_and_are_otherwise_unchanged():
    lexicon = load_lexicon("en", 2000)
    plain = [s for u in iter_users(4, 5, lexicon) for s in u.swipes(50)]
    unused = [s for u in iter_users(4, 5, lexicon, vocabulary=PROMPTS) for s in u.swipes(50)]
    # share 0 leaves every swipe as it was, bit for bit
    assert all(
        a.word == b.word and np.array_equal(a.points, b.points)
        for a, b in zip(plain, unused, strict=True)
    )
    mixed = [
        s
        for u in iter_users(4, 5, lexicon, vocabulary=PROMPTS, vocabulary_share=0.5)
        for s in u.swipes(400)
    ]
    words = collections.Counter(s.word for s in mixed)
    share = sum(words[w] for w in ("im", "youre", "gjensidige")) / len(mixed)
    assert share == pytest.approx(0.5, abs=0.06)
    # in proportion to how often each was asked for; a word outside the lexicon too
    assert words["im"] > 2 * words["youre"] > 0 and words["gjensidige"] > 0
    assert "gjensidige" not in lexicon
    # one letter, or a letter the keyboard lacks: never swiped
    assert words["a"] == 0 and words["straße"] == 0


def test_a_user_keeps_its_style_keyboard_and_own_words():
    lexicon = load_lexicon("en", 2000)
    user = make_user(3, lexicon)
    mixed = with_vocabulary(user, PROMPTS, 0.25)
    assert mixed.style == user.style and mixed.keyboard is user.keyboard
    assert mixed.words[: len(user.words)] == user.words
    assert mixed.weights.sum() == pytest.approx(1.0)
    own = [i for i, w in enumerate(user.words) if w not in PROMPTS]
    assert np.allclose(mixed.weights[own], 0.75 * user.weights[own])
    with pytest.raises(ValueError, match="no word"):
        with_vocabulary(user, {"a": 3, "ß": 1}, 0.5)
    with pytest.raises(ValueError, match="vocabulary_share"):
        next(iter_users(1, 5, lexicon, vocabulary=PROMPTS, vocabulary_share=1.5))


def test_the_recipe_takes_words_only_from_parts_it_may_learn_from(real_swipes_dir):
    from fl_app.pretrain.config import PretrainConfig
    from fl_app.pretrain.recipe import prompt_vocabulary, vocabulary_record

    cfg = PretrainConfig()
    assert prompt_vocabulary(cfg) is None and vocabulary_record(cfg, None) is None
    cfg.data.vocabulary_from = ["public-train", "public-val"]
    with pytest.raises(ValueError, match="public-val"):
        prompt_vocabulary(cfg)
    cfg.data.vocabulary_from = ["public-train"]
    vocabulary = prompt_vocabulary(cfg)
    record = vocabulary_record(cfg, vocabulary)
    assert record["swipes"] == sum(vocabulary.values()) > 14_000
    assert record["words"] == len(vocabulary) > 1_000 and len(record["sha256"]) == 64
    assert vocabulary["you"] > vocabulary["the"]  # the study's prompts, not text frequencies

    # and the recipe's synthetic users swipe them, in the share it sets
    from fl_app.pretrain.recipe import calibration, decoder_spec, synthetic_swipes

    cfg.data.synthetic_swipes_per_user = 20
    spec = decoder_spec(cfg)
    for share, all_prompted in ((1.0, True), (0.0, False)):
        cfg.data.vocabulary_share = share
        swipes = synthetic_swipes(cfg, spec, 3, 4, calibration(cfg))
        assert all(s.word in vocabulary for s in swipes) is all_prompted
