"""The ClientApp: train and evaluate the global model on this node's swipe store.

Which store: a deployed SuperNode names it in its node config (``swipe-store=/abs/path.sqlite``,
the file its sidecar writes); a simulated node has a ``partition-id`` and trains on the cached
store of synthetic user ``data-seed + partition-id`` (generated on first use). Everything else
(architecture, local epochs, learning rate, batch size, FedProx mu, and whether to train the
word-level objective on the node's own close calls beside CTC) comes from the server's
ConfigRecord each round. Raw swipes never leave the node: replies carry weights and metrics.

A node trains only on rows today's swipe contract accepts (a row an older version stored over a
degenerate keyboard is skipped), on at most the server's `max-examples` newest of them (so an
honest heavy user passes the server's reply checks), and never sends non-finite weights: it
answers with an error instead (docs/security.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_app.decoder.discriminative import local_word_level_round
from fl_app.decoder.evaluation import score_model
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, model_arrays
from fl_app.decoder.swipe import Swipe, contract_swipes
from fl_app.decoder.training import SwipeDataset, train
from fl_app.federation import protocol as P
from fl_app.federation.data import ensure_synthetic_store, spec_lexicon
from fl_app.swipes.store import SwipeStore

log = logging.getLogger(__name__)


class NotEnoughSwipes(RuntimeError):
    """The node's store has too few usable swipes for a useful update."""


class NonFiniteWeights(RuntimeError):
    """The model sent, or the one trained from it, holds NaN or infinite values: no update."""


def require_finite(arrays: dict[str, np.ndarray], what: str) -> None:
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise NonFiniteWeights(f"{what} has non-finite values in {bad[:3]}; no update sent")


def node_store_path(context: Context, task: P.RoundTask) -> Path:
    """This node's swipe store (see the module docstring)."""
    node = context.node_config
    if P.NODE_STORE in node:
        path = Path(str(node[P.NODE_STORE])).expanduser()
        if not path.is_absolute():
            raise ValueError(
                f"node config {P.NODE_STORE}={str(path)!r} must be an absolute path "
                "(relative paths resolve against the SuperNode's working directory)"
            )
        if not path.is_file():
            raise FileNotFoundError(f"node config {P.NODE_STORE}: no swipe store at {path}")
        return path
    if P.NODE_PARTITION in node and task.stores_dir:
        return partition_store(Path(task.stores_dir), int(node[P.NODE_PARTITION]))
    if P.NODE_PARTITION in node:
        seed = task.data_seed + int(node[P.NODE_PARTITION])
        return ensure_synthetic_store(
            task.cache_dir, task.decoder, seed, task.swipes_per_user, task.regime
        )
    raise ValueError(
        f"the node config names no swipe store: start the SuperNode with "
        f"--node-config \"{P.NODE_STORE}='/abs/path/swipes.sqlite'\""
    )


def partition_store(stores_dir: Path, partition: int) -> Path:
    """data=stores: simulated node p trains on the p-th store of the folder, by file name."""
    stores = sorted(stores_dir.glob("*.sqlite"))
    if not 0 <= partition < len(stores):
        raise ValueError(
            f"partition {partition} has no store: {stores_dir} holds {len(stores)} "
            "(run the simulation with at most that many supernodes)"
        )
    return stores[partition]


def count_training_swipes(message: Message, context: Context) -> Message:
    """The census: how many training swipes this node has (a cheap SQL count, no decoding),
    so the server samples only nodes that can train a round."""
    task = P.RoundTask.from_record(message.content[P.CONFIG])
    with SwipeStore(node_store_path(context, task), heldout_fraction=task.heldout_fraction) as s:
        count = s.count(split="train")
    return Message(RecordDict({P.METRICS: MetricRecord({P.TRAIN_SWIPES: count})}), reply_to=message)


def _set_threads(context: Context) -> None:
    threads = context.node_config.get(P.NODE_THREADS)
    if threads is None and P.NODE_PARTITION in context.node_config:
        threads = 1  # simulated nodes share the machine's cores
    if threads is not None and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))


def _model(task: P.RoundTask, message: Message) -> torch.nn.Module:
    arrays = P.from_record(message.content[P.ARRAYS])
    require_finite(arrays, "the global model the server sent")
    return task.decoder.model_with(arrays)


_DECODERS: dict[str, LearnedDecoder] = {}  # this process's decoder per spec (one at a time)


