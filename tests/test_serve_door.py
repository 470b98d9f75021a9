"""The sidecar's door (issue 16), over HTTP against ``python -m serve``: a token by default,
kept in an owner-only file; no token only on loopback; a Host allow-list against DNS
rebinding; JSON-only state-changing requests against cross-site posts."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest
from serve_helpers import (
    ROOT,
    SidecarProcess,
    free_port,
    jsonl,
    publish,
    synthetic_swipes,
    wait_for,
)

SWIPES = "/api/v1/swipes"


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code, resp.text


@pytest.fixture(scope="module")
def swipes():
    return synthetic_swipes(4, seed=11)


@pytest.fixture(scope="module")
def open_sidecar(tmp_path_factory):
    """``SWIPEFL_AUTH=none`` (loopback): the guards must hold without a token too."""
    proc = SidecarProcess(tmp_path_factory.mktemp("door-open"), reload_interval_s=3600)
    proc.start()
    with proc.client() as c:  # the watcher's first check, at startup, is done
        wait_for(lambda: c.get("/api/v1/model").json()["last_check_at"], what="first check")
    yield proc
    proc.stop()


# -- the token -----------------------------------------------------------------------------------


def test_token_file_is_made_owner_only_and_required(tmp_path, swipes):
    proc = SidecarProcess(tmp_path, auth="token")
    publish(proc.checkpoints())
    proc.start(wait_ready=True)
    try:
        info = proc.token_file.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.getuid()
        token = proc.auth_token()
        assert token and len(token) >= 32
        unlabelled = {k: v for k, v in swipes[0].items() if k != "word"}
        json_only = {"Content-Type": "application/json"}
        with httpx.Client(base_url=proc.url, headers=json_only, timeout=30) as anonymous:
            assert_error(anonymous.post(SWIPES, json=swipes[0]), 401, "UNAUTHORIZED")
            assert_error(anonymous.post("/api/v1/predict", json=unlabelled), 401, "UNAUTHORIZED")
            assert_error(anonymous.post("/api/v1/model/reload"), 401, "UNAUTHORIZED")
        with proc.client() as c:  # the keyboard reads the same file
            assert c.post(SWIPES, json=swipes[0]).status_code == 202
            assert c.post("/api/v1/predict", json=unlabelled).status_code == 200
            assert c.get("/api/v1/stats").json()["swipes"]["total"] == 1
    finally:
        proc.stop()
    proc.start()  # the next start reads the same token
    try:
        assert proc.auth_token() == token
        with proc.client() as c:
            assert c.post(SWIPES, json=swipes[1]).status_code == 202
    finally:
        proc.stop()
    events = {(e.get("event"), e.get("token_file")) for e in jsonl(proc.log_path)}
    assert ("API token generated", str(proc.token_file)) in events
    assert ("API token read from file", str(proc.token_file)) in events
    assert token not in proc.logs()


def test_environment_token_wins_over_the_file(tmp_path, swipes):
    proc = SidecarProcess(tmp_path, token="from-the-environment-0123456789")
    proc.device_dir.mkdir(parents=True)
    fd = os.open(proc.token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"from-the-file-0123456789\n")
    os.close(fd)
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            file_auth = {"Authorization": "Bearer from-the-file-0123456789"}
            assert_error(c.post(SWIPES, json=swipes[0], headers=file_auth), 401, "UNAUTHORIZED")
        with proc.client() as c:
            assert c.post(SWIPES, json=swipes[0]).status_code == 202
    finally:
        proc.stop()


def test_token_file_others_can_read_is_refused(tmp_path):
    proc = SidecarProcess(tmp_path, auth="token")
    proc.device_dir.mkdir(parents=True)
    proc.token_file.write_text("leaked-token-0123456789\n")
    proc.token_file.chmod(0o644)
    with pytest.raises(RuntimeError, match="exited"):
        proc.start(timeout=120)
    assert "chmod 600" in proc.logs() and "leaked-token-0123456789" not in proc.logs()


def run_serve(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWIPEFL_")}
    return subprocess.run(
        [sys.executable, "-m", "serve"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "phone.example"])
def test_no_token_on_a_non_loopback_address_refuses_to_start(tmp_path, host):
    port = free_port()
    run = run_serve(
        {
            "SWIPEFL_HOST": host,
            "SWIPEFL_PORT": str(port),
            "SWIPEFL_AUTH": "none",
            "SWIPEFL_DEVICE_DIR": str(tmp_path / "device"),
        }
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "refusing to serve" in run.stderr and "SWIPEFL_AUTH=none" in run.stderr
    assert not (tmp_path / "device").exists()  # it stopped before touching anything
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_no_token_together_with_a_token_refuses_to_start(tmp_path):
    run = run_serve(
        {
            "SWIPEFL_AUTH": "none",
            "SWIPEFL_API_TOKEN": "a-token-0123456789",
            "SWIPEFL_PORT": str(free_port()),
            "SWIPEFL_DEVICE_DIR": str(tmp_path / "device"),
        }
    )
    assert run.returncode == 2 and "unset one of them" in run.stderr
    assert "a-token-0123456789" not in run.stderr


# -- DNS rebinding: the Host allow-list -----------------------------------------------------------


def test_foreign_host_is_refused_and_changes_nothing(open_sidecar, swipes):
    proc = open_sidecar
    with proc.client() as c:
        assert c.post(SWIPES, json={"swipes": swipes[:2]}).status_code == 202
        for name in ("evil.example", "127.0.0.1.evil.example", "localhost.", "127.0.0.2"):
            rebound = {"Host": f"{name}:{proc.port}"}
            for method, path in (("GET", "/health"), ("GET", "/api/v1/stats"), ("DELETE", SWIPES)):
                resp = c.request(method, path, headers=rebound)
                assert_error(resp, 421, "HOST_NOT_ALLOWED")
        wrong_port = {"Host": f"127.0.0.1:{proc.port + 1}"}
        assert_error(c.get("/api/v1/stats", headers=wrong_port), 421, "HOST_NOT_ALLOWED")
        for name in ("127.0.0.1", "localhost", "LocalHost", "[::1]"):
            assert c.get("/health", headers={"Host": f"{name}:{proc.port}"}).status_code == 200
        assert c.get("/api/v1/stats").json()["swipes"]["total"] >= 2  # nothing was deleted
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave the Host out
        answer = s.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 421") and b"HOST_NOT_ALLOWED" in answer


def test_allowed_hosts_are_configurable(tmp_path):
    proc = SidecarProcess(tmp_path, allowed_hosts="127.0.0.1, phone.local")
    proc.start()
    try:
        with proc.client() as c:
            assert c.get("/health", headers={"Host": f"phone.local:{proc.port}"}).status_code == 200
            resp = c.get("/health", headers={"Host": f"localhost:{proc.port}"})
            assert_error(resp, 421, "HOST_NOT_ALLOWED")
    finally:
        proc.stop()


# -- cross-site requests: JSON only ---------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, content_type",
    [
        ("POST", "/api/v1/model/reload", "text/plain"),
        ("POST", "/api/v1/train", "text/plain"),
        ("DELETE", SWIPES, "text/plain"),
        ("POST", SWIPES, "application/x-www-form-urlencoded"),
        ("POST", "/api/v1/lexicon/words", "multipart/form-data; boundary=x"),
        ("POST", "/api/v1/predict", "text/plain"),
        ("POST", "/api/v1/model/reload", None),  # a no-cors fetch without a body
    ],
)
def test_cross_site_simple_requests_are_refused(open_sidecar, swipes, method, path, content_type):
    proc = open_sidecar
    with proc.client() as c:
        assert c.post(SWIPES, json=swipes[2]).status_code == 202
        total = c.get("/api/v1/stats").json()["swipes"]["total"]
        checks = c.get("/api/v1/model").json()["last_check_at"]
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"words": ["abc"]}' if method == "POST" and content_type else b""
    resp = httpx.request(method, proc.url + path, content=body, headers=headers, timeout=30)
    assert_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
    time.sleep(0.2)
    with proc.client() as c:
        stats = c.get("/api/v1/stats").json()
        assert stats["swipes"]["total"] == total and stats["personalization"] is None
        assert c.get("/api/v1/model").json()["last_check_at"] == checks  # no reload ran
