"""The ServerApp: run the federation, evaluate, checkpoint and release every round.

`run_federation` is the whole server side of a run; `flwr run .` (server_app.py) and
`python -m fl_app.federation.experiment` both call it. Per round, after Flower's train and federated
evaluate steps, `RoundRecorder` (the strategy's `evaluate_fn`, also called for round 0):

1. evaluates the global model centrally on held-out synthetic users (top-1, top-4, MRR, loss);
2. writes a checkpoint through `ResilientCheckpointWriter` (tensors, FedAdam state, manifest);
3. moves the release pointer if the round's release metric (`evaluation.metric`, default top-1)
   is the best of the run so far (never a pinned pointer; never for a round where fewer than
   `min_success_share` of the clients succeeded);
4. appends a JSON line to metrics.jsonl and prints one progress line.

At the end it flushes pending checkpoint writes, plots metrics.jsonl and prints a summary,
including anything the store did not take.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fl_app.checkpoints import (
    CheckpointStore,
    ResilientCheckpointWriter,
    checkpoint_path,
    store_from_config,
)
from fl_app.decoder.spec import DecoderSpec, load_arrays, model_arrays
from fl_app.federation import protocol as P
from fl_app.federation.config import compose, finalize, public_config, run_overrides
from fl_app.federation.data import spec_lexicon
from fl_app.federation.evaluation import (
    Evaluator,
    Incumbent,
    describe_evaluation,
    dev_swipes,
    evaluation_swipes,
    incumbent_measure,
)
from fl_app.federation.metrics import (
    METRICS_FILE,
    PLOT_FILE,
    append_line,
    plot_metrics,
    progress_line,
    read_lines,
)
from fl_app.federation.resume import (
    ResumePoint,
    choose_run_id,
    load_resume_point,
)
from fl_app.federation.run_config import (
    INIT_BASE,
    CheckpointsConfig,
    ReleaseMetric,
    RunConfig,
    S3Checkpoints,
)
from fl_app.federation.strategies import (
    STATE_FILE,
    RoundBookkeeping,
    RoundLedger,
    build_strategy,
    has_server_state,
    restore_state,
    save_state,
)

log = logging.getLogger(__name__)

METRIC_LABELS: dict[ReleaseMetric, str] = {"top1": "top-1", "top4": "top-4", "mrr": "MRR"}


def make_store(checkpoints: CheckpointsConfig) -> CheckpointStore:
    """The checkpoint store of `checkpoints` (S3 endpoint and credentials from the environment)."""
    where = checkpoints.location
    if isinstance(where, S3Checkpoints):
        return store_from_config(
            "s3",
            prefix=where.prefix,
            connect_timeout=where.connect_timeout,
            read_timeout=where.read_timeout,
            max_attempts=where.max_attempts,
            max_retry_s=where.max_retry_s,
        )
    return store_from_config("local", root=where.root, prefix=where.prefix)


@dataclass
class RunSummary:
    """What a run did; `run_federation` returns it and prints it."""

    run_id: str
    store: str
    outputs: Path
    metric: ReleaseMetric  # evaluation.metric: what the release and `best_round` compare
    rounds: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    incumbent: Incumbent | None = None  # what the run's releases had to beat
    dev: dict[str, float] | None = None  # evaluation.source=real: the best round on dev users
    not_stored: list[dict[str, Any]] = field(default_factory=list)
    failed_writes: list[dict[str, Any]] = field(default_factory=list)
    plot: Path | None = None

    @property
    def metrics_path(self) -> Path:
        return self.outputs / METRICS_FILE

    def best_round(self) -> int | None:
        """The first round with the best release metric (the round a release would name)."""
        key = self.metric
        scored = [r for r in self.records if isinstance(r["central"].get(key), float)]
        return max(scored, key=lambda r: r["central"][key])["round"] if scored else None


class RoundRecorder:
    """The strategy's `evaluate_fn`: evaluate, checkpoint, release, log (module docstring)."""

    def __init__(
        self,
        cfg: RunConfig,
        spec: DecoderSpec,
        ledger: RoundLedger,
        strategy: RoundBookkeeping,
        writer: ResilientCheckpointWriter,
        evaluator: Callable[[dict[str, Any]], dict[str, float]],
        summary: RunSummary,
        resume: ResumePoint | None,
        echo: Callable[[str], None],
        incumbent: Callable[[], Incumbent] | None = None,
    ) -> None:
        """`incumbent` measures what devices serve now (default: nothing to beat)."""
        self.cfg, self.spec, self.ledger, self.strategy = cfg, spec, ledger, strategy
        self.measure_incumbent = incumbent or (lambda: Incumbent("none", None))
        self.writer, self.evaluator, self.summary, self.resume = writer, evaluator, summary, resume
        self.echo = echo
        self.run_id = summary.run_id
        self.config = public_config(cfg)
        self.lexicon_id = spec_lexicon(spec).lexicon_id
        self.num_rounds = ledger.offset + cfg.federation.num_rounds
        self.parent: str | None = resume.path if resume is not None else None
        self.t_last = time.perf_counter()
        self.best: tuple[float, dict[str, Any]] | None = None  # (metric, tensors) of the best round

    def _must_beat(self) -> float | None:
        """The current release's score on this run's swipes, measured when the first release
        check runs (a check pending in an outage measures it once the store is back; an outage
        raises StoreUnavailable and nothing is cached)."""
        if self.summary.incumbent is None:
            incumbent = self.measure_incumbent()
            self.summary.incumbent = incumbent
            score = incumbent.floor(self.cfg.evaluation.metric)
            self.echo(
                f"  releases must beat the current release ({incumbent.label}): "
                + (
                    "nothing to beat"
                    if score is None
                    else f"{self.cfg.evaluation.metric} {score:.3f}"
                )
            )
        return self.summary.incumbent.floor(self.cfg.evaluation.metric)

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        rnd = self.ledger.global_round(server_round)
        tensors = P.from_record(arrays)
        central = self.evaluator(tensors)
        score = central[self.cfg.evaluation.metric]
        if self.best is None or score > self.best[0]:
            self.best = (score, tensors)
        outcome = self.ledger.train.get(rnd) if server_round > 0 else None
        federated = self.ledger.federated_eval.get(rnd, {}) if server_round > 0 else {}
        accepted = outcome.accepted if outcome is not None else None
        metrics: dict[str, Any] = {
            **{k: central[k] for k in ("top1", "top4", "mrr")},
            "central_loss": central["loss"],
            "eval_swipes": central["n"],
            "accepted": accepted,
        }
        if outcome is not None:
            metrics.update(
                clients_sampled=outcome.sampled,
                clients_ok=outcome.ok,
                clients_failed=outcome.failed,
                clients_rejected=outcome.rejected,
                train_loss=outcome.metrics.get(P.TRAIN_LOSS),
            )
        if federated:
            metrics.update(
                federated_loss=federated.get(P.EVAL_LOSS),
                federated_top1=federated.get(P.EVAL_TOP1),
            )

        # 1. checkpoint (skipped for the resumed round itself when continuing in place)
        path = checkpoint_path(self.run_id, rnd)
        stored: bool | None = None
        continuing_in_place = (
            server_round == 0 and self.resume is not None and self.resume.run_id == self.run_id
        )
        if not continuing_in_place:
            manifest = {
                "decoder": self.spec.to_manifest(),
                "lexicon_id": self.lexicon_id,
                "strategy": self.cfg.strategy.name,
                "config": self.config,
                "metrics": metrics,
                "parent": self.parent,
            }
            extra = {}
            state = save_state(self.strategy)
            if state is not None:
                extra[STATE_FILE] = state
            stored = self.writer.save(self.run_id, rnd, tensors, manifest, extra) is not None
            self.parent = path

        # 2. release: only trained rounds that met the success share
        released: bool | None = False
        note = ""
        if server_round == 0:
            note = "resumed model" if self.resume is not None else "initial model"
        elif not accepted:
            assert outcome is not None
            note = "NO RELEASE: " + (
                outcome.kept_reason
                or f"{outcome.ok}/{outcome.sampled} clients succeeded "
                f"(< {self.ledger.min_success_share:.0%}); model kept"
            )
            self.summary.rejected.append(rnd)
            for reason in outcome.errors[:3]:
                self.echo(f"  client error: {reason}")
        else:
            rejections = outcome.errors[len(outcome.errors) - outcome.rejected :]
            for reason in rejections[:3]:  # replies refused in a round that still aggregated
                self.echo(f"  {reason}")
            released = self.writer.auto_release(
                self.run_id,
                rnd,
                metrics,
                self.cfg.evaluation.metric,
                must_beat=self._must_beat,
            )
            if released:
                self.summary.released.append(rnd)
            elif released is None:
                note = "release check pending (store unavailable)"

        now = time.perf_counter()
        record = {
            "run_id": self.run_id,
            "round": rnd,
            "seconds": now - self.t_last,
            "clients": {
                "sampled": outcome.sampled if outcome else 0,
                "ok": outcome.ok if outcome else 0,
                "failed": outcome.failed if outcome else 0,
                "rejected": outcome.rejected if outcome else 0,  # by the reply checks
                "clipped": outcome.clipped if outcome else 0,
            },
            "failures": list(outcome.errors) if outcome else [],  # each failed client's reason
            "accepted": accepted,
            "released": bool(released),
            "central": central,
            "federated": federated,
            "census": self.ledger.census.get(rnd),
            "train": dict(outcome.metrics) if outcome else {},
            "checkpoint": path,
            "stored": stored,
            "note": note,
        }
        self.t_last = now
        append_line(self.summary.metrics_path, record)
        self.summary.rounds.append(rnd)
        self.summary.records.append(record)
        self.echo(progress_line(record, self.num_rounds))
        return MetricRecord({k: float(central[k]) for k in ("top1", "top4", "mrr", "loss")})


