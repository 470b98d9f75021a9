"""The swipe contract: each kind of malformed swipe has its own error."""

import math

import numpy as np
import pytest

from fl_app.decoder import errors
from fl_app.decoder.swipe import parse_swipe

KB = {"layout": "qwerty-en", "width": 375, "height": 217}


def swipe(points=None, **kw):
    pts = (
        points
        if points is not None
        else [{"x": 247.0, "y": 1.0, "t": 0}, {"x": 245.0, "y": 8.0, "t": 29}]
    )
    return {"points": pts, "keyboard": KB, "word": "units", **kw}


def test_round_trip():
    s = parse_swipe(swipe(), require_word=True)
    assert s.word == "units" and s.points.shape == (2, 3) and s.duration_ms == 29
    assert parse_swipe(s.to_dict(), require_word=True).to_dict() == s.to_dict()


def test_prediction_swipe_needs_no_word():
    data = swipe()
    del data["word"]
    assert parse_swipe(data).word is None
    with pytest.raises(errors.MissingWordError):
        parse_swipe(data, require_word=True)


@pytest.mark.parametrize(
    "data,error",
    [
        (swipe([{"x": 1, "y": 1, "t": 0}]), errors.TooFewPointsError),
        (swipe([{"x": math.nan, "y": 1, "t": 0}, {"x": 2, "y": 2, "t": 5}]), errors.NonFiniteError),
        (swipe([{"x": 1, "y": 1, "t": 9}, {"x": 2, "y": 2, "t": 5}]), errors.DecreasingTimeError),
        (swipe([{"x": 1, "y": 1, "t": 0}, {"x": 2, "y": 500, "t": 5}]), errors.OutOfBoundsError),
        (swipe(keyboard={"layout": "nope", "width": 3, "height": 2}), errors.UnknownLayoutError),
        (swipe(word="don't"), errors.WordOutsideAlphabetError),
        (swipe(word="Units"), errors.WordOutsideAlphabetError),
        (swipe([{"x": i, "y": 1, "t": i} for i in range(50)]), errors.TooManyPointsError),
        (swipe([{"x": "a", "y": 1}]), errors.SwipeError),
    ],
)
def test_bad_swipes_refused_with_their_own_error(data, error):
    with pytest.raises(error) as info:
        parse_swipe(data, require_word=True, max_points=40)
    assert type(info.value) is error
    assert info.value.code


def test_points_slightly_outside_are_fine():
    pts = [{"x": -30, "y": -20, "t": 0}, {"x": 400, "y": 230, "t": 10}]
    assert parse_swipe(swipe(pts)).points[0, 0] == -30


# -- geometry bounds: a keyboard whose features could overflow is refused, each with its code --


def explicit(keys=None, width=300.0, height=120.0, **key):
    """An explicit keyboard of ten 30 x 40 px letter keys; `key` overrides the first one."""
    keys = keys or [
        {"label": ch, "x": 30.0 * i, "y": 0.0, "w": 30.0, "h": 40.0}
        for i, ch in enumerate("qwertyuiop")
    ]
    keys[0] = {**keys[0], **key}
    return {"width": width, "height": height, "keys": keys}


def trace_over(keyboard):
    return swipe([{"x": 40.0, "y": 20.0, "t": 0}, {"x": 100.0, "y": 20.0, "t": 50}], word="we")


@pytest.mark.parametrize(
    "keyboard,error,code",
    [
        (explicit(w=1e-300), errors.KeyTooSmallError, "KEY_TOO_SMALL"),
        (explicit(h=0.1), errors.KeyTooSmallError, "KEY_TOO_SMALL"),
        (explicit(w=301.0), errors.KeyTooLargeError, "KEY_TOO_LARGE"),
        (explicit(x=1e300), errors.KeyOutsideKeyboardError, "KEY_OUTSIDE_KEYBOARD"),
        (explicit(y=-30.0), errors.KeyOutsideKeyboardError, "KEY_OUTSIDE_KEYBOARD"),
        (explicit(width=1e300), errors.KeyboardSizeError, "KEYBOARD_SIZE_OUT_OF_RANGE"),
        (explicit(height=5.0), errors.KeyboardSizeError, "KEYBOARD_SIZE_OUT_OF_RANGE"),
        ({"layout": "qwerty-en", "width": 1e-3, "height": 1e-3}, errors.KeyboardSizeError,
         "KEYBOARD_SIZE_OUT_OF_RANGE"),
        ({"layout": "qwerty-en", "width": 375, "height": 217, "key_height": 1e-9},
         errors.KeyTooSmallError, "KEY_TOO_SMALL"),
        ({"layout": "qwerty-en", "width": 375, "height": 217, "key_height": 5000},
         errors.KeyTooLargeError, "KEY_TOO_LARGE"),
        (explicit(explicit()["keys"] + [{"label": ",", "x": 0, "y": 80, "w": 30, "h": 40}] * 250),
         errors.TooManyKeysError, "TOO_MANY_KEYS"),
    ],
)  # fmt: skip
def test_degenerate_keyboards_are_refused_with_their_own_code(keyboard, error, code):
    data = {**trace_over(keyboard), "keyboard": keyboard}
    with pytest.raises(error) as info:
        parse_swipe(data, require_word=True)
    assert type(info.value) is error and info.value.code == code
    assert isinstance(info.value, errors.InvalidKeyboardError)  # old handlers still catch it


def test_a_swipe_may_not_last_for_ever():
    pts = [{"x": 1, "y": 1, "t": -1e308}, {"x": 2, "y": 2, "t": 1e308}]  # t[-1] - t[0] = inf
    with pytest.raises(errors.DurationTooLongError) as info:
        parse_swipe(swipe(pts))
    assert info.value.code == "DURATION_TOO_LONG"
    assert parse_swipe(swipe([{"x": 1, "y": 1, "t": 0}, {"x": 2, "y": 2, "t": 41_906}]))


@pytest.mark.parametrize("resample", ["time", "path"])
def test_features_are_finite_at_the_edges_of_the_bounds(resample):
    """The smallest keys, the largest keyboard, points one keyboard size outside: finite."""
    from fl_app.decoder.features import FeatureSpec, swipe_features
    from fl_app.decoder.keyboard import MAX_KEYBOARD_PX, MIN_KEY_SHARE, keyboard_from_spec

    spec = FeatureSpec(alphabet="abcdefghijklmnopqrstuvwxyz", resample=resample)
    for size in (32.0, MAX_KEYBOARD_PX):
        key = size * MIN_KEY_SHARE
        keys = [
            {"label": ch, "x": size - key if i % 2 else 0.0, "y": 0.0, "w": key, "h": key}
            for i, ch in enumerate("qwertyuiop")
        ]
        kb = keyboard_from_spec({"width": size, "height": size, "keys": keys})
        pts = [[-size, -size, 0.0], [2 * size, 2 * size, 60_000.0], [0.0, 2 * size, 120_000.0]]
        s = parse_swipe({"points": pts, "keyboard": kb.to_spec(), "word": "we"})
        feats = swipe_features(s.points, s.keyboard, spec)
        assert np.isfinite(feats).all() and np.abs(feats).max() < 1e3
