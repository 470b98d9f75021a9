"""Hydra entry point: the same federation as `flwr run .`, configured from the command line.

    python -m fl_app.federation.experiment                                  # conf/ defaults
    python -m fl_app.federation.experiment strategy=fedprox strategy.mu=0.1 federation.num_rounds=5
    python -m fl_app.federation.experiment -m strategy=fedavg,fedadam       # a sweep: one run per point
    python -m fl_app.federation.experiment experiment=smoke                 # a named setup (conf/experiment/)

Each run simulates `simulation.num_supernodes` nodes with Flower's simulation engine
(`flwr.simulation.run_simulation`, the same ServerApp and ClientApp logic as `flwr run .`) and
writes metrics.jsonl and plot.png into its Hydra output folder (outputs/<date>/<time>/, or
multirun/<date>/<time>/<job>/ for sweeps). Sweep runs checkpoint under the prefix
`sweeps/<date>-<time>` (`checkpoints.prefix`) so they never move the main release pointer.
A sweeper that optimizes (e.g. Optuna) reads each run's best release metric (`evaluation.metric`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from fl_app.federation.config import ConfigError, conf_dir, finalize, refuse_renamed
from fl_app.federation.run_config import RunConfig
from fl_app.federation.server import RunSummary

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp

log = logging.getLogger(__name__)


class ExperimentFailed(RuntimeError):
    """The simulation ended without a finished run (its log says why)."""


def run_experiment(
    cfg: RunConfig,
    outputs_dir: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
    client_app: ClientApp | None = None,
) -> RunSummary:
    """Simulate the federation of `cfg` in this process; return the run's summary.

    `client_app`: the nodes' ClientApp (default: the project's; tests and bench/attack.py pass
    hostile variants, fl_app/federation/attacks.py)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    from flwr.simulation import run_simulation

    from fl_app.federation.client import make_client_app
    from fl_app.federation.server import make_server_app

    summaries: list[RunSummary] = []
    server = make_server_app(
        cfg, outputs_dir=outputs_dir, on_summary=summaries.append, echo=echo or log.info
    )
    backend = {
        "client_resources": {"num_cpus": cfg.simulation.client_cpus, "num_gpus": 0.0},
        "init_args": {"log_to_driver": True},
    }
    try:
        run_simulation(
            server_app=server,
            client_app=client_app or make_client_app(),
            num_supernodes=cfg.simulation.num_supernodes,
            backend_config=backend,
        )
    except Exception as exc:  # the ServerApp's own error, re-raised by the engine
        raise ExperimentFailed(f"the federation failed: {exc}") from exc
    if not summaries:
        raise ExperimentFailed("the federation did not finish (see the log above)")
    return summaries[0]


def _sweep_prefix(cfg: DictConfig) -> None:
    """Sweep runs checkpoint under their own prefix (never the main release pointer)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or cfg.checkpoints.get("prefix"):
        return
    sweep_dir = Path(hc.sweep.dir)
    stamp = f"{sweep_dir.parent.name}-{sweep_dir.name}".replace(":", "").replace("_", "-")
    with open_dict(cfg):
        cfg.checkpoints.prefix = f"sweeps/{stamp}"


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    logging.getLogger("flwr").propagate = False  # Flower prints its own log lines
    _sweep_prefix(cfg)
    out = HydraConfig.get().runtime.output_dir
    try:
        summary = run_experiment(finalize(cfg), outputs_dir=out)
    except (ConfigError, ExperimentFailed) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise
    best = summary.best_round()
    record = next((r for r in summary.records if r["round"] == best), None)
    # A sweeper that optimizes (e.g. Optuna) reads the return value: the best release metric.
    return float(record["central"][summary.metric]) if record else None


def cli(argv: list[str]) -> None:
    """Refuse renamed overrides (`store=s3`) with the new name before Hydra sees them."""
    try:
        refuse_renamed(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    main()


if __name__ == "__main__":
    cli(sys.argv[1:])