def _echo(line: str) -> None:
    print(line, flush=True)
    log.info(line)


def run_federation(
    grid: Grid,
    cfg: RunConfig,
    *,
    outputs_dir: str | Path | None = None,
    echo: Callable[[str], None] = _echo,
) -> RunSummary:
    """Run the federation described by `cfg` on `grid` (see the module docstring)."""
    random.seed(cfg.train.seed)  # Flower samples nodes with the `random` module
    torch.manual_seed(cfg.train.seed)
    spec = cfg.decoder
    store = make_store(cfg.checkpoints)

    resume = None
    if cfg.resume.run_id is not None:
        resume = load_resume_point(store, cfg.resume.run_id, cfg.resume.round, spec)
    run_id = choose_run_id(cfg, store, resume)
    cfg = cfg.with_run_id(run_id)
    outputs = Path(outputs_dir) if outputs_dir is not None else cfg.paths.outputs / run_id
    summary = RunSummary(
        run_id=run_id, store=store.describe(), outputs=outputs, metric=cfg.evaluation.metric
    )

    ledger = RoundLedger(
        offset=resume.round if resume is not None else 0,
        min_success_share=cfg.federation.min_success_share,
    )
    strategy = build_strategy(cfg, ledger)
    name = cfg.strategy.name
    if resume is not None and resume.strategy_state is not None:
        if has_server_state(strategy):
            restore_state(strategy, resume.strategy_state)
            echo(f"restored {name} server state from {resume.path}/{STATE_FILE}")
        else:
            echo(f"note: {resume.path} has server-side state that {name} does not use")
    elif resume is not None and has_server_state(strategy):
        echo(f"note: {resume.path} has no server state; {name} starts its moments at 0")

    model = spec.build_model(seed=cfg.train.seed, device=torch.device("cpu"))
    if resume is not None:
        load_arrays(model, resume.arrays)
    elif cfg.init == INIT_BASE:
        load_arrays(model, base_tensors(cfg))
    writer = ResilientCheckpointWriter(
        store, max_wait_s=cfg.checkpoints.max_wait_s, spool_dir=cfg.checkpoints.spool_dir
    )
    start = (
        f"from {resume.path}"
        if resume is not None
        else (f"from the base {cfg.init_dir}" if cfg.init == INIT_BASE else "from a fresh model")
    )
    echo(
        f"run {run_id}: strategy {name}, {cfg.federation.num_rounds} round(s) "
        f"{start}; checkpoints -> {store.describe()}; metrics -> {outputs}"
    )
    swipes = evaluation_swipes(cfg, spec)
    echo(f"  every round is measured on {describe_evaluation(cfg, len(swipes))}")
    recorder = RoundRecorder(
        cfg, spec, ledger, strategy, writer, Evaluator(spec, swipes), summary, resume, echo,
        incumbent=incumbent_measure(cfg, store, swipes, spec.language),
    )  # fmt: skip
    strategy.start(
        grid=grid,
        initial_arrays=P.to_record(model_arrays(model)),
        num_rounds=cfg.federation.num_rounds,
        timeout=cfg.federation.round_timeout_s,
        train_config=P.round_config(cfg),
        evaluate_config=P.round_config(cfg),
        evaluate_fn=recorder,
    )
    if cfg.evaluation.source == "real" and cfg.evaluation.report_dev and recorder.best:
        summary.dev = Evaluator(spec, dev_swipes())(recorder.best[1])
        append_line(summary.metrics_path, {"run_id": run_id, "report": "dev", **summary.dev})
        echo(
            f"dev users (report only): top-1 {summary.dev['top1']:.3f} top-4 "
            f"{summary.dev['top4']:.3f} on {summary.dev['n']} swipes (best round)"
        )
    _finish(cfg, writer, summary, echo)
    return summary


