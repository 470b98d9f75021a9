"""What every Flower benchmark's result file starts with (title, exact command, machine), and
writing it.

Results are only comparable with the command that made them and the machine's state, so each
file records both (`python bench/<script> ...` from the repository root).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import flwr
import torch


def report_header(
    title: str, script: str, setup: str = "", argv: list[str] | None = None
) -> list[str]:
    """Markdown lines: `# title (bench/script)`, the command, and when and where it ran.

    `argv`: the arguments the script ran with, when `main(argv)` was called from Python.
    """
    args = sys.argv[1:] if argv is None else argv
    command = f"python bench/{script} " + shlex.join(args)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# {title} (bench/{script})",
        "",
        "Command (from the repository root, project venv):",
        "",
        "```",
        command.strip(),
        "```",
        "",
        f"Run {when} on {platform.machine()}, {os.cpu_count()} CPU(s) (load average "
        f"{os.getloadavg()[1]:.1f} at the end), torch {torch.__version__}, "
        f"flwr {flwr.__version__}{setup}.",
        "",
    ]


def write_report(path: Path, text: str, echo: bool = True) -> None:
    """Write a result file (making its folder); echo it and where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if echo:
        print(text)
        print(f"written to {path}")


def shown_path(path: Path) -> str:
    """A file or folder as a report names it: relative to the repository when inside it."""
    path, repo = path.resolve(), Path(__file__).resolve().parent.parent
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
