"""The lines every Flower benchmark's result file starts with: title, exact command, machine.

Results are only comparable with the command that made them and the machine's state, so each
file records both (`python bench/<script> ...` from the repository root).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime, timezone

import flwr
import torch


def report_header(title: str, script: str, setup: str = "") -> list[str]:
    """Markdown lines: `# title (bench/script)`, the command, and when and where it ran."""
    command = f"python bench/{script} " + shlex.join(sys.argv[1:])
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
