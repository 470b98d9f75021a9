"""Processes on Linux, through /proc: start one in its own session, is it alive, what does it
carry, signal it, wait for it.

A deployment marks every process it starts with ``SWIPEFL_DEPLOY_ID`` (and the component's
name) in its environment; Flower's own children (SuperExec, ServerApp, ClientApps) inherit the
marker, so a /proc scan finds them even after they left the process group.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

BIN = Path(sys.executable).parent  # the venv's bin: flwr, flower-superlink, flower-supernode, weed
MARK_ID = "SWIPEFL_DEPLOY_ID"
MARK_COMPONENT = "SWIPEFL_DEPLOY_COMPONENT"


def spawn(
    cmd: list[str], *, cwd: Path, env: Mapping[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start `cmd` in a session of its own (so its whole group can be signalled at once),
    stdin closed, stdout and stderr appended to `log`."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def pid_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def process_environ(pid: int) -> dict[str, str]:
    """The environment `pid` started with ({} when it is gone or not ours to read)."""
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
    """The command line of `pid` ([] when it is gone)."""
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
        env = process_environ(pid)
        if env.get(MARK_ID) != deploy_id or not pid_alive(pid):
            continue
        name = env.get(MARK_COMPONENT, "?")
        if component is None or name == component:
            out[pid] = name
    return out


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group `pid` leads (every component starts its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def signal_each(pids: Iterable[int], sig: int) -> None:
    """Signal every pid on its own (processes that left their group); gone ones are skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout_s: float, reap: Callable[[], None]) -> list[int]:
    """Wait until none of `pids` is alive (`reap` collects our own children); returns survivors."""
    pids = list(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        reap()
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def log_tail(path: Path, n: int = 25) -> str:
    """The last `n` lines of a process's log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
