"""Keyboard geometry: named layouts scale to any size; explicit hitboxes win."""

import numpy as np
import pytest

from fl_app.decoder.errors import InvalidKeyboardError, UnknownLayoutError
from fl_app.decoder.keyboard import keyboard_from_spec, named_keyboard


@pytest.mark.parametrize("width,height", [(320, 200), (375, 217), (1440, 626)])
def test_named_layout_scales_to_size(width, height):
    kb = named_keyboard("qwerty-en", width, height)
    assert kb.alphabet == "abcdefghijklmnopqrstuvwxyz"
    assert kb.key_width == pytest.approx(width / 10)
    assert kb.key_height == pytest.approx(height / 4)
    q, a, z = (kb.letter_keys[c] for c in "qaz")
    assert q.centre == pytest.approx((width / 20, height / 8))
    # Rows are staggered like a phone keyboard: a half key, z one and a half keys.
    assert a.x == pytest.approx(0.5 * width / 10)
    assert z.x == pytest.approx(1.5 * width / 10)
    assert z.y == pytest.approx(2 * height / 4)
    # In key units every size looks the same.
    np.testing.assert_allclose(
        kb.letter_centres_ku, named_keyboard("qwerty-en", 500, 300).letter_centres_ku
    )
    assert kb.layout_key == named_keyboard("qwerty-en", 999, 400).layout_key


def test_key_height_override():
    kb = named_keyboard("qwerty-en", 400, 300, key_height=50)
    assert kb.key_height == 50
    assert kb.letter_keys["z"].centre[1] == pytest.approx(125)


def test_jcuken_layout():
    kb = keyboard_from_spec({"layout": "jcuken-ru", "width": 440, "height": 240})
    assert kb.language == "ru"
    assert len(kb.alphabet) == 31
    assert kb.key_width == pytest.approx(40)
    assert kb.nearest_letters(np.array([[20, 30]])) == "й"


def test_explicit_geometry_wins():
    keys = [
        {"label": "Q", "x": 0, "y": 0, "w": 100, "h": 50},
        {"label": "w", "x": 100, "y": 0, "w": 60, "h": 50},
        {"label": "e", "x": 160, "y": 0, "w": 60, "h": 50},
        {"label": "shift", "x": 0, "y": 50, "w": 80, "h": 50},
    ]
    kb = keyboard_from_spec({"width": 220, "height": 100, "keys": keys, "layout": "qwerty-en"})
    assert kb.alphabet == "eqw"  # single-letter labels, case-folded; 'shift' is no letter
    assert kb.letter_keys["q"].centre == (50, 25)
    assert kb.word_centres("we").tolist() == [[130, 25], [190, 25]]
    assert kb.nearest_letters(np.array([[60, 10], [125, 10]])) == "qw"
    assert kb.to_spec()["keys"] == keys


@pytest.mark.parametrize(
    "spec,error",
    [
        ({"layout": "dvorak-xx", "width": 300, "height": 200}, UnknownLayoutError),
        ({"layout": "qwerty-en", "width": -3, "height": 200}, InvalidKeyboardError),
        ({"layout": "qwerty-en", "height": 200}, InvalidKeyboardError),
        ({"width": 300, "height": 200}, InvalidKeyboardError),
        ({"width": 300, "height": 200, "keys": [{"label": "a", "x": 0}]}, InvalidKeyboardError),
        ("qwerty", InvalidKeyboardError),
    ],
)
def test_bad_keyboards_refused(spec, error):
    with pytest.raises(error):
        keyboard_from_spec(spec)
