"""`pip install swipe-fl[serve]` in a fresh venv runs the sidecar without Flower, Ray, Hydra or
matplotlib: a device installs only what serving needs.

The venv gets torch as scripts/setup does (scripts/install_torch.py), then the project (a copy
of its sources, not editable, so nothing comes from this checkout) with the `serve` extra. The
sidecar runs from that venv, outside the checkout, with Python's import log on: the test reads
which modules the running process imported while it started, loaded a release and predicted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import SidecarProcess, publish, trace_for

ROOT = Path(__file__).resolve().parent.parent
# Distributions a device must not get, and the modules they would bring.
NOT_ON_A_DEVICE = {"flwr": "flwr", "ray": "ray", "hydra-core": "hydra", "omegaconf": "omegaconf",
                   "matplotlib": "matplotlib"}  # fmt: skip


def _run(*cmd: str | Path, timeout: float = 900) -> str:
    out = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _copy_sources(dest: Path) -> Path:
    """What a source distribution carries (pip builds a wheel from it, leaving ROOT alone)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("fl_app", "serve"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def imported_modules(log: str) -> set[str]:
    """Top-level names of the modules in a `PYTHONPROFILEIMPORTTIME=1` log."""
    names = set()
    for line in log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("serve-install")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    said = _run(python, ROOT / "scripts" / "install_torch.py", "--python", python)
    assert "torch==" in said, said
    _run(python, "-m", "pip", "install", "-q", f"{_copy_sources(base / 'src')}[serve]")
    return python


@pytest.mark.slow
def test_serve_extra_installs_no_training_stack(serve_venv):
    listed = json.loads(_run(serve_venv, "-m", "pip", "list", "--format", "json"))
    installed = {d["name"].lower().replace("_", "-") for d in listed}
    assert {"swipe-fl", "torch", "fastapi", "uvicorn", "minio", "prometheus-client"} <= installed
    assert not installed & set(NOT_ON_A_DEVICE), installed & set(NOT_ON_A_DEVICE)
    # uvicorn without [standard]: the parts the sidecar does not use stay out.
    assert not installed & {"watchfiles", "websockets"}
    # torch as scripts/setup installs it: a CPU build.
    cuda = _run(serve_venv, "-c", "import torch; print(torch.version.cuda)").strip()
    assert cuda == "None", cuda


@pytest.mark.slow
def test_serve_extra_sidecar_serves_a_release_without_ray_or_hydra(serve_venv, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    sidecar = SidecarProcess(
        tmp_path, token="device-token", python=str(serve_venv), cwd=outside,
        extra_env={"PYTHONPROFILEIMPORTTIME": "1", "PYTHONPATH": ""},
    )  # fmt: skip
    publish(sidecar.checkpoints(), "run-a", 1)
    try:
        sidecar.start(wait_ready=True, timeout=120)
        with sidecar.client() as client:
            assert client.get("/health").status_code == 200
            body = {"points": trace_for("hello"), "keyboard": {"layout": "qwerty-en",
                    "width": 375, "height": 217}}  # fmt: skip
            resp = client.post("/api/v1/predict", json=body)
            assert resp.status_code == 200, resp.text
            assert resp.json()["candidates"], resp.text
    finally:
        sidecar.stop()
    modules = imported_modules(sidecar.logs())
    # The log is real: it shows the sidecar's own stack, from the fresh venv.
    assert {"serve", "fl_app", "uvicorn", "fastapi", "torch", "minio"} <= modules
    assert not modules & set(NOT_ON_A_DEVICE.values()), modules & set(NOT_ON_A_DEVICE.values())


def test_import_log_parser_reads_nested_names():
    log = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |     ray._private\n"
        "import time:        80 |        200 |   hydra\n"
        '{"level": "INFO", "msg": "started"}\n'
    )
    assert imported_modules(log) == {"ray", "hydra"}