def round_decoder(spec: DecoderSpec, model: torch.nn.Module) -> LearnedDecoder:
    """The spec's decoder over this round's `model`. Its template banks and lexicon targets
    are built once per process (seconds for 100,000 words, against a fraction of a second for
    a round's training) and reused while the server keeps sending the same spec."""
    key = json.dumps(spec.to_manifest(), sort_keys=True)
    decoder = _DECODERS.get(key)
    if decoder is None:
        _DECODERS.clear()
        decoder = _DECODERS[key] = spec.build_decoder(model, spec_lexicon(spec))
    return decoder.with_model(model)


def train_on_store(message: Message, context: Context) -> Message:
    """One round of local training; sets the store's training marker when it finishes."""
    task = P.RoundTask.from_record(message.content[P.CONFIG])
    _set_threads(context)
    path = node_store_path(context, task)
    with SwipeStore(path, heldout_fraction=task.heldout_fraction) as store:
        upper = store.max_id()  # the snapshot this round covers; rows appended later stay new
        rows = store.load(split="train", up_to_id=upper)
        swipes = contract_swipes(r.swipe for r in rows)
        if task.max_examples is not None:
            swipes = swipes[-task.max_examples :]  # the newest: the user's current habits
        data = SwipeDataset.from_swipes(swipes, task.decoder.features)
        if len(data) < task.min_swipes:
            raise NotEnoughSwipes(
                f"this node has {len(data)} usable training swipes, fewer than the minimum "
                f"{task.min_swipes} (train.min_swipes); no update sent"
            )
        model = _model(task, message)
        if task.word_weight > 0:
            metrics = _train_word_level(task, model, swipes)
        else:
            metrics = _train_ctc(task, model, data)
        trained = model_arrays(model)
        require_finite(trained, "the model trained this round")
        store.mark_trained(up_to_id=upper)  # held-out rows count as seen too
    metrics[P.TRAIN_LR] = task.train.lr
    content = RecordDict({P.ARRAYS: P.to_record(trained), P.METRICS: MetricRecord(metrics)})
    return Message(content, reply_to=message)


def _train_ctc(task: P.RoundTask, model: torch.nn.Module, data: SwipeDataset) -> dict:
    result = train(model, data, task.train)
    if result.skipped_examples or result.skipped_steps:
        log.warning(
            "training skipped %d non-finite examples and %d non-finite steps",
            result.skipped_examples,
            result.skipped_steps,
        )
    return {
        P.NUM_EXAMPLES: len(data),
        P.TRAIN_LOSS: float(result.loss),
        P.TRAIN_SECONDS: float(result.seconds),
    }


def _train_word_level(task: P.RoundTask, model: torch.nn.Module, swipes: list[Swipe]) -> dict:
    """`train.word_weight > 0`: the round's model decodes this user's swipes and trains on the
    choices it got close (fl_app/decoder/discriminative.py). A swipe whose word the shortlist
    misses (or the lexicon lacks) teaches no choice, so `num-examples` counts the mined ones."""
    decoder = round_decoder(task.decoder, model)
    stats = local_word_level_round(
        model, decoder, swipes, task.train, task.word_weight, task.word_candidates
    )
    if not stats["choices"]:
        raise NotEnoughSwipes(
            f"none of this node's {len(swipes)} training swipes has its word in the decoder's "
            "shortlist (train.word_weight > 0 trains only on those); no update sent"
        )
    return {
        P.NUM_EXAMPLES: int(stats["choices"]),
        P.TRAIN_LOSS: float(stats["ctc_loss"]),
        P.TRAIN_WORD_LOSS: float(stats["word_loss"]),
        P.TRAIN_SECONDS: float(stats["seconds"]),
    }


def evaluate_on_store(message: Message, context: Context) -> Message:
    """CTC loss and top-1 of the global model on this node's held-out swipes."""
    task = P.RoundTask.from_record(message.content[P.CONFIG])
    _set_threads(context)
    path = node_store_path(context, task)
    with SwipeStore(path, heldout_fraction=task.heldout_fraction) as store:
        rows = store.load(split="heldout", limit=task.eval_max_swipes)
    swipes = contract_swipes(r.swipe for r in rows)
    data = SwipeDataset.from_swipes(swipes, task.decoder.features)
    if len(data) == 0:
        raise NotEnoughSwipes("this node has no held-out swipes to evaluate on")
    decoder = round_decoder(task.decoder, _model(task, message))
    scores = score_model(decoder, swipes, data)
    metrics = MetricRecord(
        {
            P.NUM_EXAMPLES: len(data),
            P.EVAL_LOSS: float(scores["loss"]),
            P.EVAL_TOP1: float(scores["top1"]),
        }
    )
    return Message(RecordDict({P.METRICS: metrics}), reply_to=message)


def make_client_app() -> ClientApp:
    app = ClientApp()
    app.train()(train_on_store)
    app.evaluate()(evaluate_on_store)
    app.query()(count_training_swipes)
    return app
