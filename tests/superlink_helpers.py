"""A real simulation SuperLink for tests, and the `flwr` CLI against it.

`simulation_superlink(tmp, extra_env)` starts `flower-superlink --insecure --simulation` on a
free loopback port with its own FLWR_HOME (connection name "t"), waits for /health, yields the
environment to run `flwr` with, and stops the SuperLink's process group at the end. The
SuperLink keeps the environment of its start (the ServerApp and ClientApps run in it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONNECTION = "t"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def simulation_superlink(tmp: Path, extra_env: Mapping[str, str] = ()) -> Iterator[dict]:
    """Our own simulation SuperLink; yields the environment for `flwr(...)`."""
    home = tmp / "flwr-home"
    home.mkdir(parents=True)
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        **dict(extra_env),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    }
    log_path = tmp / "superlink.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "flower-superlink"), "--insecure", "--simulation", "--host", "127.0.0.1",
             "--port", str(port), "--disable-runtime-dependency-installation"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5)
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "SuperLink did not start"
                time.sleep(0.2)
        yield env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def flwr(env: Mapping[str, str], *args: str, timeout: float = 120) -> str:
    """Run the `flwr` CLI from the project root; its stdout (asserts it succeeded)."""
    out = subprocess.run(
        [str(BIN / "flwr"), *args], env=dict(env), cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def start_run(env: Mapping[str, str], run_config: str, supernodes: int = 2) -> str:
    """`flwr run .` with a run config; the Flower run id."""
    started = json.loads(
        flwr(env, "run", ".", CONNECTION, "--format", "json", "--run-config", run_config,
             "--federation-config", f"num-supernodes={supernodes}")
    )  # fmt: skip
    return str(started["run-id"])


def wait_for_run(env: Mapping[str, str], run_id: str, timeout: float = 420) -> dict[str, Any]:
    """Wait until the run is `finished:*`; its `flwr list` entry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = flwr(env, "list", CONNECTION, "--run-id", run_id, "--format", "json")
        runs = json.loads(listed)["runs"]
        if runs and str(runs[0]["status"]).startswith("finished:"):
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def run_log(env: Mapping[str, str], run_id: str) -> str:
    return flwr(env, "log", run_id, CONNECTION, "--show")
