"""Hostile swipes never reach a model: the store and the importer refuse degenerate keyboards
with their own codes, through the one swipe contract (fl_app/decoder/swipe.py) they share.
(A store already holding such a row, written by an older version: tests/test_client_app.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fl_app.datasets.importer import import_file
from fl_app.decoder import errors
from fl_app.decoder.keyboard import Key, Keyboard, named_keyboard
from fl_app.decoder.swipe import Swipe
from fl_app.swipes.store import SwipeStore

GOOD = named_keyboard("qwerty-en", 360, 200)
POINTS = [[20.0 + 30 * i, 30.0 + 5 * i, 17.0 * i] for i in range(8)]


def explicit(**change) -> dict:
    """GOOD as explicit hitboxes, with `change` applied to every key (what an attacker posts)."""
    keys = [{"label": k.label, "x": k.x, "y": k.y, "w": k.w, "h": k.h, **change} for k in GOOD.keys]
    return {"width": GOOD.width, "height": GOOD.height, "language": "en", "keys": keys}


DEGENERATE = [
    (explicit(w=1e-300), "KEY_TOO_SMALL"),  # the swipe: features overflow to infinity
    (explicit(x=1e300), "KEY_OUTSIDE_KEYBOARD"),
    (explicit(w=1e4), "KEY_TOO_LARGE"),
    ({"layout": "qwerty-en", "width": 1e300, "height": 200}, "KEYBOARD_SIZE_OUT_OF_RANGE"),
]


def swipe_dict(keyboard: dict, word: str = "dog") -> dict:
    return {"points": POINTS, "keyboard": keyboard, "word": word}


@pytest.mark.parametrize("keyboard,code", DEGENERATE)
def test_the_store_refuses_a_degenerate_keyboard_with_its_code(tmp_path, keyboard, code):
    with SwipeStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(errors.InvalidKeyboardError) as info:
            store.append(swipe_dict(keyboard))
        assert info.value.code == code
        # A batch is all or none, and names the bad swipe.
        with pytest.raises(errors.InvalidKeyboardError) as info:
            store.append_many([swipe_dict(GOOD.to_spec()), swipe_dict(keyboard)])
        assert info.value.code == code and info.value.index == 1  # type: ignore[attr-defined]
        assert store.count() == 0
        store.append(swipe_dict(GOOD.to_spec()))
        assert store.count() == 1


def test_the_store_refuses_an_in_memory_swipe_over_degenerate_keys(tmp_path):
    """The same refusal for a Swipe object built in code (the generator's path)."""
    keys = tuple(Key(k.label, k.x, k.y, 1e-300, k.h) for k in GOOD.keys)
    kb = Keyboard(GOOD.width, GOOD.height, keys, "en")
    with SwipeStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(errors.KeyTooSmallError):
            store.append(Swipe(np.array(POINTS), kb, "dog"))
        assert store.count() == 0


def test_the_importer_refuses_degenerate_keyboards_counting_each_code(tmp_path: Path):
    lines = [json.dumps({"user": "u1", "seq": 0, **swipe_dict(GOOD.to_spec(), "cat")})]
    lines += [
        json.dumps({"user": "u1", "seq": i + 1, **swipe_dict(kb)})
        for i, (kb, _) in enumerate(DEGENERATE)
    ]
    lines.append(json.dumps({"user": "u1", "seq": 9, **swipe_dict(GOOD.to_spec(), "dog")}))
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = import_file(path, stores_dir=tmp_path / "stores", source="test")
    assert summary.refused == {code: 1 for _, code in DEGENERATE}
    assert summary.stored == {"u1": 2}
    with SwipeStore(tmp_path / "stores" / "u1.sqlite") as store:
        assert [r.swipe.word for r in store.load()] == ["cat", "dog"]
