"""The deployment on loopback as one object: lay it out, start and stop its processes, run, seed.

``Deployment`` is a ``Layout`` (its state directory read back) plus the processes it started
in this Python process. What each component is lives in ``components``, the Flower CLI in
``runs``, the state's format in ``state``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runs, tls
from .components import Component, component, remove_s3_sockets
from .errors import DeployError
from .layout import Layout
from .probes import http_json
from .processes import (
    MARK_ID,
    log_tail,
    marked_processes,
    pid_alive,
    process_environ,
    signal_each,
    signal_group,
    spawn,
    wait_gone,
)
from .state import (
    DEFAULT_STATE_DIR,
    STATE_FILE,
    STORE_KINDS,
    DeploymentState,
    Ports,
    Secrets,
    Settings,
    utc_now,
)

APP_DIR = Path(__file__).resolve().parents[2]  # the Flower app (pyproject.toml) for `flwr run`
STOP_ORDER = ("sidecar", "supernode", "superlink", "s3")  # sidecars first: they commit swipes
FRESH_DIRS = ("s3", "superlink", "nodes", "flwr-home", "tls")  # emptied by every create
SEED_BATCH = 128  # swipes per POST when seeding through a sidecar


@dataclass
class Deployment(Layout):
    """A deployment on loopback, described by its state directory (see the package docstring)."""

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
        reload_interval_s: float = 2.0,
        torch_threads: int = 1,
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
        if store not in STORE_KINDS:
            raise DeployError("store must be 's3' or 'local'")
        if (state_dir / STATE_FILE).exists():
            old = cls.load(state_dir)
            if old.running():
                raise DeployError(
                    f"{state_dir} holds a running deployment ({', '.join(old.running())}): "
                    "stop it first (python -m fl_app.deploy stop)"
                )
            old.stop()  # sweeps anything a crashed deployment left behind
        for sub in ("logs", "devices", "runs", *FRESH_DIRS):
            path = state_dir / sub
            if path.exists() and sub in FRESH_DIRS:
                shutil.rmtree(path)  # a fresh S3 data dir and fresh Flower homes every start
            path.mkdir(parents=True, exist_ok=True)
        ports = Ports.choose(nodes)
        heldout = runs.experiment_config(APP_DIR, experiment).data.heldout_fraction
        deploy_id = f"d-{secrets.token_hex(6)}"
        settings = Settings(
            experiment=experiment,
            nodes=int(nodes),
            sidecars=bool(sidecars),
            store=store,
            bucket=bucket,
            prefix="",
            reload_interval_s=float(reload_interval_s),
            torch_threads=int(torch_threads),
            heldout_fraction=float(heldout),
            secure=bool(secure),
        )
        state = DeploymentState(
            id=deploy_id,
            created_at=utc_now(),
            app_dir=APP_DIR,
            python=sys.executable,
            settings=settings,
            ports=ports,
            socket_dir=Path(tempfile.mkdtemp(prefix=f"swipefl-{deploy_id}-")),
        )
        dep = cls(state_dir, state, Secrets.generate(nodes))
        dep.secrets.save(state_dir)
        dep.save()
        if secure:
            tls.make_authority(dep.tls_dir, dep.id, [f"supernode-{i}" for i in range(nodes)])
        (dep.flwr_home / "config.toml").write_text(runs.connection_config(dep))
        from fl_app.swipes.store import SwipeStore

        for i in range(nodes):
            dep.device_dir(i).mkdir(parents=True, exist_ok=True)
            SwipeStore(dep.store_path(i)).close()  # the SuperNode needs the file to exist
        return dep

    @classmethod
    def load(cls, state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> Deployment:
        state_dir = Path(state_dir).expanduser().resolve()
        return cls(state_dir, DeploymentState.load(state_dir), Secrets.load(state_dir))

    # -- processes -----------------------------------------------------------------------------

    def component(self, name: str) -> Component:
        """The spec of component `name` (see `component_names`)."""
        return component(self, name)

    def pid(self, name: str) -> int | None:
        return self.state.pids.get(name)

    def _reap(self) -> None:
        for proc in self._popen.values():
            proc.poll()

    def is_running(self, name: str) -> bool:
        self._reap()
        pid = self.pid(name)
        return pid is not None and pid_alive(pid) and process_environ(pid).get(MARK_ID) == self.id

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
        comp.cwd.mkdir(parents=True, exist_ok=True)
        comp.log.parent.mkdir(parents=True, exist_ok=True)
        if "FLWR_HOME" in comp.env:
            Path(comp.env["FLWR_HOME"]).mkdir(parents=True, exist_ok=True)
        if comp.before_start is not None:
            comp.before_start()
        with open(comp.log, "ab") as log:
            log.write(f"--- {utc_now()} starting {shlex.join(comp.cmd)}\n".encode())
            log.flush()
            proc = spawn(comp.cmd, cwd=comp.cwd, env=comp.env, log=log)
        self._popen[name] = proc
        self.state.pids[name] = proc.pid
        self.save()
        return comp

    def _wait_ready(self, comp: Component, deadline: float) -> None:
        proc = self._popen[comp.name]
        while True:
            if proc.poll() is not None:
                raise DeployError(
                    f"{comp.name} exited with {proc.returncode} during start-up; "
                    f"log {comp.log}:\n{log_tail(comp.log)}"
                )
            if comp.ready():
                return
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"{comp.name} not ready in time; log {comp.log}:\n{log_tail(comp.log)}"
                )
            time.sleep(0.2)

    def _register(self, names: Iterable[str]) -> None:
        """`flwr supernode register` the public keys of SuperNodes the SuperLink does not know."""
        registered = self.state.registered
        for name in names:
            if name in registered:
                continue
            out = self.flwr(
                "supernode", "register", str(self.tls_dir / f"{name}.pub"), runs.CONNECTION,
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

    def kill(self, name: str) -> list[int]:
        """SIGKILL a component's whole process group at once (a fault: no goodbye)."""
        pid = self.pid(name)
        if pid is None:
            raise DeployError(f"{name} was never started")
        victims = set(marked_processes(self.id, name))
        if self.is_running(name):
            victims.add(pid)
            signal_group(pid, signal.SIGKILL)
        signal_each(victims, signal.SIGKILL)
        left = wait_gone(victims, 10.0, self._reap)
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
        pids = []
        for name in sorted(names, key=lambda n: STOP_ORDER.index(n.split("-")[0])):
            pid = self.pid(name)
            if pid is not None and self.is_running(name):
                signal_group(pid, signal.SIGTERM)
                pids.append(pid)
        wait_gone(pids, grace_s, self._reap)
        wanted = set(names)

        def marked() -> dict[int, str]:  # one /proc scan, filtered to the stopped components
            found = marked_processes(self.id)
            return found if everything else {p: c for p, c in found.items() if c in wanted}

        for sweep_sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            found = marked()
            if not found:
                break
            signal_each(found, sweep_sig)
            wait_gone(found, wait_s, self._reap)
        survivors = list(marked())
        for name in names:
            self.state.pids.pop(name, None)
            self._popen.pop(name, None)
        if everything:
            remove_s3_sockets(self)
            self.state.stopped_at = utc_now()
        self.save()
        return sorted(set(survivors))

    def leftovers(self) -> dict[int, str]:
        """Processes still carrying this deployment's marker (none after `stop`)."""
        return marked_processes(self.id)

    # -- Flower runs (see runs.py) -------------------------------------------------------------

    def flwr(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """The Flower CLI against this deployment's SuperLink (its own FLWR_HOME)."""
        return runs.flwr(self, *args, timeout_s=timeout_s)

    def run_overrides(self, overrides: Iterable[str] = (), run_id: str | None = None) -> list[str]:
        """The Hydra overrides of a run: the deployment's, then the caller's (which win)."""
        return runs.run_overrides(self, overrides, run_id)

    def submit(self, overrides: Iterable[str] = (), run_id: str | None = None) -> tuple[str, str]:
        """`flwr run` the app against the deployment; returns (Flower run id, swipe-fl run id)."""
        return runs.submit(self, overrides, run_id)

    def run_status(self, flwr_run_id: str) -> tuple[str, str]:
        return runs.run_status(self, flwr_run_id)

    def wait(self, flwr_run_id: str, run_id: str, timeout_s: float = 900.0) -> runs.RunResult:
        """Stream the run's log to `<state>/runs/flwr-<id>.log` until it ends; check its status."""
        return runs.wait_for_run(self, flwr_run_id, run_id, timeout_s)

    def run(
        self, overrides: Iterable[str] = (), run_id: str | None = None, timeout_s: float = 900.0
    ) -> runs.RunResult:
        flwr_run_id, run_id = self.submit(overrides, run_id)
        return self.wait(flwr_run_id, run_id, timeout_s)

    # -- devices -------------------------------------------------------------------------------

    def seed(self, swipes: int = 120, seed: int = 5000) -> list[int]:
        """Labelled synthetic swipes for every device (user `seed + i` on device i).

        With sidecars they are POSTed to ``/api/v1/swipes`` as a keyboard would; without, they
        go straight into the stores. Returns how many each device now holds.
        """
        from fl_app.decoder.lexicon import load_lexicon
        from fl_app.swipes.store import SwipeStore
        from fl_app.synthetic.users import make_user

        data = runs.experiment_config(self.state.app_dir, self.state.settings.experiment).data
        lexicon = load_lexicon(str(data.language), int(data.lexicon_size))
        totals = []
        for i in range(self.nodes):
            made = make_user(int(seed) + i, lexicon).swipes(int(swipes))
            if self.state.settings.sidecars:
                token = self.sidecar_token(i)
                for start in range(0, len(made), SEED_BATCH):
                    body = {"swipes": [s.to_dict() for s in made[start : start + SEED_BATCH]]}
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

        heldout = self.state.settings.heldout_fraction
        with SwipeStore(self.store_path(i), heldout_fraction=heldout) as store:
            return store.stats()

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
        """Each component (running, ready, what, log), the SuperLink's runs, each device."""
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
            listed = runs.list_runs(self)
            if listed is not None:
                out["runs"] = listed
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
