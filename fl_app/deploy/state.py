"""A deployment's state, typed: what ``state.json`` and ``secrets.json`` hold.

``state.json`` (format 1; no secrets): the id, the settings chosen at ``create``, every port,
the PIDs of the processes started, the SuperNodes registered and the runs submitted. Its JSON
layout is flat (settings at the top level, ports by component name) and stays readable by
every version of the tool. ``secrets.json`` (mode 0600): the generated S3 credentials (the
server's, read/write; the devices', read-only) and each sidecar's API token.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fl_app.checkpoints.format import write_atomic

from .errors import DeployError
from .probes import free_ports
from .weed import WEED_PORTS

FORMAT_VERSION = 1
STATE_FILE = "state.json"
SECRETS_FILE = "secrets.json"
DEFAULT_STATE_DIR = Path("outputs") / "deploy"
PRIVATE = 0o600  # the mode of every file holding a secret or a private key
STORE_KINDS = ("s3", "local")


def utc_now() -> str:
    """A timestamp as the state and the logs record it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Settings:
    """What ``create`` chose; fixed for the deployment's life (top-level keys of state.json)."""

    experiment: str
    nodes: int
    sidecars: bool
    store: str  # where checkpoints go: "s3" (the bucket) or "local" (<state>/checkpoints)
    bucket: str
    prefix: str
    reload_interval_s: float
    torch_threads: int
    heldout_fraction: float  # the experiment's, so sidecars split swipes as training does
    secure: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls(
            experiment=str(data["experiment"]),
            nodes=int(data["nodes"]),
            sidecars=bool(data["sidecars"]),
            store=str(data["store"]),
            bucket=str(data["bucket"]),
            prefix=str(data.get("prefix") or ""),
            reload_interval_s=float(data["reload_interval_s"]),
            torch_threads=int(data["torch_threads"]),
            heldout_fraction=float(data["heldout_fraction"]),
            secure=bool(data.get("secure")),
        )


@dataclass
class Ports:
    """Every port on 127.0.0.1, chosen free all at once (so no two are the same)."""

    superlink: int
    weed: dict[str, int]  # WEED_PORTS -> port
    supernodes: list[int]  # index i: supernode-i's runtime port
    sidecars: list[int]  # index i: sidecar-i's HTTP port

    @classmethod
    def choose(cls, nodes: int) -> Ports:
        chosen = free_ports(len(WEED_PORTS) + 1 + 2 * nodes)
        other = chosen[len(WEED_PORTS) :]
        return cls(
            superlink=other[0],
            weed=dict(zip(WEED_PORTS, chosen, strict=False)),
            supernodes=other[1 : 1 + nodes],
            sidecars=other[1 + nodes : 1 + 2 * nodes],
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"superlink": self.superlink, "weed": dict(self.weed)}
        for i, (node, sidecar) in enumerate(zip(self.supernodes, self.sidecars, strict=True)):
            out[f"supernode-{i}"] = node
            out[f"sidecar-{i}"] = sidecar
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], nodes: int) -> Ports:
        return cls(
            superlink=int(data["superlink"]),
            weed={name: int(port) for name, port in data["weed"].items()},
            supernodes=[int(data[f"supernode-{i}"]) for i in range(nodes)],
            sidecars=[int(data[f"sidecar-{i}"]) for i in range(nodes)],
        )


@dataclass
class SubmittedRun:
    """One ``flwr run`` submitted: Flower's run id and swipe-fl's (its checkpoints and metrics)."""

    flwr_run_id: str
    run_id: str
    submitted_at: str


@dataclass
class DeploymentState:
    """Everything about a deployment but its secrets; saved to state.json after each change."""

    id: str
    created_at: str
    app_dir: Path  # the Flower app (pyproject.toml) that `flwr run` submits
    python: str
    settings: Settings
    ports: Ports
    socket_dir: Path  # weed's unix sockets: a short path (sun_path is limited to ~108 bytes)
    pids: dict[str, int] = field(default_factory=dict)  # component -> its process group
    registered: dict[str, str] = field(default_factory=dict)  # SuperNode -> node id (--secure)
    runs: list[SubmittedRun] = field(default_factory=list)
    stopped_at: str | None = None  # when everything was last stopped

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "id": self.id,
            "created_at": self.created_at,
            "app_dir": str(self.app_dir),
            "python": self.python,
            **asdict(self.settings),
            "registered": dict(self.registered),
            "ports": self.ports.to_json(),
            "socket_dir": str(self.socket_dir),
            "pids": dict(self.pids),
            "runs": [asdict(run) for run in self.runs],
        }
        if self.stopped_at is not None:
            out["stopped_at"] = self.stopped_at
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentState:
        settings = Settings.from_json(data)
        return cls(
            id=str(data["id"]),
            created_at=str(data["created_at"]),
            app_dir=Path(data["app_dir"]),
            python=str(data["python"]),
            settings=settings,
            ports=Ports.from_json(data["ports"], settings.nodes),
            socket_dir=Path(data["socket_dir"]),
            pids={name: int(pid) for name, pid in data.get("pids", {}).items() if pid},
            registered={k: str(v) for k, v in data.get("registered", {}).items()},
            runs=[SubmittedRun(**run) for run in data.get("runs", [])],
            stopped_at=data.get("stopped_at"),
        )

    def save(self, state_dir: Path) -> None:
        # Rewritten after every start and stop: atomic, not fsynced (the marker sweep finds
        # the processes even if a crash loses the last PIDs).
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomic(state_dir / STATE_FILE, text.encode(), fsync=False)

    @classmethod
    def load(cls, state_dir: Path) -> DeploymentState:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeployError(f"no deployment in {state_dir} (start one first)") from None
        except ValueError as exc:
            raise DeployError(f"{path}: not JSON ({exc})") from None
        if data.get("format") != FORMAT_VERSION:
            raise DeployError(f"{path}: unknown format {data.get('format')}")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployError(f"{path}: unusable state ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class S3Key:
    """One S3 identity's credentials."""

    access_key: str
    secret_key: str = field(repr=False)


@dataclass
class Secrets:
    """Generated credentials, kept out of state.json, command lines and logs."""

    s3: dict[str, S3Key]  # "server" (read/write) and "device" (read-only on the bucket)
    sidecar_tokens: dict[str, str] = field(repr=False)  # "device-<i>" -> its API token

    @classmethod
    def generate(cls, nodes: int) -> Secrets:
        return cls(
            s3={
                role: S3Key(f"swipefl-{role}-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
                for role in ("server", "device")
            },
            sidecar_tokens={f"device-{i}": secrets.token_urlsafe(18) for i in range(nodes)},
        )

    def sidecar_token(self, i: int) -> str | None:
        return self.sidecar_tokens.get(f"device-{i}")

    def save(self, state_dir: Path) -> None:
        data = {
            "s3": {role: asdict(key) for role, key in self.s3.items()},
            "sidecar_tokens": self.sidecar_tokens,
        }
        write_atomic(state_dir / SECRETS_FILE, json.dumps(data, indent=2).encode(), mode=PRIVATE)

    @classmethod
    def load(cls, state_dir: Path) -> Secrets:
        """The deployment's secrets; none when secrets.json is missing."""
        try:
            data = json.loads((state_dir / SECRETS_FILE).read_text())
        except FileNotFoundError:
            data = {}
        return cls(
            s3={role: S3Key(**key) for role, key in data.get("s3", {}).items()},
            sidecar_tokens=dict(data.get("sidecar_tokens", {})),
        )
