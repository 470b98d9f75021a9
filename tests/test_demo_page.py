"""The demo page's files over HTTP: where they are served, with which headers, what is not
served, and that a non-editable install carries them (package data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import ROOT, SidecarProcess

STATIC = ROOT / "serve" / "static"
PAGE_FILES = ("index.html", "demo.css", "demo.js", "api.js", "keyboard.js", "panels.js")


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory) -> Iterator[SidecarProcess]:
    # The page needs no model to be served: skip loading the base for speed.
    proc = SidecarProcess(tmp_path_factory.mktemp("demo-page"), auth="token", serve_base="false")
    proc.start()
    yield proc
    proc.stop()


def test_the_page_and_its_files_are_served_with_a_strict_policy(sidecar):
    root = httpx.get(sidecar.url + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/demo"
    page = httpx.get(sidecar.url + "/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="/demo/demo.js"' in page.text
    csp = page.headers["content-security-policy"]
    for rule in (
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert rule in csp, csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("demo.js", "text/javascript"), ("demo.css", "text/css")):
        r = httpx.get(f"{sidecar.url}/demo/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert r.content == (STATIC / name).read_bytes()


def test_only_the_static_files_are_served(sidecar):
    for path in (
        "/demo/nope.js",
        "/demo/..%2Fapp.py",
        "/demo/%2E%2E%2F__init__.py",
        "/demo/.hidden",
    ):
        r = httpx.get(sidecar.url + path)
        assert r.status_code == 404, path
        assert r.json()["code"] == "NOT_FOUND"
    # Not part of the API's description.
    paths = httpx.get(sidecar.url + "/openapi.json").json()["paths"]
    assert not any(p == "/" or p.startswith("/demo") for p in paths)


def test_the_page_keeps_the_door_rules(sidecar):
    # A rebinding page's Host is refused for the page too.
    r = httpx.get(sidecar.url + "/demo", headers={"Host": f"evil.example:{sidecar.port}"})
    assert r.status_code == 421
    # The page's own requests: the token on a token route, JSON on every state change.
    js = (STATIC / "api.js").read_text()
    assert "Authorization = `Bearer ${token}`" in js
    assert 'headers["Content-Type"] = "application/json"' in js
    # Nothing from the internet: no absolute URL is loaded by any of the page's files.
    for name in PAGE_FILES:
        text = (STATIC / name).read_text()
        for marker in ('src="http', 'href="http', "url(http", 'from "http', 'fetch("http', "//cdn"):
            assert marker not in text, (name, marker)


@pytest.mark.slow
def test_a_wheel_carries_the_page(tmp_path):
    """A non-editable install gets the page (package data), not only this checkout."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.safetensors")
    for name in ("fl_app", "serve"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("swipe_fl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*PAGE_FILES, "favicon.svg"):
        assert f"serve/static/{name}" in names, name
    assert Path("serve/api/routes/demo.py").as_posix() in names