def base_tensors(cfg: RunConfig) -> dict[str, Any]:
    """The base's tensors (the shipped base, or `init_from`), checked against the digest the
    run config recorded."""
    from fl_app.checkpoints.format import read_checkpoint_dir

    assert cfg.init_dir is not None
    tensors, manifest = read_checkpoint_dir(cfg.init_dir)
    if manifest["sha256"] != cfg.init_sha256:
        raise ValueError(f"{cfg.init_dir} changed between composing the config and the run")
    return tensors


def _finish(
    cfg: RunConfig,
    writer: ResilientCheckpointWriter,
    summary: RunSummary,
    echo: Callable[[str], None],
) -> None:
    flushed = writer.flush(cfg.checkpoints.flush_s)
    summary.not_stored = writer.pending()
    summary.failed_writes = writer.failed()
    try:
        summary.plot = plot_metrics(
            read_lines(summary.metrics_path),
            summary.outputs / PLOT_FILE,
            title=f"run {summary.run_id} ({cfg.strategy.name})",
        )
    except Exception as exc:  # a plot is not worth failing a finished run for
        log.exception("could not plot %s", summary.metrics_path)
        echo(f"plot failed: {exc}")
    best = summary.best_round()
    echo(
        f"run {summary.run_id} finished: rounds {summary.rounds[0]}..{summary.rounds[-1]}, "
        f"best centralized {METRIC_LABELS[summary.metric]} at round {best}; "
        f"released rounds {summary.released or 'none'}"
        + (
            f"; rounds without release (too few clients): {summary.rejected}"
            if summary.rejected
            else ""
        )
    )
    echo(f"checkpoints: {summary.store} (runs/{summary.run_id}/)")
    echo(f"metrics: {summary.metrics_path}")
    if summary.plot is not None:
        echo(f"plot: {summary.plot}")
    if not flushed or summary.failed_writes:
        echo("NOT STORED:\n" + writer.report())


def make_server_app(
    cfg: RunConfig | None = None,
    *,
    conf_dir: str | Path | None = None,
    outputs_dir: str | Path | None = None,
    on_summary: Callable[[RunSummary], None] | None = None,
    echo: Callable[[str], None] = _echo,
) -> ServerApp:
    """The ServerApp. Without `cfg` it composes conf/ with the Flower run config's overrides."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            run_cfg = cfg
            if run_cfg is None:
                run_cfg = finalize(compose(run_overrides(context.run_config), config_dir=conf_dir))
            summary = run_federation(grid, run_cfg, outputs_dir=outputs_dir, echo=echo)
        except Exception as exc:
            print(f"federation failed: {exc}", file=sys.stderr, flush=True)
            raise
        if on_summary is not None:
            on_summary(summary)

    return app
