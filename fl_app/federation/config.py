"""Configuration: compose `conf/` (Hydra), check it, and read it into the typed run config.

`conf/` is the one source of truth. `flwr run .` hands the ServerApp a run-config string,
`overrides` (Hydra override syntax, e.g. ``strategy=fedprox model.hidden=64``), and the few keys
a Flower user types (``num-server-rounds``, ``strategy``, ...; `fl_app.federation.run_keys`),
which `run_overrides` turns into one list of overrides for `compose` to apply;
`python -m fl_app.federation.experiment` composes the same tree from its command line.
`finalize` fills what depends on the place and time of a run (absolute paths, the run id) and
returns a `RunConfig` (fl_app.federation.run_config) whose resolved data, written into every
manifest, says exactly what ran. Secrets never enter the config: the checkpoint store reads them
from the environment (``SWIPEFL_S3_*``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fl_app.checkpoints.format import redact_secrets
from fl_app.decoder.spec import DecoderSpec
from fl_app.federation.run_config import (
    INIT_BASE,
    ConfigError,
    FedProxConfig,
    RunConfig,
    read_run_config,
)
from fl_app.federation.run_keys import key_overrides

__all__ = [
    "ConfigError",
    "compose",
    "conf_dir",
    "default_cache_dir",
    "finalize",
    "public_config",
    "refuse_renamed",
    "run_overrides",
    "split_overrides",
    "validate",
]

CONF_DIR_ENV = "SWIPEFL_CONF_DIR"
CACHE_ENV = "SWIPEFL_CACHE"
OVERRIDES_KEY = "overrides"  # the Hydra run-config key (pyproject [tool.flwr.app.config])
# Config groups that were renamed: old overrides are refused with the new name.
RENAMED_GROUPS = {"store": "checkpoints"}


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


def run_overrides(run_config: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides a Flower run config carries: `overrides`, then the keys that are set
    (`run_keys`), so an explicit key wins over `overrides`, which wins over conf/."""
    items = split_overrides(str(run_config.get(OVERRIDES_KEY, "") or ""))
    return items + key_overrides(run_config)


def refuse_renamed(overrides: Iterable[str]) -> None:
    """Refuse overrides of a renamed group (`store=s3`), naming the new one (`checkpoints=s3`)."""
    for item in overrides:
        sign = item[: len(item) - len(item.lstrip("+~"))]
        key = item[len(sign) :].split("=", 1)[0]
        group = key.split(".", 1)[0].split("@", 1)[0]
        if group in RENAMED_GROUPS:
            new = RENAMED_GROUPS[group]
            renamed = sign + new + item[len(sign) + len(group) :]
            raise ConfigError(f"the config group `{group}` is now `{new}`: use {renamed}")


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
    refuse_renamed(items)
    try:
        with initialize_config_dir(config_dir=str(conf_dir(config_dir)), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=items)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose conf/ with overrides {items}: {exc}") from exc
    refuse_base_conflicts(str(cfg.get("init", "random")), items)
    return cfg


# What `init=base` takes from the shipped base's manifest: overriding it is a contradiction.
BASE_OWNED = ("model", "data.lexicon_size", "data.language")


def refuse_base_conflicts(init: str, overrides: Iterable[str]) -> None:
    """With `init=base` the base's whole decoder spec (architecture, lexicon, template and
    fusion weights) is the run's: an override of one of them is refused, naming `init=random`."""
    if init != INIT_BASE:
        return
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if any(key == owned or key.startswith(owned + ".") for owned in BASE_OWNED):
            raise ConfigError(
                f"{item}: with init=base the decoder (architecture, lexicon, template and "
                "fusion weights) is the shipped base's; add init=random to train another one"
            )


