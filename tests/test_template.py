"""SHARK2-style templates: vectorised resampling, pruning and channel scores."""

import numpy as np

from fl_app.decoder.keyboard import keyboard_from_spec, named_keyboard
from fl_app.decoder.lexicon import Lexicon
from fl_app.decoder.template import (
    N_SAMPLES,
    TemplateDecoder,
    TemplateParams,
    build_templates,
    normalise_shape,
    resample_path,
    resample_paths,
)


def test_vectorised_resampling_matches_one_path_at_a_time():
    rng = np.random.default_rng(0)
    for length in (1, 2, 3, 9):
        paths = rng.normal(size=(20, length, 2))
        paths[0] = paths[0, :1]  # a degenerate path: all points equal
        expected = np.stack([resample_path(p) for p in paths])
        np.testing.assert_allclose(resample_paths(paths), expected, atol=1e-12)
    line = resample_path(np.array([[0.0, 0.0], [3.0, 0.0]]))
    np.testing.assert_allclose(np.diff(line[:, 0]), 3.0 / (N_SAMPLES - 1))


def test_templates_follow_the_keyboard_and_skip_untypable_words():
    lex = Lexicon(["we", "ew", "wq", "zz"], np.array([3.0, 2.0, 1.0, 1.0]))
    keys = [
        {"label": c, "x": x, "y": 0, "w": 50, "h": 40} for c, x in (("q", 0), ("w", 50), ("e", 100))
    ]
    kb = keyboard_from_spec({"width": 150, "height": 160, "keys": keys})
    tpl = build_templates(lex, kb)
    assert tpl.word_index.tolist() == [0, 1, 2]  # 'zz' cannot be typed here
    np.testing.assert_allclose(
        tpl.key_centres[tpl.start_key[0]], kb.to_key_units(np.array([75.0, 20.0]))
    )
    np.testing.assert_allclose(
        tpl.key_centres[tpl.end_key[0]], kb.to_key_units(np.array([125.0, 20.0]))
    )


def test_coarse_pass_keeps_the_nearest_words_and_their_full_scores():
    kb = named_keyboard("qwerty-en", 375, 217)
    words = ["hello", "help", "world", "word", "would", "with", "what", "when"]
    lex = Lexicon(words, np.ones(len(words)))
    full = TemplateDecoder(lex, TemplateParams(coarse_keep=1000))
    coarse = TemplateDecoder(lex, TemplateParams(coarse_keep=3))
    centres = kb.word_centres("world")
    trace = np.concatenate([centres, np.arange(len(centres))[:, None] * 100.0], axis=1)
    assert full.decode(trace, kb, k=1)[0][0] == coarse.decode(trace, kb, k=1)[0][0] == "world"
    kept = coarse.decode(trace, kb, k=8)
    # The 3 words whose every-4th template point lies nearest the trace ("word" skips the 'l'
    # and falls behind "with"), scored exactly as without the coarse pass.
    assert [w for w, _ in kept] == ["world", "would", "with"]
    full_scores = dict(full.decode(trace, kb, k=8))
    assert all(score == full_scores[w] for w, score in kept)


def test_params_given_to_score_candidates_set_its_cuts_too():
    """Params passed for one call narrow as they say (here the coarse pass), not as the
    decoder's own: a benchmark asks how many words each cut keeps this way."""
    kb = named_keyboard("qwerty-en", 375, 217)
    words = ["hello", "help", "world", "word", "would", "with", "what", "when"]
    decoder = TemplateDecoder(Lexicon(words, np.ones(len(words))), TemplateParams(coarse_keep=3))
    centres = kb.word_centres("world")
    trace = np.concatenate([centres, np.arange(len(centres))[:, None] * 100.0], axis=1)
    assert len(decoder.score_candidates(trace, kb)[0]) == 3
    wider = TemplateParams(coarse_keep=1000)
    assert len(decoder.score_candidates(trace, kb, wider)[0]) == len(words)


def test_channel_distances_are_the_mean_point_distances_to_each_template():
    """The banks' coordinate-major layout must still give SHARK2's channels: the mean distance
    between the resampled trace and each word's key-centre path, as-is (location) and
    normalised for position and scale (shape)."""
    kb = named_keyboard("qwerty-en", 375, 217)
    words = ["hello", "help", "world", "word", "would", "with", "what", "when", "wheel"]
    lex = Lexicon(words, np.ones(len(words)))
    decoder = TemplateDecoder(lex, TemplateParams(start_radius=9.0, end_radius=9.0))
    rng = np.random.default_rng(3)
    centres = kb.word_centres("would") + rng.normal(scale=6.0, size=(5, 2))
    trace = np.concatenate([centres, np.arange(5)[:, None] * 90.0], axis=1)
    cand, d_shape, d_loc = decoder.channel_distances(trace, kb)
    assert sorted(cand.tolist()) == list(range(len(words)))  # every word passed the radii
    path = resample_path(kb.to_key_units(trace[:, :2]))
    for row, ds, dl in zip(cand, d_shape, d_loc):
        word = resample_path(kb.to_key_units(kb.word_centres(words[row])))
        np.testing.assert_allclose(dl, np.linalg.norm(word - path, axis=1).mean(), rtol=1e-5)
        expected = np.linalg.norm(normalise_shape(word) - normalise_shape(path), axis=1).mean()
        np.testing.assert_allclose(ds, expected, rtol=1e-5, atol=1e-6)
