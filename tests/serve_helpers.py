"""Helpers for the sidecar's tests: a real uvicorn server in a subprocess, releases, swipes.

``SidecarProcess`` runs ``python -m serve`` on a free loopback port with its own device
directory and checkpoint directory; ``start()`` waits for /health, ``stop()`` sends SIGTERM
(graceful), ``kill()`` sends SIGKILL. Its stderr (JSON logs) goes to ``log_path``.

Auth: ``token="..."`` sets SWIPEFL_API_TOKEN; ``auth="token"`` without one leaves the sidecar
to make its token file (the default posture; ``client()`` reads the file); with neither, the
sidecar runs with the explicit ``SWIPEFL_AUTH=none`` (loopback) for tests about other things.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from fl_app.checkpoints import CheckpointStore, LocalDirBackend
from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.spec import DecoderSpec, model_arrays

ROOT = Path(__file__).resolve().parent.parent
SMALL_SPEC = DecoderSpec(hidden=32, conv_channels=32, gru_layers=1, lexicon_size=2000)
KEYBOARD = {"layout": "qwerty-en", "width": 375, "height": 217}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SidecarProcess:
    def __init__(
        self,
        tmp: Path,
        *,
        token: str | None = None,
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
        cwd: Path = ROOT,
        **settings: Any,
    ) -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.device_dir = self.tmp / "device"
        self.checkpoint_dir = self.tmp / "checkpoints"
        self.token = token
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.python, self.cwd = python, cwd  # another venv's sidecar: its python, outside ROOT
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.tmp / "sidecar.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWIPEFL_")}
        env.update(
            {
                "SWIPEFL_PORT": str(self.port),
                "SWIPEFL_DEVICE_DIR": str(self.device_dir),
                "SWIPEFL_CHECKPOINT_DIR": str(self.checkpoint_dir),
                "SWIPEFL_RELOAD_INTERVAL_S": "0.25",
                "SWIPEFL_TRAIN_MIN_SWIPES": "20",
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
            }
        )
        if self.token:
            env["SWIPEFL_API_TOKEN"] = self.token
        elif "auth" not in self.settings:
            env["SWIPEFL_AUTH"] = "none"
        # Tests of releases start from "nothing served"; those of the shipped base ask for it.
        env["SWIPEFL_SERVE_BASE"] = "false"
        for key, value in self.settings.items():
            env[f"SWIPEFL_{key.upper()}"] = str(value)
        env.update(self.extra_env)
        return env

    def start(self, wait_ready: bool = False, timeout: float = 60.0) -> SidecarProcess:
        self.starts += 1
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "serve"],
            cwd=str(self.cwd),
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait("/ready" if wait_ready else "/health", timeout)
        return self

    def wait(self, path: str = "/health", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"sidecar not answering {path} in {timeout} s:\n{self.logs()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def token_file(self) -> Path:
        return self.device_dir / "api-token"

    def auth_token(self) -> str | None:
        """The token requests need: the one given, else the sidecar's token file, if any."""
        if self.token:
            return self.token
        try:
            return self.token_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def headers(self) -> dict[str, str]:
        """What the keyboard sends: its token, and JSON (state-changing requests need it)."""
        token = self.auth_token()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return {"Content-Type": "application/json", **auth}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=30, **kwargs)

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(LocalDirBackend(self.checkpoint_dir, fsync=False))


@contextmanager
def running(tmp: Path, **kwargs: Any) -> Iterator[SidecarProcess]:
    proc = SidecarProcess(tmp, **kwargs)
    try:
        yield proc.start()
    finally:
        if proc.proc is not None:
            proc.stop()


# -- releases ----------------------------------------------------------------------------------


def release_tensors(spec: DecoderSpec = SMALL_SPEC, seed: int = 0) -> dict[str, np.ndarray]:
    return model_arrays(spec.build_model(seed=seed))


def publish(
    checkpoints: CheckpointStore,
    run_id: str = "run-a",
    server_round: int = 1,
    *,
    spec: DecoderSpec = SMALL_SPEC,
    seed: int = 0,
    tensors: dict[str, np.ndarray] | None = None,
    metrics: dict[str, Any] | None = None,
    decoder: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save a checkpoint as the ServerApp does and point the release at it (promote)."""
    tensors = release_tensors(spec, seed) if tensors is None else tensors
    manifest = {
        "decoder": spec.to_manifest() if decoder is None else decoder,
        "metrics": metrics if metrics is not None else {"top1": 0.1 * server_round},
    }
    checkpoints.save(run_id, server_round, tensors, manifest=manifest)
    return checkpoints.promote(run_id, server_round)


# -- swipes ------------------------------------------------------------------------------------


def synthetic_swipes(n: int, seed: int = 0, lexicon_size: int = 2000) -> list[dict[str, Any]]:
    """Realistic labelled swipes (docs/formats.md format) from fl_app.synthetic.users."""
    from fl_app.decoder.lexicon import load_lexicon
    from fl_app.synthetic.users import make_user

    user = make_user(seed, load_lexicon("en", lexicon_size))
    return [s.to_dict() for s in user.swipes(n)]


def trace_for(word: str, keyboard: dict[str, Any] = KEYBOARD) -> list[dict[str, float]]:
    """A clean trace through the word's key centres (16 ms a point)."""
    kb = named_keyboard(keyboard["layout"], keyboard["width"], keyboard["height"])
    from serve.services.model_build import canned_trace

    pts = canned_trace(kb, word)
    return [{"x": float(x), "y": float(y), "t": float(t)} for x, y, t in pts]


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample in Prometheus text (0.0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if labels:
            if not all(f'{k}="{v}"' in head for k, v in labels.items()):
                continue
        elif head != name:
            continue
        return float(value)
    return 0.0


def wait_for(
    predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy (returned); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
