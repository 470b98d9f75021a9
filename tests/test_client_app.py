"""The ClientApp on a node's swipe store, called the way the Flower runtime calls it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.app.message.message import make_message
from store_helpers import store_legacy_keyboard

from fl_app.decoder.discriminative import mine_choices
from fl_app.decoder.spec import model_arrays
from fl_app.federation import protocol as P
from fl_app.federation.client import NotEnoughSwipes, make_client_app
from fl_app.federation.config import compose, finalize
from fl_app.federation.data import ensure_synthetic_store, spec_lexicon, synthetic_store_path
from fl_app.swipes.store import SwipeStore

client_app = make_client_app()  # what client_app.py exposes to Flower

TINY = [
    "init=random",
    "data.lexicon_size=1000",
    "model.hidden=16",
    "model.conv_channels=16",
    "data.swipes_per_user=40",
    "train.epochs=1",
    "train.min_swipes=10",
    "train.word_weight=0",  # CTC; the word-level tests below turn it on
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("synth-cache"))


def _cfg(cache_dir: str, *extra: str):
    return finalize(compose([*TINY, f"data.cache_dir={cache_dir}", *extra]))


def _message(cfg, message_type: str, server_round: int = 1) -> Message:
    spec = cfg.decoder
    config = P.round_config(cfg)
    config["server-round"] = server_round
    content = RecordDict(
        {P.ARRAYS: P.to_record(model_arrays(spec.build_model(seed=0))), P.CONFIG: config}
    )
    metadata = Metadata(
        run_id=1,
        message_id=f"m-{message_type}-{server_round}",
        src_node_id=1,
        dst_node_id=7,
        reply_to_message_id="",
        group_id=str(server_round),
        created_at=time.time(),
        ttl=3600.0,
        message_type=message_type,
    )
    return make_message(metadata, content)


def _context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def test_round_config_roundtrip(cache_dir):
    cfg = _cfg(cache_dir, "strategy=fedprox", "train.epochs=2.5", "train.batch_size=8")
    record = P.round_config(cfg)
    record["server-round"] = 4
    record[P.PROXIMAL_MU] = 0.25  # what Flower's FedProx adds
    task = P.RoundTask.from_record(record)
    assert task.server_round == 4
    assert task.train.epochs == 2.5 and task.train.batch_size == 8 and task.train.mu == 0.25
    assert task.decoder == cfg.decoder
    assert task.cache_dir == cache_dir
    with pytest.raises(ValueError, match="lacks 'epochs'"):
        P.RoundTask.from_record(ConfigRecord({"decoder": record["decoder"]}))
    record["batch-size"] = "eight"
    with pytest.raises(ValueError, match="batch-size: expected an integer"):
        P.RoundTask.from_record(record)


def test_synthetic_store_is_generated_once_and_deterministic(cache_dir, tmp_path):
    spec = _cfg(cache_dir).decoder
    path = ensure_synthetic_store(cache_dir, spec, seed=3, n=30)
    assert path == synthetic_store_path(cache_dir, spec, 3, 30) and path.is_absolute()
    mtime = path.stat().st_mtime_ns
    assert ensure_synthetic_store(cache_dir, spec, seed=3, n=30).stat().st_mtime_ns == mtime
    other = ensure_synthetic_store(str(tmp_path), spec, seed=3, n=30)
    with SwipeStore(path) as a, SwipeStore(other) as b:
        rows_a, rows_b = a.load(), b.load()
    assert len(rows_a) == 30
    assert [r.swipe.word for r in rows_a] == [r.swipe.word for r in rows_b]
    assert all(
        np.array_equal(x.swipe.points, y.swipe.points) for x, y in zip(rows_a, rows_b, strict=True)
    )
    with pytest.raises(ValueError, match="absolute"):
        ensure_synthetic_store("relative/dir", spec, seed=3, n=30)


def test_train_replies_with_update_and_sets_training_marker(cache_dir):
    cfg = _cfg(cache_dir)
    reply = client_app(_message(cfg, "train"), _context({"partition-id": 2}))
    assert not reply.has_error()
    metrics = reply.content[P.METRICS]
    store_path = synthetic_store_path(cache_dir, cfg.decoder, 2, 40)
    with SwipeStore(store_path, heldout_fraction=0.2) as store:
        train_rows = store.load(split="train")
        assert metrics[P.NUM_EXAMPLES] == len(train_rows) > 10
        assert store.training_marker() == max(r.id for r in train_rows)
    assert metrics[P.TRAIN_LOSS] > 0 and metrics[P.TRAIN_SECONDS] > 0
    sent = P.from_record(_message(cfg, "train").content[P.ARRAYS])
    got = P.from_record(reply.content[P.ARRAYS])
    assert sent.keys() == got.keys()
    assert any(not np.allclose(sent[k], got[k]) for k in sent)  # it trained


def test_evaluate_replies_with_loss_and_top1(cache_dir):
    cfg = _cfg(cache_dir)
    reply = client_app(_message(cfg, "evaluate"), _context({"partition-id": 2}))
    metrics = reply.content[P.METRICS]
    assert metrics[P.NUM_EXAMPLES] > 0
    assert 0.0 <= metrics[P.EVAL_TOP1] <= 1.0 and metrics[P.EVAL_LOSS] > 0
    assert P.ARRAYS not in reply.content


def test_too_few_swipes_is_a_clear_error(cache_dir, tmp_path):
    cfg = _cfg(cache_dir)
    spec = cfg.decoder
    # A deployed node's store with 5 swipes (copied from a synthetic user), min_swipes 10.
    source = ensure_synthetic_store(cache_dir, spec, seed=9, n=40)
    path = tmp_path / "device.sqlite"
    with SwipeStore(source) as src, SwipeStore(path) as dst:
        dst.append_many([r.swipe for r in src.load(limit=5)], source="device")
    with pytest.raises(NotEnoughSwipes, match=r"fewer than the minimum 10 \(train.min_swipes\)"):
        client_app(_message(cfg, "train"), _context({"swipe-store": str(path)}))
    with SwipeStore(path) as store:
        assert store.training_marker() == 0  # no finished round, no marker


def test_node_store_must_be_absolute_and_exist(cache_dir, tmp_path):
    cfg = _cfg(cache_dir)
    with pytest.raises(ValueError, match="absolute path"):
        client_app(_message(cfg, "train"), _context({"swipe-store": "swipes.sqlite"}))
    with pytest.raises(FileNotFoundError, match="no swipe store"):
        client_app(_message(cfg, "train"), _context({"swipe-store": str(tmp_path / "x.sqlite")}))
    with pytest.raises(ValueError, match="names no swipe store"):
        client_app(_message(cfg, "train"), _context({}))


def test_decoder_spec_travels_as_json(cache_dir):
    cfg = _cfg(cache_dir, "model.hidden=24")
    decoder = json.loads(str(P.round_config(cfg)["decoder"]))
    assert decoder["model"]["hidden"] == 24 and decoder["lexicon_size"] == 1000


# -- hostile data: rows an older version stored, weights that are not finite ---------------


def _legacy_degenerate_store(cache_dir: str, cfg, path) -> int:
    """A device store holding 40 good rows and one row an older version accepted: its keyboard's
    keys are 1e-300 px wide (today's contract refuses it: KEY_TOO_SMALL). Returns its id."""
    source = ensure_synthetic_store(cache_dir, cfg.decoder, seed=4, n=40)
    with SwipeStore(source) as src, SwipeStore(path) as dst:
        dst.append_many([r.swipe for r in src.load()], source="device")
        bad_id = dst.max_id()
    store_legacy_keyboard(path, bad_id)
    return bad_id


def test_a_store_holding_a_degenerate_row_trains_to_finite_weights(cache_dir, tmp_path):
    from fl_app.decoder.errors import KeyTooSmallError
    from fl_app.decoder.features import swipe_features
    from fl_app.decoder.swipe import validate_points

    cfg = _cfg(cache_dir, "data.heldout_fraction=0")
    path = tmp_path / "device.sqlite"
    bad_id = _legacy_degenerate_store(cache_dir, cfg, path)
    with SwipeStore(path) as store:
        rows = store.load()
    bad = next(r.swipe for r in rows if r.id == bad_id)
    assert not np.isfinite(swipe_features(bad.points, bad.keyboard, cfg.decoder.features)).all()
    with pytest.raises(KeyTooSmallError):  # the store would refuse it today
        validate_points(bad.points, bad.keyboard, 2000)

    reply = client_app(_message(cfg, "train"), _context({"swipe-store": str(path)}))
    assert not reply.has_error()
    got = P.from_record(reply.content[P.ARRAYS])
    assert all(np.isfinite(a).all() for a in got.values())
    assert reply.content[P.METRICS][P.NUM_EXAMPLES] == len(rows) - 1  # the legacy row skipped
    with SwipeStore(path) as store:
        assert store.count() == len(rows)  # and kept: nothing is lost


def test_a_node_trains_on_at_most_the_servers_cap_of_its_newest_swipes(cache_dir):
    cfg = _cfg(cache_dir, "reply_checks.max_num_examples=12")
    reply = client_app(_message(cfg, "train"), _context({"partition-id": 2}))
    assert reply.content[P.METRICS][P.NUM_EXAMPLES] == 12


def test_a_node_never_trains_from_or_sends_non_finite_weights(cache_dir):
    from fl_app.federation.client import NonFiniteWeights

    cfg = _cfg(cache_dir)
    message = _message(cfg, "train")
    arrays = P.from_record(message.content[P.ARRAYS])
    first = next(iter(arrays))
    arrays[first] = np.full_like(arrays[first], np.nan)  # an older server spread NaN weights
    message.content[P.ARRAYS] = P.to_record(arrays)
    path = synthetic_store_path(cache_dir, cfg.decoder, 2, 40)
    with SwipeStore(path) as store:
        marker = store.training_marker()
    with pytest.raises(NonFiniteWeights, match="the global model the server sent"):
        client_app(message, _context({"partition-id": 2}))
    with SwipeStore(path) as store:
        assert store.training_marker() == marker  # no finished round


# -- word-level local training (train.word_weight > 0) -------------------------------------


def _word_level_share(spec, arrays, choices) -> float:
    """Mean -log share of each truth among its mined candidates, scored by `arrays`."""
    from fl_app.decoder.discriminative import word_level_losses
    from fl_app.decoder.features import swipe_features
    from fl_app.decoder.spec import load_arrays

    model = spec.build_model(seed=0)
    load_arrays(model, arrays)
    model.eval()
    feats = [swipe_features(c.swipe.points, c.swipe.keyboard, spec.features) for c in choices]
    with torch.no_grad():
        _, word = word_level_losses(model, feats, choices)
    return float(word)


def test_word_level_training_learns_the_choices_its_decoder_gets_close(cache_dir):
    extra = ["train.epochs=8", "train.word_candidates=8"]
    ctc_cfg = _cfg(cache_dir, *extra)
    word_cfg = _cfg(cache_dir, *extra, "train.word_weight=1.0")
    assert P.RoundTask.from_record(P.round_config(word_cfg)).word_weight == 1.0
    assert P.RoundTask.from_record(P.round_config(ctc_cfg)).word_weight == 0.0
    ctc = client_app(_message(ctc_cfg, "train"), _context({"partition-id": 5}))
    word = client_app(_message(word_cfg, "train"), _context({"partition-id": 5}))
    assert not ctc.has_error() and not word.has_error()
    assert P.TRAIN_WORD_LOSS not in ctc.content[P.METRICS]
    metrics = word.content[P.METRICS]
    assert np.isfinite(metrics[P.TRAIN_WORD_LOSS]) and metrics[P.TRAIN_LOSS] > 0

    with SwipeStore(
        synthetic_store_path(cache_dir, word_cfg.decoder, 5, 40), heldout_fraction=0.2
    ) as s:
        swipes = [r.swipe for r in s.load(split="train")]
    spec = word_cfg.decoder
    sent = spec.build_model(seed=0)  # what _message sends
    choices = mine_choices(spec.build_decoder(sent, spec_lexicon(spec)), swipes, 8)
    mined, before = len(choices), _word_level_share(spec, model_arrays(sent), choices)
    # It trains on the swipes the round's decoder shortlists correctly, and counts those.
    assert metrics[P.NUM_EXAMPLES] == mined and 0 < mined <= len(swipes)
    after_ctc = _word_level_share(spec, P.from_record(ctc.content[P.ARRAYS]), choices)
    after_word = _word_level_share(spec, P.from_record(word.content[P.ARRAYS]), choices)
    # The word-level round leaves the truths a larger share of their candidates than CTC does.
    assert after_word < before and after_word < 0.7 * after_ctc, (before, after_ctc, after_word)


def test_word_level_training_keeps_fedprox_proximal_term(cache_dir):
    """With FedProx's `proximal-mu` the word-level round stays nearer the global model."""
    cfg = _cfg(cache_dir, "train.epochs=8", "train.word_weight=1.0")

    def drift(mu: float) -> float:
        message = _message(cfg, "train")
        message.content[P.CONFIG][P.PROXIMAL_MU] = mu
        reply = client_app(message, _context({"partition-id": 6}))
        sent = P.from_record(message.content[P.ARRAYS])
        got = P.from_record(reply.content[P.ARRAYS])
        return float(np.sqrt(sum(((got[k] - sent[k]) ** 2).sum() for k in sent)))

    free, held = drift(0.0), drift(50.0)
    assert held < 0.7 * free, (free, held)
