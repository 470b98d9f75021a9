"""The ClientApp on a node's swipe store, called the way the Flower runtime calls it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.app.message.message import make_message

from fl_app.decoder.spec import model_arrays
from fl_app.federation import protocol as P
from fl_app.federation.client import NotEnoughSwipes, make_client_app
from fl_app.federation.config import compose, finalize
from fl_app.federation.data import ensure_synthetic_store, synthetic_store_path
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
