"""Install torch into a venv, as a CPU build unless asked otherwise (scripts/setup runs this).

Why: the decoder runs on the CPU, and on a stock Linux machine `pip install torch==2.13.0`
resolves to PyPI's CUDA build (several GB). Where pip already reaches a CPU build (a wheel on
disk, a CPU mirror, PyPI's macOS and Windows wheels) the plain command is kept; otherwise the
torch step takes PyTorch's CPU wheel index. The first rule that applies decides:

  TORCH_INDEX_URL=URL   torch from that index (e.g. https://download.pytorch.org/whl/cu126)
  SWIPEFL_TORCH=cuda    the plain command (on Linux, PyPI's CUDA build)
  SWIPEFL_TORCH=cpu     PyTorch's CPU index
  SWIPEFL_TORCH=auto    (default) ask pip which build it would take (`--dry-run --report`):
                        already installed: nothing; a CPU build: the plain command;
                        a CUDA build: PyTorch's CPU index

  python scripts/install_torch.py [--python .venv/bin/python] [--dry-run] [--report FILE]

`--dry-run` prints the decision and the command without installing; `--report FILE` reads a
pip installation report (JSON) instead of asking pip. Standard library only: it runs before
anything is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MODES = ("auto", "cpu", "cuda")
# Requirements that only CUDA builds of torch carry.
CUDA_REQUIREMENTS = ("nvidia-", "cuda-", "triton")


@dataclass(frozen=True)
class Choice:
    """What to run (None: nothing to install) and why."""

    index_url: str | None
    reason: str
    install: bool = True

    def command(self, python: str) -> list[str]:
        cmd = [python, "-m", "pip", "install", "-q", TORCH]
        return cmd + (["--index-url", self.index_url] if self.index_url else [])


def build_of(item: dict[str, Any]) -> str:
    """'cpu' or 'cuda': the build a pip report's install item is, from its metadata."""
    meta = item.get("metadata") or {}
    local = str(meta.get("version", "")).partition("+")[2]
    if local:
        return "cpu" if local == "cpu" else "cuda"
    requires = [str(r).lower() for r in meta.get("requires_dist") or []]
    return "cuda" if any(r.startswith(CUDA_REQUIREMENTS) for r in requires) else "cpu"


def choose_from_report(report: dict[str, Any]) -> Choice:
    """The auto rule, given pip's report for `pip install --dry-run --no-deps torch==V`."""
    items = [i for i in report.get("install") or [] if i.get("metadata", {}).get("name") == "torch"]
    if not items:
        return Choice(None, f"{TORCH} is already installed", install=False)
    url = (items[0].get("download_info") or {}).get("url", "?")
    if build_of(items[0]) == "cpu":
        return Choice(None, f"pip takes a CPU build ({url})")
    return Choice(CPU_INDEX, f"pip would take a CUDA build ({url}): the CPU index instead")


def ask_pip(python: str) -> dict[str, Any]:
    """pip's installation report for torch, without installing (only metadata is fetched)."""
    cmd = [python, "-m", "pip", "install", "--dry-run", "--no-deps", "-q", "--report", "-", TORCH]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"pip could not resolve {TORCH}: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def choose(env: dict[str, str], python: str, report: dict[str, Any] | None = None) -> Choice:
    """Apply the rules of the module docstring."""
    if env.get("TORCH_INDEX_URL"):
        return Choice(env["TORCH_INDEX_URL"], "TORCH_INDEX_URL is set")
    mode = env.get("SWIPEFL_TORCH", "auto") or "auto"
    if mode not in MODES:
        raise ValueError(f"SWIPEFL_TORCH={mode!r}: one of {', '.join(MODES)}")
    if mode == "cuda":
        return Choice(None, "SWIPEFL_TORCH=cuda: pip's default build")
    if mode == "cpu":
        return Choice(CPU_INDEX, "SWIPEFL_TORCH=cpu")
    return choose_from_report(report if report is not None else ask_pip(python))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the venv's python")
    parser.add_argument("--dry-run", action="store_true", help="print, do not install")
    parser.add_argument("--report", help="a pip installation report to decide on (JSON)")
    args = parser.parse_args(argv)
    report = None
    if args.report:
        with open(args.report, encoding="utf-8") as fh:
            report = json.load(fh)
    try:
        choice = choose(dict(os.environ), args.python, report)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cmd = choice.command(args.python)
    print(f"{TORCH}: {choice.reason}")
    if not choice.install:
        return 0
    if args.dry_run:
        print("would run: " + " ".join(cmd))
        return 0
    print("running: " + " ".join(cmd))
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
