"""Flower ServerApp entry point (`flwr run .`); the logic lives in fl_app.federation.server.

Run config (pyproject [tool.flwr.app.config]): `overrides`, Hydra overrides for conf/ (the copy
in this app bundle), and the keys a Flower user types: `num-server-rounds`, `strategy`,
`fraction-train`, `local-epochs`, `lr` (fl_app.federation.run_keys; an explicit key wins over
`overrides`, which wins over conf/), e.g.
`flwr run . --run-config "num-server-rounds=5 strategy=\"fedprox\" overrides='model.hidden=64'"`.
"""

from pathlib import Path

from fl_app.federation.server import make_server_app

app = make_server_app(conf_dir=Path(__file__).resolve().parent / "conf")
