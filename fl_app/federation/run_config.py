"""The typed run config: every setting a run reads, checked once, so no module casts.

`config.finalize` composes and resolves `conf/` into plain data (what every manifest records,
verbatim) and reads it into these frozen dataclasses with `read_run_config`. The server, the
strategies, the protocol, the data helpers and the benchmarks read attributes of the right type.

Why frozen dataclasses and not Hydra structured configs: manifests must keep the composed values
exactly as today (an override `train.epochs=1` stays the integer 1 there); groups whose options
differ in shape (`strategy`, `checkpoints`) are tagged unions, which OmegaConf schemas cannot
express; and a hand-added key (a misplaced secret) must still compose, so that redaction rather
than composition deals with it. Reading the plain data once gives all three.

Adding a choice: one dataclass per option, a union type, and one branch in its reader keyed on
the group's discriminating key (`strategy.name`, `checkpoints.kind`). `data=stores`, `init=`,
`aggregation=` or `evaluation.source` slot in the same way; a `match` on the union shows every
reader which options exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from fl_app.decoder.features import RESAMPLE_MODES
from fl_app.decoder.ranking import FusionWeights
from fl_app.decoder.spec import DecoderSpec
from fl_app.decoder.spec_bounds import DecoderSpecError
from fl_app.decoder.template import TemplateParams
from fl_app.federation.fields import Fields
from fl_app.federation.robust_config import (
    AggregationConfig,
    ReplyChecks,
    read_aggregation,
    read_reply_checks,
)

Init = Literal["base", "random"]
EvaluationSource = Literal["synthetic", "real"]
LrSchedule = Literal["constant", "cosine"]
ReleaseMetric = Literal["top1", "top4", "mrr"]
# What a release must beat: `served`, what devices serve now (the current release, or the shipped
# base before any); `release`, only an earlier release (the shipped base does not count); `none`.
MustBeat = Literal["served", "release", "none"]
Regime = Literal["train", "shifted"]
INITS: tuple[Init, ...] = get_args(Init)
INIT_BASE: Init = "base"
EVALUATION_SOURCES: tuple[EvaluationSource, ...] = get_args(EvaluationSource)
LR_SCHEDULES: tuple[LrSchedule, ...] = get_args(LrSchedule)
RELEASE_METRICS: tuple[ReleaseMetric, ...] = get_args(ReleaseMetric)
MUST_BEAT: tuple[MustBeat, ...] = get_args(MustBeat)
REGIMES: tuple[Regime, ...] = get_args(Regime)


class ConfigError(ValueError):
    """The composed configuration is unusable (the message names the key)."""


@dataclass(frozen=True)
class PathsConfig:
    root: Path  # absolute: relative paths of the config resolve against it
    outputs: Path  # per-run metrics.jsonl and plot.png: <outputs>/<run_id>/


@dataclass(frozen=True)
class FedAvgConfig:
    name: ClassVar[str] = "fedavg"


@dataclass(frozen=True)
class FedProxConfig:
    name: ClassVar[str] = "fedprox"
    mu: float  # clients add mu/2 * ||w - w_global||^2 to their loss


@dataclass(frozen=True)
class FedAdamConfig:
    name: ClassVar[str] = "fedadam"
    eta: float
    eta_l: float
    beta_1: float
    beta_2: float
    tau: float


StrategyConfig = FedAvgConfig | FedProxConfig | FedAdamConfig
STRATEGIES = (FedAvgConfig.name, FedProxConfig.name, FedAdamConfig.name)


@dataclass(frozen=True)
class FederationConfig:
    num_rounds: int
    fraction_train: float
    fraction_evaluate: float
    min_train_nodes: int
    min_evaluate_nodes: int
    min_available_nodes: int
    min_success_share: float  # fewer successful sampled clients: no update, no release
    round_timeout_s: float
    census_every: int  # ask nodes their training swipes every this many rounds (0: never)


@dataclass(frozen=True)
class ClientTraining:
    """`train.*`: the local training settings sent to the clients every round."""

    epochs: float
    lr: float
    lr_schedule: LrSchedule
    batch_size: int
    weight_decay: float
    grad_clip: float
    min_swipes: int
    seed: int
    word_weight: float  # > 0: the word-level objective on the node's close calls
    word_candidates: int


@dataclass(frozen=True)
class EvaluationConfig:
    """`evaluation.*`: the server's own measurement of every round (and the release rule's)."""

    source: EvaluationSource  # synthetic held-out users, or real public-val users
    users: int  # synthetic: held-out users ...
    swipes_per_user: int  # ... and swipes each
    seed_offset: int  # held-out user seeds: data.seed + seed_offset + i
    real_swipes: int  # real: a fixed subsample of public-val, stratified by user
    report_dev: bool  # real: measure the best round on the dev users at the end (report only)
    metric: ReleaseMetric  # the release metric (higher is better)
    must_beat: MustBeat  # what a release must beat on this run's swipes
    client_max_swipes: int


DataKind = Literal["synthetic", "stores"]
DEFAULT_CENSUS_EVERY = 10
DATA_KINDS: tuple[DataKind, ...] = get_args(DataKind)


@dataclass(frozen=True)
class DataConfig:
    """What a simulated node p trains on: `data=synthetic`, synthetic user `seed + p`; or
    `data=stores`, the p-th swipe store (by file name) of `stores_dir`. A deployed node names
    its own store (node config `swipe-store`) and reads only the language and lexicon here."""

    kind: DataKind
    stores_dir: Path | None  # absolute; data=stores
    language: str
    lexicon_size: int
    seed: int
    swipes_per_user: int
    regime: Regime
    heldout_fraction: float
    cache_dir: Path  # absolute


@dataclass(frozen=True)
class ResumeConfig:
    run_id: str | None
    round: int | None


@dataclass(frozen=True)
class LocalCheckpoints:
    kind: ClassVar[str] = "local"
    root: Path  # absolute
    prefix: str


@dataclass(frozen=True)
class S3Checkpoints:
    """Endpoint, bucket and credentials come from the environment only (SWIPEFL_S3_*)."""

    kind: ClassVar[str] = "s3"
    prefix: str
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    max_retry_s: float


CheckpointLocation = LocalCheckpoints | S3Checkpoints
CHECKPOINT_KINDS = (LocalCheckpoints.kind, S3Checkpoints.kind)


@dataclass(frozen=True)
class CheckpointsConfig:
    location: CheckpointLocation
    max_wait_s: float  # how long one save may wait before the checkpoint stays pending
    flush_s: float  # at the end of the run, how long to retry pending writes
    spool_dir: Path | None


@dataclass(frozen=True)
class SimulationConfig:
    num_supernodes: int
    client_cpus: float


@dataclass(frozen=True)
class RunConfig:
    """One run's settings; `resolved` is the plain data they were read from (for manifests)."""

    run_id: str | None
    init: Init  # base: start from the shipped base (its decoder spec); random: from `seed`
    init_sha256: str | None  # init=base: the base's tensors file digest
    init_dir: Path | None  # init=base: the checkpoint folder it starts from
    paths: PathsConfig
    decoder: DecoderSpec  # the model group with data.language and data.lexicon_size
    strategy: StrategyConfig
    federation: FederationConfig
    train: ClientTraining
    evaluation: EvaluationConfig
    data: DataConfig
    resume: ResumeConfig
    checkpoints: CheckpointsConfig
    simulation: SimulationConfig
    aggregation: AggregationConfig
    reply_checks: ReplyChecks
    resolved: dict[str, Any] = field(repr=False, compare=False)

    def with_run_id(self, run_id: str) -> RunConfig:
        """The same run under `run_id` (the resolved data, and so the manifests, say so too)."""
        return read_run_config({**self.resolved, "run_id": run_id})


