"""Schema fuzzing of the sidecar's OpenAPI spec (schemathesis CLI, bounded): no 5xx answers.

Runs every phase (examples, coverage, fuzzing, stateful) with a fixed seed and a bounded number
of examples per operation against a real server with a release loaded and a token configured.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import SidecarProcess, publish

pytest.importorskip("schemathesis")

TOKEN = "fuzz-token-0123456789"


def _st() -> str:
    local = Path(sys.executable).parent / "st"
    return str(local) if local.exists() else (shutil.which("st") or "st")


@pytest.mark.slow
def test_openapi_fuzzing_finds_no_server_error(tmp_path):
    proc = SidecarProcess(tmp_path, token=TOKEN, train_min_swipes=1000)
    publish(proc.checkpoints())
    proc.start(wait_ready=True)
    try:
        run = subprocess.run(
            [
                _st(),
                "run",
                proc.url + "/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                "25",
                "--seed",
                "20251126",
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # schemathesis keeps its example database in the working directory
        )
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        assert "generated" in run.stdout
        assert proc.proc.poll() is None  # still up
    finally:
        proc.stop()
    assert '"status": 500' not in proc.logs()
