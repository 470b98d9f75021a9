"""scripts/install_torch.py: which torch build scripts/setup installs, decided without installing
(`--dry-run`). The reports below carry the fields of real `pip install --dry-run --report`
output for torch 2.13.0: the CPU wheel on this machine's disk and PyPI's Linux (CUDA) wheel."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install_torch.py"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BASE_REQUIRES = ["filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "jinja2"]
LOCAL_CPU_WHEEL = {
    "download_info": {"url": "file:///opt/wheels/torch-2.13.0%2Bcpu-cp311-cp311-linux.whl"},
    "metadata": {"name": "torch", "version": "2.13.0+cpu", "requires_dist": BASE_REQUIRES},
}
PYPI_LINUX_WHEEL = {
    "download_info": {"url": "https://files.pythonhosted.org/torch-2.13.0-cp311-linux.whl"},
    "metadata": {
        "name": "torch",
        "version": "2.13.0",
        "requires_dist": BASE_REQUIRES
        + [
            'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"',
            'triton==3.7.1; platform_system == "Linux" and python_version < "3.15"',
        ],
    },
}
PYPI_MACOS_WHEEL = {  # no local label, no CUDA requirements: a CPU build
    "download_info": {"url": "https://files.pythonhosted.org/torch-2.13.0-cp311-macosx.whl"},
    "metadata": {"name": "torch", "version": "2.13.0", "requires_dist": BASE_REQUIRES},
}


def install_torch(tmp_path: Path, report: dict | None, python: str = sys.executable,
                  **env: str) -> subprocess.CompletedProcess:  # fmt: skip
    args = [sys.executable, str(SCRIPT), "--dry-run", "--python", python]
    if report is not None:
        path = tmp_path / "report.json"
        path.write_text(json.dumps(report))
        args += ["--report", str(path)]
    clean = {k: v for k, v in os.environ.items() if k not in ("SWIPEFL_TORCH", "TORCH_INDEX_URL")}
    return subprocess.run(
        args, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def would_run(out: subprocess.CompletedProcess) -> str | None:
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("would run: ")]
    return lines[0].removeprefix("would run: ") if lines else None


@pytest.mark.parametrize(
    ("item", "index"),
    [(LOCAL_CPU_WHEEL, None), (PYPI_MACOS_WHEEL, None), (PYPI_LINUX_WHEEL, CPU_INDEX)],
    ids=["cpu-wheel-on-disk", "pypi-macos", "pypi-linux-cuda"],
)
def test_auto_keeps_a_cpu_build_and_replaces_a_cuda_one(tmp_path, item, index):
    cmd = would_run(install_torch(tmp_path, {"install": [item]}))
    assert cmd is not None and cmd.endswith("-m pip install -q torch==2.13.0" + (
        f" --index-url {index}" if index else ""))  # fmt: skip


def test_auto_installs_nothing_when_torch_is_there(tmp_path):
    out = install_torch(tmp_path, {"install": []})
    assert would_run(out) is None and "already installed" in out.stdout
    # The real question to pip, in this venv, where scripts/setup installed torch 2.13.0.
    out = install_torch(tmp_path, None)
    assert would_run(out) is None and "already installed" in out.stdout


def test_overrides_win_over_what_pip_would_take(tmp_path):
    report = {"install": [LOCAL_CPU_WHEEL]}
    cuda = would_run(install_torch(tmp_path, report, SWIPEFL_TORCH="cuda"))
    assert cuda is not None and cuda.endswith("torch==2.13.0")
    cpu = would_run(install_torch(tmp_path, report, SWIPEFL_TORCH="cpu"))
    assert cpu is not None and cpu.endswith(f"--index-url {CPU_INDEX}")
    mine = "https://download.pytorch.org/whl/cu126"
    chosen = would_run(install_torch(tmp_path, report, SWIPEFL_TORCH="cpu", TORCH_INDEX_URL=mine))
    assert chosen is not None and chosen.endswith(f"--index-url {mine}")


def test_an_unknown_mode_is_refused(tmp_path):
    out = install_torch(tmp_path, {"install": []}, SWIPEFL_TORCH="gpu")
    assert out.returncode == 2 and "SWIPEFL_TORCH='gpu'" in out.stderr


@pytest.mark.slow
def test_a_stock_machine_gets_the_cpu_index(tmp_path):
    """A new venv that sees only PyPI (no pip config, no wheel on disk): pip's own answer is the
    CUDA build, so the CPU index is chosen. Only metadata is fetched."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    stock = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}
    out = install_torch(tmp_path, None, str(venv / "bin" / "python"), **stock)
    command = would_run(out) or ""
    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert "CUDA build" in out.stdout, out.stdout + out.stderr
        assert command.endswith(f"--index-url {CPU_INDEX}")
    else:  # elsewhere PyPI's wheel may be a CPU build, kept as it is
        assert "torch==2.13.0" in command