def read_run_config(plain: dict[str, Any]) -> RunConfig:
    """Read resolved plain config data into a `RunConfig` (ConfigError names a bad key)."""
    top = Fields(plain, error=ConfigError)
    data = _data(top.section("data"))
    paths, resume, simulation = (
        top.section("paths"),
        top.section("resume"),
        top.section("simulation"),
    )
    init = top.choice("init", INITS)
    return RunConfig(
        run_id=top.optional_text("run_id"),
        init=init,
        init_sha256=top.section("init_checkpoint").text("sha256") if init == INIT_BASE else None,
        init_dir=top.section("init_checkpoint").path("dir") if init == INIT_BASE else None,
        paths=PathsConfig(root=paths.path("root"), outputs=paths.path("outputs")),
        decoder=_decoder(top.section("model"), data),
        strategy=_strategy(top.section("strategy")),
        federation=_federation(top.section("federation"), data),
        train=_train(top.section("train")),
        evaluation=_evaluation(top.section("evaluation")),
        data=data,
        resume=ResumeConfig(
            run_id=resume.optional_text("run_id"), round=resume.optional_integer("round")
        ),
        checkpoints=_checkpoints(top.section("checkpoints")),
        simulation=SimulationConfig(
            num_supernodes=simulation.integer("num_supernodes"),
            client_cpus=simulation.number("client_cpus"),
        ),
        aggregation=read_aggregation(top.section("aggregation")),
        reply_checks=read_reply_checks(top.section("reply_checks")),
        resolved=plain,
    )


