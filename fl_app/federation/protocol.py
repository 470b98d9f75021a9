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
from omegaconf import DictConfig

from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.training import TrainConfig
from fl_app.federation.config import decoder_spec

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
NUM_EXAMPLES = "num-examples"
PROXIMAL_MU = "proximal-mu"  # added by Flower's FedProx.configure_train
# Reply metrics.
TRAIN_LOSS = "train-loss"
TRAIN_SECONDS = "train-seconds"
TRAIN_LR = "train-lr"  # the learning rate the round's clients trained with
EVAL_LOSS = "eval-loss"
EVAL_TOP1 = "eval-top1"
# Node config keys (deployment: `flower-supernode --node-config "swipe-store='/abs/s.sqlite'"`).
NODE_STORE = "swipe-store"
NODE_PARTITION = "partition-id"  # set by the simulation engine
NODE_THREADS = "torch-threads"


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

    @classmethod
    def from_record(cls, config: ConfigRecord) -> RoundTask:
        try:
            server_round = int(config.get("server-round", 0))
            return cls(
                server_round=server_round,
                decoder=DecoderSpec.from_manifest(json.loads(str(config["decoder"]))),
                train=TrainConfig(
                    epochs=float(config["epochs"]),
                    lr=float(config["lr"]),
                    batch_size=int(config["batch-size"]),
                    weight_decay=float(config["weight-decay"]),
                    grad_clip=float(config["grad-clip"]),
                    mu=float(config.get(PROXIMAL_MU, 0.0)),
                    seed=int(config["seed"]) + server_round,
                ),
                min_swipes=int(config["min-swipes"]),
                data_seed=int(config["data-seed"]),
                swipes_per_user=int(config["swipes-per-user"]),
                regime=str(config["regime"]),
                heldout_fraction=float(config["heldout-fraction"]),
                cache_dir=str(config["cache-dir"]),
                eval_max_swipes=int(config["eval-max-swipes"]),
            )
        except KeyError as exc:
            raise ValueError(f"the server's round config lacks {exc}") from None


def round_config(cfg: DictConfig) -> ConfigRecord:
    """The ConfigRecord sent with every train and evaluate message of a run."""
    spec: DecoderSpec = decoder_spec(cfg)
    record = ConfigRecord(
        {
            "decoder": json.dumps(spec.to_manifest(), sort_keys=True),
            "epochs": float(cfg.train.epochs),
            "lr": float(cfg.train.lr),
            "batch-size": int(cfg.train.batch_size),
            "weight-decay": float(cfg.train.weight_decay),
            "grad-clip": float(cfg.train.grad_clip),
            "seed": int(cfg.train.seed),
            "min-swipes": int(cfg.train.min_swipes),
            "data-seed": int(cfg.data.seed),
            "swipes-per-user": int(cfg.data.swipes_per_user),
            "regime": str(cfg.data.regime),
            "heldout-fraction": float(cfg.data.heldout_fraction),
            "cache-dir": str(cfg.data.cache_dir),
            "eval-max-swipes": int(cfg.evaluation.client_max_swipes),
        }
    )
    return record
