"""Runs on a deployment, through the Flower CLI: ``flwr run`` with Hydra overrides, ``flwr list``
for a run's status, ``flwr log`` for its output, and what a finished run left behind.

A failed Flower run still exits 0 from ``flwr run``: only its status (``finished:completed``)
says whether it completed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_app.checkpoints.base import new_run_id

from . import tls
from .errors import DeployError
from .layout import Layout
from .processes import BIN, signal_group
from .state import SubmittedRun, utc_now

CONNECTION = "swipefl-deploy"  # the connection's name in <state>/flwr-home/config.toml


@dataclass
class RunResult:
    """One `flwr run` against the deployment, after it finished (or timed out)."""

    flwr_run_id: str
    run_id: str  # swipe-fl's run id: checkpoints runs/<run_id>/, metrics under runs/<run_id>/
    status: str  # finished:completed | finished:failed | finished:stopped | ... | timeout
    details: str
    log_path: Path
    metrics_path: Path
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "finished:completed"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def records(self) -> list[dict[str, Any]]:
        from fl_app.federation.metrics import read_lines

        return read_lines(self.metrics_path)


def connection_config(layout: Layout) -> str:
    """The CLI's ``config.toml``: this deployment's SuperLink as the default connection."""
    if layout.secure:
        security = f'root-certificates = "{layout.tls_dir / tls.CA_CERT}"'
    else:
        security = "insecure = true"
    return (
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{layout.superlink_address}"\n{security}\n'
    )


def experiment_config(app_dir: str | Path, experiment: str) -> Any:
    """The app's conf/ composed with the deployment's experiment (what a run starts from)."""
    from fl_app.federation.config import ConfigError, compose

    try:
        return compose([f"experiment={experiment}"], config_dir=Path(app_dir) / "conf")
    except ConfigError as exc:
        raise DeployError(str(exc)) from None


def flwr(layout: Layout, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The Flower CLI against this deployment's SuperLink (its own FLWR_HOME)."""
    return subprocess.run(
        [str(BIN / "flwr"), *args],
        cwd=layout.state.app_dir,
        env=_cli_env(layout),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def deployment_overrides(layout: Layout) -> list[str]:
    """The Hydra overrides every run of this deployment starts with: its experiment, paths,
    node counts and checkpoint store (the one place the deployment names config keys)."""
    settings = layout.state.settings
    out = [
        f"experiment={settings.experiment}",
        f"paths.root={layout.state.app_dir}",
        f"paths.outputs={layout.runs_dir}",
        f"federation.min_available_nodes={settings.nodes}",
        f"federation.min_train_nodes={settings.nodes}",
    ]
    if settings.store == "s3":
        out.append("checkpoints=s3")
    else:
        out += ["checkpoints=local", f"checkpoints.root={layout.checkpoints_dir}"]
    return out


def run_overrides(
    layout: Layout, overrides: Iterable[str] = (), run_id: str | None = None
) -> list[str]:
    """The Hydra overrides of a run: the deployment's, then the caller's (which win)."""
    out = [*deployment_overrides(layout), f"run_id={run_id or new_run_id('deploy')}", *overrides]
    for item in out:
        if "'" in item:
            raise DeployError(f"overrides may not contain single quotes: {item}")
    return out


def submit(
    layout: Layout, overrides: Iterable[str] = (), run_id: str | None = None
) -> tuple[str, str]:
    """`flwr run` the app against the deployment; returns (Flower run id, swipe-fl run id)."""
    items = run_overrides(layout, overrides, run_id)
    run_id = next(i.split("=", 1)[1] for i in reversed(items) if i.startswith("run_id="))
    value = " ".join(_quote(i) for i in items)
    out = flwr(
        layout,
        "run",
        str(layout.state.app_dir),
        CONNECTION,
        "--format",
        "json",
        "--run-config",
        f"overrides='{value}'",
    )
    try:
        started = json.loads(out.stdout)
        flwr_run_id = str(started["run-id"])
    except (ValueError, KeyError, TypeError):
        raise DeployError(f"flwr run did not start a run: {out.stdout}{out.stderr}") from None
    layout.state.runs.append(SubmittedRun(flwr_run_id, run_id, utc_now()))
    layout.save()
    return flwr_run_id, run_id


def run_status(layout: Layout, flwr_run_id: str) -> tuple[str, str]:
    """(status, details) of one Flower run, as ``flwr list`` reports them."""
    out = flwr(layout, "list", CONNECTION, "--run-id", flwr_run_id, "--format", "json")
    try:
        runs = json.loads(out.stdout).get("runs") or [{}]
    except ValueError:
        return "", out.stdout + out.stderr
    return str(runs[0].get("status", "")), str(runs[0].get("status-details", ""))


def list_runs(layout: Layout) -> list[dict[str, Any]] | None:
    """Every run the SuperLink knows (id, status, elapsed, details); None if unreadable."""
    res = flwr(layout, "list", CONNECTION, "--format", "json")
    try:
        runs = json.loads(res.stdout).get("runs", [])
    except ValueError:
        return None
    return [{k: r.get(k) for k in ("run-id", "status", "elapsed", "status-details")} for r in runs]


def wait_for_run(
    layout: Layout, flwr_run_id: str, run_id: str, timeout_s: float = 900.0
) -> RunResult:
    """Stream the run's log to `<state>/runs/flwr-<id>.log` until it ends; check its status."""
    t0 = time.monotonic()
    log_path = layout.runs_dir / f"flwr-{flwr_run_id}.log"
    with open(log_path, "wb") as log:
        streamer = subprocess.Popen(
            [str(BIN / "flwr"), "log", flwr_run_id, CONNECTION, "--stream"],
            cwd=layout.state.app_dir,
            env=_cli_env(layout),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            streamer.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(streamer.pid, signal.SIGKILL)
            streamer.wait()
    status, details = "", ""
    deadline = t0 + timeout_s + 60.0
    while time.monotonic() < deadline:
        status, details = run_status(layout, flwr_run_id)
        if status.startswith("finished:"):
            break
        time.sleep(3.0)
    else:
        status = status or "timeout"
    full = flwr(layout, "log", flwr_run_id, CONNECTION, "--show")  # the whole log, once more
    if full.returncode == 0 and len(full.stdout) > log_path.stat().st_size:
        log_path.write_text(full.stdout)
    return RunResult(
        flwr_run_id,
        run_id,
        status,
        details,
        log_path,
        layout.runs_dir / run_id / "metrics.jsonl",
        time.monotonic() - t0,
    )


def _cli_env(layout: Layout) -> dict[str, str]:
    return layout.env("flwr-cli", {"FLWR_HOME": str(layout.flwr_home)})


def _quote(item: str) -> str:
    """One Hydra override inside the run config's single-quoted TOML string."""
    if not any(c.isspace() or c in '"' for c in item):
        return item
    return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