def _decoder(model: Fields, data: DataConfig) -> DecoderSpec:
    """The model group (+ the base's decoding weights, which `init=base` writes in)."""
    weights = {}
    if model.has("template"):
        weights["template"] = TemplateParams(**model.mapping("template"))
    if model.has("fusion"):
        weights["fusion"] = FusionWeights(**model.mapping("fusion"))
    spec = DecoderSpec(
        language=data.language,
        lexicon_size=data.lexicon_size,
        conv_channels=model.integer("conv_channels"),
        hidden=model.integer("hidden"),
        gru_layers=model.integer("gru_layers"),
        dropout=model.number("dropout"),
        # configs written before the choice (a resumed run's) resampled in time
        resample=model.choice("resample", RESAMPLE_MODES) if model.has("resample") else "time",
        **weights,
    )
    try:  # the bounds every reader of a manifest applies: refuse here, not on every client
        return spec.check()
    except DecoderSpecError as exc:
        raise ConfigError(f"config model: {exc}") from None


def _strategy(s: Fields) -> StrategyConfig:
    name = s.choice("name", STRATEGIES)
    if name == FedProxConfig.name:
        return FedProxConfig(mu=s.number("mu"))
    if name == FedAdamConfig.name:
        return FedAdamConfig(
            eta=s.number("eta"),
            eta_l=s.number("eta_l"),
            beta_1=s.number("beta_1"),
            beta_2=s.number("beta_2"),
            tau=s.number("tau"),
        )
    return FedAvgConfig()


def _federation(f: Fields, data: DataConfig) -> FederationConfig:
    census_every = f.optional_integer("census_every")
    if census_every is None:  # real devices: some cannot train a round; synthetic users all can
        census_every = DEFAULT_CENSUS_EVERY if data.kind == "stores" else 0
    return FederationConfig(
        num_rounds=f.integer("num_rounds"),
        fraction_train=f.number("fraction_train"),
        fraction_evaluate=f.number("fraction_evaluate"),
        min_train_nodes=f.integer("min_train_nodes"),
        min_evaluate_nodes=f.integer("min_evaluate_nodes"),
        min_available_nodes=f.integer("min_available_nodes"),
        min_success_share=f.number("min_success_share"),
        round_timeout_s=f.number("round_timeout_s"),
        census_every=census_every,
    )


def _train(t: Fields) -> ClientTraining:
    return ClientTraining(
        epochs=t.number("epochs"),
        lr=t.number("lr"),
        lr_schedule=t.choice("lr_schedule", LR_SCHEDULES),
        batch_size=t.integer("batch_size"),
        weight_decay=t.number("weight_decay"),
        grad_clip=t.number("grad_clip"),
        min_swipes=t.integer("min_swipes"),
        seed=t.integer("seed"),
        word_weight=t.number("word_weight"),
        word_candidates=t.integer("word_candidates"),
    )


def _evaluation(e: Fields) -> EvaluationConfig:
    return EvaluationConfig(
        source=e.choice("source", EVALUATION_SOURCES),
        users=e.integer("users"),
        swipes_per_user=e.integer("swipes_per_user"),
        seed_offset=e.integer("seed_offset"),
        real_swipes=e.integer("real_swipes"),
        report_dev=e.boolean("report_dev"),
        metric=e.choice("metric", RELEASE_METRICS),
        must_beat=e.choice("must_beat", MUST_BEAT),
        client_max_swipes=e.integer("client_max_swipes"),
    )


def _data(d: Fields) -> DataConfig:
    return DataConfig(
        kind=d.choice("kind", DATA_KINDS),
        stores_dir=d.optional_path("stores_dir"),
        language=d.text("language"),
        lexicon_size=d.integer("lexicon_size"),
        seed=d.integer("seed"),
        swipes_per_user=d.integer("swipes_per_user"),
        regime=d.choice("regime", REGIMES),
        heldout_fraction=d.number("heldout_fraction"),
        cache_dir=d.path("cache_dir"),
    )


def _checkpoints(c: Fields) -> CheckpointsConfig:
    kind = c.choice("kind", CHECKPOINT_KINDS)
    prefix = c.optional_text("prefix") or ""
    location: CheckpointLocation
    if kind == S3Checkpoints.kind:
        location = S3Checkpoints(
            prefix=prefix,
            connect_timeout=c.number("connect_timeout"),
            read_timeout=c.number("read_timeout"),
            max_attempts=c.integer("max_attempts"),
            max_retry_s=c.number("max_retry_s"),
        )
    else:
        location = LocalCheckpoints(root=c.path("root"), prefix=prefix)
    return CheckpointsConfig(
        location=location,
        max_wait_s=c.number("max_wait_s"),
        flush_s=c.number("flush_s"),
        spool_dir=c.optional_path("spool_dir"),
    )
