"""Flower ServerApp entry point (`flwr run .`); the logic lives in fl_app.federation.server.

Run config: one key, `overrides`, carrying Hydra overrides for conf/ (the copy in this app
bundle), e.g. `flwr run . --run-config "overrides='strategy=fedprox model.hidden=64'"`.
"""

from pathlib import Path

from fl_app.federation.server import make_server_app

app = make_server_app(conf_dir=Path(__file__).resolve().parent / "conf")