def default_cache_dir() -> Path:
    """Where synthetic swipe stores are cached: $SWIPEFL_CACHE or ~/.cache/swipe-fl."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "swipe-fl"


def _absolute(path: str | os.PathLike[str], root: Path) -> str:
    p = Path(os.path.expanduser(str(path)))
    return str(p if p.is_absolute() else (root / p).resolve())


def finalize(cfg: DictConfig, *, run_id: str | None = None) -> RunConfig:
    """The typed, checked run config of `cfg`, with absolute paths and a run id filled in.

    `run_id` (when given) wins over `cfg.run_id`; a missing run id stays None here and is chosen
    by the server once it knows whether it resumes in place (see fl_app.federation.resume).
    """
    data = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(data, dict):
        raise ConfigError(f"the composed config is not a mapping: {data!r}")
    out = OmegaConf.create(data)
    root = Path(out.paths.root).expanduser() if out.paths.get("root") else Path.cwd()
    root = root.resolve()
    out.paths.root = str(root)
    out.paths.outputs = _absolute(out.paths.outputs, root)
    if out.checkpoints.get("kind") == "local" and out.checkpoints.get("root"):
        out.checkpoints.root = _absolute(out.checkpoints.root, root)
    if out.data.get("stores_dir"):
        out.data.stores_dir = _absolute(out.data.stores_dir, root)
    cache = out.data.get("cache_dir")
    out.data.cache_dir = _absolute(cache, root) if cache else str(default_cache_dir() / "synthetic")
    if out.checkpoints.get("spool_dir"):
        out.checkpoints.spool_dir = _absolute(out.checkpoints.spool_dir, root)
    if run_id is not None:
        out.run_id = run_id
    plain = OmegaConf.to_container(out)
    assert isinstance(plain, dict)
    if plain.get("init") == INIT_BASE:
        _take_base_spec(plain, root)
    _choose_evaluation_source(plain)
    run = read_run_config(plain)
    validate(run)
    return run


def _choose_evaluation_source(plain: dict[str, Any]) -> None:
    """`evaluation.source: null` resolves by where the run starts. From the base (trained for
    real people) a release must beat it on real public-val users: synthetic held-out users
    rank its fine-tuned rounds differently from real ones (bench/results/main-job.md). From
    random weights (research, small lexicons) the synthetic held-out users are the measure.
    The resolved value is written into the config, so every manifest says which ran."""
    evaluation = plain.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("source") is None:
        from_base = plain.get("init") == INIT_BASE and plain["data"].get("language") == "en"
        evaluation["source"] = "real" if from_base else "synthetic"


def _take_base_spec(plain: dict[str, Any], root: Path) -> None:
    """Write the base's decoder (the shipped one, or `init_from`'s) into the config, so every
    manifest says what ran."""
    from fl_app.base import NoBaseModel, base_dir, base_manifest
    from fl_app.checkpoints import CheckpointError
    from fl_app.checkpoints.format import read_manifest_dir

    language = str(plain["data"]["language"])
    folder = plain.get("init_from")
    try:
        if folder:
            folder = _absolute(folder, root)
            manifest = read_manifest_dir(folder)
        else:
            folder = str(base_dir(language))
            manifest = base_manifest(language)
    except NoBaseModel as exc:
        raise ConfigError(f"init=base: {exc}; use init=random") from None
    except (OSError, CheckpointError) as exc:
        raise ConfigError(f"init_from={folder}: not a checkpoint folder ({exc})") from None
    spec = DecoderSpec.from_manifest(manifest["decoder"])
    plain["model"] = {
        "conv_channels": spec.conv_channels,
        "hidden": spec.hidden,
        "gru_layers": spec.gru_layers,
        "dropout": spec.dropout,
        "resample": spec.resample,
        "template": spec.template.to_dict(),
        "fusion": spec.fusion.to_dict(),
    }
    plain["data"]["lexicon_size"] = spec.lexicon_size
    plain["init_from"] = folder
    plain["init_checkpoint"] = {"dir": folder, "sha256": manifest["sha256"]}


def _need(cond: bool, key: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"config {key}: {what}")


def validate(cfg: RunConfig) -> None:
    """Refuse values that would fail later in a less readable way (types are checked already)."""
    fed, train, ev, data = cfg.federation, cfg.train, cfg.evaluation, cfg.data
    _need(fed.num_rounds >= 1, "federation.num_rounds", "at least 1")
    _need(0.0 < fed.fraction_train <= 1.0, "federation.fraction_train", "in (0, 1]")
    _need(0.0 <= fed.fraction_evaluate <= 1.0, "federation.fraction_evaluate", "in [0, 1]")
    _need(0.0 <= fed.min_success_share <= 1.0, "federation.min_success_share", "in [0, 1]")
    for key, nodes in (
        ("min_train_nodes", fed.min_train_nodes),
        ("min_evaluate_nodes", fed.min_evaluate_nodes),
        ("min_available_nodes", fed.min_available_nodes),
    ):
        _need(nodes >= 0, f"federation.{key}", "non-negative")
    _need(train.epochs > 0, "train.epochs", "positive")
    _need(train.lr > 0, "train.lr", "positive")
    _need(train.batch_size >= 1, "train.batch_size", "at least 1")
    _need(train.min_swipes >= 1, "train.min_swipes", "at least 1")
    _need(train.word_weight >= 0, "train.word_weight", "non-negative")
    _need(train.word_candidates >= 2, "train.word_candidates", "at least 2 (the truth and a rival)")
    _need(ev.users >= 1 and ev.swipes_per_user >= 1, "evaluation", "users/swipes >= 1")
    if data.kind == "stores":
        _need(
            data.stores_dir is not None and any(data.stores_dir.glob("*.sqlite")),
            "data.stores_dir",
            f"a folder of <user>.sqlite swipe stores (got {data.stores_dir})",
        )
    else:
        _need(data.swipes_per_user >= 1, "data.swipes_per_user", "at least 1")
    _need(0.0 <= data.heldout_fraction < 1.0, "data.heldout_fraction", "in [0, 1)")
    if isinstance(cfg.strategy, FedProxConfig):
        _need(cfg.strategy.mu >= 0, "strategy.mu", "non-negative")
    if cfg.resume.round is not None:
        _need(cfg.resume.run_id is not None, "resume.round", "needs resume.run_id")
    if cfg.run_id:
        from fl_app.checkpoints import check_run_id
        from fl_app.checkpoints.errors import CheckpointError

        try:
            check_run_id(cfg.run_id)
        except CheckpointError as exc:
            raise ConfigError(f"config run_id: {exc}") from None


def public_config(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain data, with any secret-looking key's value removed."""
    return redact_secrets(cfg.resolved)
