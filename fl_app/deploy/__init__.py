"""The federation deployed on loopback: real Flower processes, a real object store, real devices.

One command starts every piece the production system has, each as its own process on
127.0.0.1, and stops them all again::

    python -m fl_app.deploy start --nodes 2     # S3 server, SuperLink, 2 SuperNodes, 2 sidecars
    python -m fl_app.deploy seed --swipes 120   # labelled synthetic swipes POSTed to each sidecar
    python -m fl_app.deploy run                 # `flwr run` against it (+ Hydra overrides)
    python -m fl_app.deploy status              # processes, runs, what each sidecar serves
    python -m fl_app.deploy stop                # stops everything this deployment started
    python -m fl_app.deploy up --nodes 2        # start, seed, run, wait for the sidecars, stop

What runs (docs/deployment.md maps it onto separate machines):

- ``s3``: SeaweedFS (``weed mini``) with two identities: the server's (read/write) and the
  devices' (read-only on the bucket).
- ``superlink``: ``flower-superlink --insecure`` (``--secure``: TLS from a private CA and
  SuperNode authentication) started with the server's ``SWIPEFL_S3_*`` variables (the
  ServerApp inherits them and writes checkpoints and releases to the bucket).
- ``supernode-<i>``: ``flower-supernode --node-config "swipe-store='<abs>/swipes.sqlite'"``; its
  ClientApps train on device i's swipe store.
- ``sidecar-<i>``: ``python -m serve`` on device i: writes labelled swipes into that same store
  and hot-reloads the release from the bucket with the read-only credentials.

State lives in one directory (``--state-dir``, default ``outputs/deploy``): ``state.json``
(ports, PIDs, paths; no secrets), ``secrets.json`` (mode 0600: generated S3 credentials and
sidecar tokens), one log per process under ``logs/``, the devices' files under ``devices/``,
and the runs' metrics under ``runs/``. Every process started carries ``SWIPEFL_DEPLOY_ID`` in
its environment, and so do the processes Flower starts on its behalf (SuperExec, ServerApp,
ClientApps): ``stop`` signals the recorded process groups, then sweeps anything still carrying
the marker, so nothing outlives it even after a crash halfway through ``start``.

The modules, one job each: ``deployment`` (the ``Deployment``: create, load, start, stop,
kill, seed, status), ``components`` (how each kind of component starts and answers),
``layout`` (names, paths, addresses, credentials, environments), ``state`` (state.json and
secrets.json, typed), ``runs`` (the Flower CLI: ``flwr run``, ``flwr list``, ``flwr log``),
``tls`` (the private CA and the SuperNodes' keys), ``weed`` (SeaweedFS's command line and
sockets), ``processes`` (/proc, signals), ``probes`` (free ports, readiness, JSON requests),
``cli`` (``python -m fl_app.deploy``).
"""

from __future__ import annotations

from .deployment import Deployment
from .errors import DeployError
from .runs import RunResult

__all__ = ["DeployError", "Deployment", "RunResult"]
