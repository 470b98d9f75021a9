"""Flower ClientApp entry point; the logic lives in fl_app.federation.client.

Simulated nodes train on a cached synthetic user's swipe store (by partition id); deployed
SuperNodes name their store: `--node-config "swipe-store='/abs/path/swipes.sqlite'"`.
"""

from fl_app.federation.client import make_client_app

app = make_client_app()
