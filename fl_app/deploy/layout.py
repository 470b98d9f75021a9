"""Where everything of a deployment is: names, paths, addresses, credentials, environments.

A ``Layout`` is a state directory read back (typed state + secrets) and what follows from it;
it starts nothing. The components, the Flower CLI and the ``Deployment`` all read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .processes import BIN, MARK_COMPONENT, MARK_ID
from .state import DeploymentState, Secrets

if TYPE_CHECKING:
    from fl_app.checkpoints import CheckpointStore, S3Backend

FLWR_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}
_NOT_INHERITED = ("SWIPEFL_S3_", "AWS_", "SWIPEFL_DEPLOY_", "FLWR_HOME")


@dataclass
class Layout:
    """A deployment's state directory and what it implies (see the package docstring)."""

    state_dir: Path
    state: DeploymentState
    secrets: Secrets = field(repr=False)

    def save(self) -> None:
        """Write state.json (the secrets are written once, at create)."""
        self.state.save(self.state_dir)

    # -- names ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def nodes(self) -> int:
        return self.state.settings.nodes

    @property
    def secure(self) -> bool:
        return self.state.settings.secure

    def component_names(self) -> list[str]:
        """Every component, in start order: s3 (if checkpoints go there), superlink, nodes."""
        settings = self.state.settings
        names = ["s3"] if settings.store == "s3" else []
        names.append("superlink")
        names += [f"supernode-{i}" for i in range(self.nodes)]
        if settings.sidecars:
            names += [f"sidecar-{i}" for i in range(self.nodes)]
        return names

    # -- paths ---------------------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def flwr_home(self) -> Path:
        """The operator's Flower CLI home: its connection to this SuperLink."""
        return self.state_dir / "flwr-home"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def checkpoints_dir(self) -> Path:
        """The checkpoint store of a ``store="local"`` deployment."""
        return self.state_dir / "checkpoints"

    def device_dir(self, i: int) -> Path:
        return self.state_dir / "devices" / f"device-{i}"

    def store_path(self, i: int) -> Path:
        """Device i's swipe store: its sidecar writes it, its SuperNode's ClientApps train on it."""
        return self.device_dir(i) / "swipes.sqlite"

    # -- addresses and credentials ---------------------------------------------------------------

    @property
    def superlink_address(self) -> str:
        return f"127.0.0.1:{self.state.ports.superlink}"

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.state.ports.weed['s3.port']}"

    def sidecar_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.state.ports.sidecars[i]}"

    def sidecar_token(self, i: int) -> str | None:
        return self.secrets.sidecar_token(i)

    def s3_env(self, role: str = "server") -> dict[str, str]:
        """The shared ``SWIPEFL_S3_*`` names for `role` ('server': read/write, 'device': read)."""
        from fl_app.checkpoints.s3 import s3_environment

        key = self.secrets.s3[role]
        settings = self.state.settings
        return s3_environment(
            self.s3_endpoint,
            key.access_key,
            key.secret_key,
            settings.bucket,
            prefix=settings.prefix,
        )

    def s3_backend(
        self, role: str = "server", *, create_bucket: bool = False, max_attempts: int = 2
    ) -> S3Backend:
        """An ``S3Backend`` on the bucket with `role`'s credentials; quick to give up."""
        from fl_app.checkpoints import S3Backend

        key = self.secrets.s3[role]
        settings = self.state.settings
        return S3Backend(
            self.s3_endpoint,
            key.access_key,
            key.secret_key,
            settings.bucket,
            prefix=settings.prefix,
            create_bucket=create_bucket,
            connect_timeout=2.0,
            read_timeout=10.0,
            max_attempts=max_attempts,
            max_retry_s=3.0,
        )

    def checkpoint_store(self, role: str = "server") -> CheckpointStore:
        """The checkpoint store the ServerApp writes (S3 bucket or `<state>/checkpoints`)."""
        from fl_app.checkpoints import CheckpointStore, LocalDirBackend

        if self.state.settings.store == "local":
            return CheckpointStore(LocalDirBackend(self.checkpoints_dir))
        return CheckpointStore(self.s3_backend(role))

    # -- environments ----------------------------------------------------------------------------

    def env(self, component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a component: no inherited credentials, the marker, Flower quiet."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(FLWR_ENV)
        env["PYTHONUNBUFFERED"] = "1"
        env[MARK_ID] = self.id
        env[MARK_COMPONENT] = component
        env.update(extra or {})
        return env
