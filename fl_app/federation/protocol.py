"""What the ServerApp and the ClientApps say to each other, in one place.

Every train/evaluate message carries the global model as an ArrayRecord (``"arrays"``) and a
ConfigRecord (``"config"``) with everything a node needs for the round: the decoder
architecture, the local training settings and (for simulated nodes) how to generate their
synthetic user. A reply carries the ArrayRecord (train only) and a MetricRecord (``"metrics"``)
with ``num-examples`` (the weight of the reply in FedAvg) and the metrics below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord

from fl_app.decoder.discriminative import DiscriminativeConfig
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.training import TrainConfig
from fl_app.federation.fields import Fields
from fl_app.federation.run_config import RunConfig

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
NUM_EXAMPLES = "num-examples"
PROXIMAL_MU = "proximal-mu"  # added by Flower's FedProx.configure_train
MAX_EXAMPLES = (
    "max-examples"  # the server's num-examples cap: a node trains on its newest that many
)
# Reply metrics.
TRAIN_LOSS = "train-loss"
TRAIN_SECONDS = "train-seconds"
TRAIN_LR = "train-lr"  # the learning rate the round's clients trained with
TRAIN_WORD_LOSS = "train-word-loss"  # word-level local training: the truth's -log share
WORD_WEIGHT = "word-weight"  # the round config's train.word_weight (absent: 0, CTC only)
WORD_CANDIDATES = "word-candidates"
EVAL_LOSS = "eval-loss"
EVAL_TOP1 = "eval-top1"
# Node config keys (deployment: `flower-supernode --node-config "swipe-store='/abs/s.sqlite'"`).
NODE_STORE = "swipe-store"
NODE_PARTITION = "partition-id"  # set by the simulation engine
NODE_THREADS = "torch-threads"
STORES_DIR = "stores-dir"  # data=stores: the folder simulated nodes pick their store from
# The census (a "query" message): how many training swipes a node has, so nodes below the
# round's minimum are left out of sampling instead of failing.
TRAIN_SWIPES = "train-swipes"


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


@dataclass(frozen=True)
class RoundTask:
    """One round's instructions to a node, as read back from the ConfigRecord."""

    server_round: int
    decoder: DecoderSpec
    train: TrainConfig
    min_swipes: int
    data_seed: int
    swipes_per_user: int
    regime: str
    heldout_fraction: float
    cache_dir: str
    eval_max_swipes: int
    stores_dir: str = ""  # data=stores: partition p trains on the p-th store of this folder
    max_examples: int | None = None  # None: a server that sets no cap (older versions)
    word_weight: float = 0.0  # > 0: word-level local training (absent from older servers: 0)
    word_candidates: int = DiscriminativeConfig.candidates

    @classmethod
    def from_record(cls, config: ConfigRecord) -> RoundTask:
        """Read a round's ConfigRecord; a missing or mistyped key is a ValueError naming it."""
        fields = Fields(config, label="the server's round config")
        server_round = fields.integer("server-round") if fields.has("server-round") else 0
        return cls(
            server_round=server_round,
            decoder=DecoderSpec.from_manifest(json.loads(fields.text("decoder"))),
            train=TrainConfig(
                epochs=fields.number("epochs"),
                lr=fields.number("lr"),
                batch_size=fields.integer("batch-size"),
                weight_decay=fields.number("weight-decay"),
                grad_clip=fields.number("grad-clip"),
                mu=fields.number(PROXIMAL_MU) if fields.has(PROXIMAL_MU) else 0.0,
                seed=fields.integer("seed") + server_round,
            ),
            min_swipes=fields.integer("min-swipes"),
            data_seed=fields.integer("data-seed"),
            swipes_per_user=fields.integer("swipes-per-user"),
            regime=fields.text("regime"),
            heldout_fraction=fields.number("heldout-fraction"),
            cache_dir=fields.text("cache-dir"),
            eval_max_swipes=fields.integer("eval-max-swipes"),
            stores_dir=fields.text(STORES_DIR) if fields.has(STORES_DIR) else "",
            max_examples=fields.integer(MAX_EXAMPLES) if fields.has(MAX_EXAMPLES) else None,
            word_weight=fields.number(WORD_WEIGHT) if fields.has(WORD_WEIGHT) else 0.0,
            word_candidates=(
                fields.integer(WORD_CANDIDATES)
                if fields.has(WORD_CANDIDATES)
                else DiscriminativeConfig.candidates
            ),
        )


def round_config(cfg: RunConfig) -> ConfigRecord:
    """The ConfigRecord sent with every train and evaluate message of a run."""
    train, data = cfg.train, cfg.data
    return ConfigRecord(
        {
            "decoder": json.dumps(cfg.decoder.to_manifest(), sort_keys=True),
            "epochs": train.epochs,
            "lr": train.lr,
            "batch-size": train.batch_size,
            "weight-decay": train.weight_decay,
            "grad-clip": train.grad_clip,
            "seed": train.seed,
            "min-swipes": train.min_swipes,
            "data-seed": data.seed,
            "swipes-per-user": data.swipes_per_user,
            "regime": data.regime,
            "heldout-fraction": data.heldout_fraction,
            "cache-dir": str(data.cache_dir),
            "eval-max-swipes": cfg.evaluation.client_max_swipes,
            STORES_DIR: str(data.stores_dir) if data.kind == "stores" else "",
            MAX_EXAMPLES: cfg.reply_checks.max_num_examples,
            WORD_WEIGHT: train.word_weight,
            WORD_CANDIDATES: train.word_candidates,
        }
    )
