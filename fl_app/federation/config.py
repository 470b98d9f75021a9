"""Configuration: compose `conf/` (Hydra), check it, and turn it into the objects a run needs.

`conf/` is the one source of truth. `flwr run .` hands the ServerApp one run-config string,
`overrides` (Hydra override syntax, e.g. ``strategy=fedprox model.hidden=64``), which `compose`
applies; `python -m fl_app.federation.experiment` composes the same tree from its command line. `finalize`
fills what depends on the place and time of a run (absolute paths, the run id) so the resolved
config written into every manifest says exactly what ran. Secrets never enter the config: the
checkpoint store reads them from the environment (``SWIPEFL_S3_*``).
"""

from __future__ import annotations

import os
import secrets
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fl_app.checkpoints.format import redact_secrets
from fl_app.decoder.spec import DecoderSpec

CONF_DIR_ENV = "SWIPEFL_CONF_DIR"
CACHE_ENV = "SWIPEFL_CACHE"
STRATEGIES = ("fedavg", "fedprox", "fedadam")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """The composed configuration is unusable (the message names the key)."""


def conf_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The absolute path of `conf/`: `explicit`, else $SWIPEFL_CONF_DIR, else beside `fl_app`.

    The ServerApp passes the `conf/` inside its app bundle: the tree `flwr run .` submitted.
    """
    env = os.environ.get(CONF_DIR_ENV)
    if explicit is not None:
        path = Path(explicit)
    elif env:
        path = Path(env)
    else:
        path = Path(__file__).resolve().parents[2] / "conf"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no Hydra config tree at {path} (set {CONF_DIR_ENV})")
    return path.resolve()


def split_overrides(overrides: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`"a=1 'b=x y'"` -> `["a=1", "b=x y"]` (shell-style quoting); lists pass through."""
    if overrides is None:
        return []
    if isinstance(overrides, list | tuple):
        return [str(o) for o in overrides]
    return shlex.split(str(overrides))


def compose(
    overrides: str | list[str] | tuple[str, ...] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides (outside of `@hydra.main`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    items = split_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(conf_dir(config_dir)), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=items)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose conf/ with overrides {items}: {exc}") from exc


def default_cache_dir() -> Path:
    """Where synthetic swipe stores are cached: $SWIPEFL_CACHE or ~/.cache/swipe-fl."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "swipe-fl"


def new_run_id(strategy: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{strategy}-{secrets.token_hex(3)}"


def _absolute(path: str | os.PathLike[str], root: Path) -> str:
    p = Path(os.path.expanduser(str(path)))
    return str(p if p.is_absolute() else (root / p).resolve())


def finalize(cfg: DictConfig, *, run_id: str | None = None) -> DictConfig:
    """A resolved, checked copy of `cfg` with absolute paths and a run id filled in.

    `run_id` (when given) wins over `cfg.run_id`; a missing run id stays None here and is chosen
    by the server once it knows whether it resumes in place (see fl_app.federation.resume).
    """
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    out = OmegaConf.create(data)
    root = Path(out.paths.root).expanduser() if out.paths.get("root") else Path.cwd()
    root = root.resolve()
    out.paths.root = str(root)
    out.paths.outputs = _absolute(out.paths.outputs, root)
    if out.store.kind == "local":
        out.store.root = _absolute(out.store.root, root)
    cache = out.data.get("cache_dir")
    out.data.cache_dir = _absolute(cache, root) if cache else str(default_cache_dir() / "synthetic")
    if out.checkpoints.get("spool_dir"):
        out.checkpoints.spool_dir = _absolute(out.checkpoints.spool_dir, root)
    if run_id is not None:
        out.run_id = run_id
    validate(out)
    return out


def _need(cond: bool, key: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"config {key}: {what}")


def validate(cfg: DictConfig) -> None:
    """Refuse values that would fail later in a less readable way."""
    fed, train, ev = cfg.federation, cfg.train, cfg.evaluation
    _need(cfg.strategy.name in STRATEGIES, "strategy.name", f"one of {STRATEGIES}")
    _need(int(fed.num_rounds) >= 1, "federation.num_rounds", "at least 1")
    _need(0.0 < float(fed.fraction_train) <= 1.0, "federation.fraction_train", "in (0, 1]")
    _need(0.0 <= float(fed.fraction_evaluate) <= 1.0, "federation.fraction_evaluate", "in [0, 1]")
    _need(0.0 <= float(fed.min_success_share) <= 1.0, "federation.min_success_share", "in [0, 1]")
    for key in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
        _need(int(fed[key]) >= 0, f"federation.{key}", "non-negative")
    _need(float(train.epochs) > 0, "train.epochs", "positive")
    _need(float(train.lr) > 0, "train.lr", "positive")
    _need(
        str(train.lr_schedule) in LR_SCHEDULES,
        "train.lr_schedule",
        f"one of {LR_SCHEDULES}",
    )
    _need(int(train.batch_size) >= 1, "train.batch_size", "at least 1")
    _need(int(train.min_swipes) >= 1, "train.min_swipes", "at least 1")
    _need(int(ev.users) >= 1 and int(ev.swipes_per_user) >= 1, "evaluation", "users/swipes >= 1")
    _need(int(cfg.data.swipes_per_user) >= 1, "data.swipes_per_user", "at least 1")
    _need(0.0 <= float(cfg.data.heldout_fraction) < 1.0, "data.heldout_fraction", "in [0, 1)")
    _need(cfg.data.regime in ("train", "shifted"), "data.regime", "train or shifted")
    _need(cfg.store.kind in ("local", "s3"), "store.kind", "local or s3")
    if cfg.strategy.name == "fedprox":
        _need(float(cfg.strategy.mu) >= 0, "strategy.mu", "non-negative")
    if cfg.resume.get("round") is not None:
        _need(cfg.resume.get("run_id") is not None, "resume.round", "needs resume.run_id")
    if cfg.get("run_id"):
        from fl_app.checkpoints import check_run_id
        from fl_app.checkpoints.errors import CheckpointError

        try:
            check_run_id(str(cfg.run_id))
        except CheckpointError as exc:
            raise ConfigError(f"config run_id: {exc}") from None
    decoder_spec(cfg)  # architecture keys present and well-typed


def decoder_spec(cfg: DictConfig) -> DecoderSpec:
    """The decoder the run trains: model group + the data group's language and lexicon size."""
    try:
        return DecoderSpec(
            language=str(cfg.data.language),
            lexicon_size=int(cfg.data.lexicon_size),
            conv_channels=int(cfg.model.conv_channels),
            hidden=int(cfg.model.hidden),
            gru_layers=int(cfg.model.gru_layers),
            dropout=float(cfg.model.dropout),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"config model/data: {exc}") from exc


def public_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, with any secret-looking key's value removed."""
    data = OmegaConf.to_container(cfg, resolve=True)
    return redact_secrets(data)
