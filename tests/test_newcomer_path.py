"""The newcomer's path, as the README gives it: the main job, then `scripts/serve`, then the
one-line `curl` of a prediction, in a scratch checkout (the README's scripts, app entry points,
config and example swipe; the code from this venv's install).

The main job starts from the shipped base decoder (`init=base`), and a release must beat what
devices serve now on the run's own evaluator (2,000 swipes of real public-val users): before
any release, that base. Whether 3 rounds of fine-tuning on 5 simulated users beat it is the
job's call, so the test follows the job's own verdict: the sidecar serves the released round when there is one,
the shipped base (`model_version.base`) when not. A person who wants another round served
promotes it (`python -m fl_app.checkpoints promote`) and the running sidecar picks it up; with
that release unpinned, continuing the run measures itself against it and the sidecar serves
whatever the pointer names, without a restart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import ROOT, free_port, wait_for

from fl_app.base import has_base
from fl_app.checkpoints import CheckpointStore, LocalDirBackend

# The main job's size, made fast: the smoke experiment (5 users, 2 rounds, a small model).
FAST: tuple[str, ...] = ()  # the main job exactly as the README runs it: from the shipped base
SECTION = "## See it work"


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end > 0 else None]


def scratch_checkout(dest: Path) -> Path:
    """The parts of a clone the README's commands read; .venv is this checkout's (linked)."""
    for name in ("pyproject.toml", "server_app.py", "client_app.py"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("conf", "scripts", "docs/examples"):
        shutil.copytree(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWIPEFL_", "FLWR_"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def run(checkout: Path, *cmd: str, timeout: float = 900) -> str:
    out = subprocess.run(
        list(cmd),
        cwd=checkout,
        env=clean_env(SUPERNODES="5"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-4000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def main_job(checkout: Path, *overrides: str) -> tuple[str, str]:
    """`scripts/run-federation` (the README's main job): its output and its run id."""
    out = run(checkout, "scripts/run-federation", *FAST, *overrides)
    store_dir = re.escape(str(checkout / "outputs" / "checkpoints"))
    match = re.search(rf"checkpoints: local directory {store_dir} \(runs/([^/]+)/\)", out)
    assert match, out[-3000:]
    return out, match.group(1)


def released_rounds(out: str) -> list[int]:
    match = re.search(r"released rounds (none|\[[\d, ]+\])", out)
    assert match, out[-3000:]
    return [] if match.group(1) == "none" else json.loads(match.group(1))


class ReadmeSidecar:
    """`scripts/serve` started in the checkout, on a free port (the README's is 8000)."""

    def __init__(self, checkout: Path) -> None:
        self.checkout, self.port = checkout, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = checkout / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["scripts/serve"],
                cwd=checkout,
                env=clean_env(SWIPEFL_PORT=str(self.port), SWIPEFL_RELOAD_INTERVAL_S="0.5"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> dict[str, Any] | None:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            r = httpx.get(self.url + "/ready", timeout=5)
        except httpx.HTTPError:
            return None
        return r.json()["model_version"] if r.status_code == 200 else None

    def serving(self, timeout: float = 240, **expected: Any) -> dict[str, Any]:
        """The served model_version once it has all of `expected`."""

        def check() -> dict[str, Any] | None:
            version = self.ready()
            if version and all(version.get(k) == v for k, v in expected.items()):
                return version
            return None

        return wait_for(check, timeout, 0.25, f"the sidecar to serve {expected}")

    def curl(self) -> dict[str, Any]:
        """The README's one-line prediction, aimed at this sidecar's port."""
        assert shutil.which("curl"), "the README's prediction needs curl: run scripts/setup"
        (line,) = [ln for ln in readme_section().splitlines() if ln.startswith("curl ")]
        assert "127.0.0.1:8000" in line
        line = line.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        out = subprocess.run(
            ["bash", "-c", line], cwd=self.checkout, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def checkout(tmp_path) -> Path:
    return scratch_checkout(tmp_path)


def test_the_readme_names_the_commands_this_test_runs():
    section = readme_section()
    assert "scripts/serve" in section and "http://127.0.0.1:8000/demo" in section
    assert "outputs/device/api-token" in section


@pytest.mark.slow
def test_after_the_main_job_the_readme_sidecar_serves_its_outcome(checkout):
    assert has_base("en"), "the newcomer path needs the shipped base decoder in fl_app/base/en/"
    store = CheckpointStore(LocalDirBackend(checkout / "outputs" / "checkpoints", fsync=False))

    # 1. The main job starts from the shipped base and must beat it to release.
    out, run_id = main_job(checkout)
    assert "from the base" in out and "round 0/3" in out
    assert "every round is measured on 2000 swipes of real public-val users" in out
    assert "releases must beat the current release (shipped base)" in out
    released = released_rounds(out)
    assert "serve it: scripts/serve" in out
    pointer = store.read_release()
    if released:
        assert (pointer["run_id"], pointer["round"]) == (run_id, released[-1])
    else:
        assert pointer is None

    # 2. The README's sidecar, started after the job, serves its outcome; the curl works.
    sidecar = ReadmeSidecar(checkout)
    try:
        if released:
            sidecar.serving(run_id=run_id, round=released[-1], base=False)
        else:
            sidecar.serving(base=True)
        answer = sidecar.curl()
        assert answer["model_version"]["base"] is (not released)
        assert "hello" in [c["word"] for c in answer["candidates"]]

        # 3. Serving another round: promote it; the running sidecar loads it.
        rounds = store.list_rounds(run_id)
        other = next(r for r in reversed(rounds[1:]) if not released or r != released[-1])
        cli = (".venv/bin/python", "-m", "fl_app.checkpoints", "--root", "outputs/checkpoints")
        run(checkout, *cli, "promote", run_id, str(other))
        sidecar.serving(run_id=run_id, round=other, base=False)

        # 4. Unpinned, the continued run must beat that release; the sidecar serves the pointer.
        run(checkout, *cli, "unpin")
        out, resumed = main_job(checkout, f"resume.run_id={run_id}", "federation.num_rounds=4")
        assert resumed == run_id
        assert f"releases must beat the current release (release {run_id}/round {other})" in out
        later = released_rounds(out)
        assert all(r > max(rounds) for r in later)
        pointer = store.read_release()
        assert pointer["round"] == (later[-1] if later else other)
        answer = sidecar.serving(run_id=run_id, round=pointer["round"])
        assert sidecar.curl()["model_version"]["round"] == pointer["round"]
    finally:
        sidecar.stop()
