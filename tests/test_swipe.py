"""The swipe contract: each kind of malformed swipe has its own error."""

import math

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
