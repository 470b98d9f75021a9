"""Network probes on loopback: free ports, is it ready (HTTP, TCP), and small JSON requests.

Readiness is what a component answers, not that its process exists: S3 speaks HTTP, the
SuperLink answers ``/health``, a SuperNode opens its runtime port, a sidecar answers ``/health``.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any

from .errors import DeployError


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while choosing)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def http_ok(url: str, timeout_s: float = 1.0, cafile: str | None = None) -> bool:
    """Whether `url` answers 2xx (over TLS trusting `cafile` when given)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as res:
            return 200 <= res.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def http_answers(host: str, port: int) -> bool:
    """Whether `port` speaks HTTP (any status: an unsigned request to S3 gets 403)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.settimeout(1.0)
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def tcp_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on `port`."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout_s: float = 30.0
) -> Any:
    """One JSON request (bearer `token` if given); any failure is a DeployError naming it."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as res:
            return json.loads(res.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise DeployError(f"{method} {url}: HTTP {exc.code} {detail}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise DeployError(f"{method} {url}: {exc}") from None
