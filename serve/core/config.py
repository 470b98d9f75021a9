"""Sidecar settings: environment variables with the prefix ``SWIPEFL_`` (pydantic-settings).

The object-store credentials are *not* fields here: the S3 backend reads the shared
``SWIPEFL_S3_*`` names itself (``S3Backend.from_env``), the same names the ServerApp and the CLI
use, so a secret is read in one place and never copied into settings dumps or logs. The API
token is a ``SecretStr`` (never printed). docs/sidecar.md lists every setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fl_app.decoder.spec_bounds import MAX_CHECKPOINT_BYTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWIPEFL_", extra="ignore")

    # -- network ----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # -- the door (serve/core/auth.py, serve/guards.py) ------------------------------------
    auth: Literal["token", "none"] = "token"  # none: no token, loopback only
    api_token: SecretStr | None = None  # else <device_dir>/api-token, made on first start
    allowed_hosts: str = "127.0.0.1,localhost,[::1]"  # Host header names; "*": any

    # -- where things live ------------------------------------------------------------------
    device_dir: Path = Path("device")
    swipe_store: Path | None = None  # default: <device_dir>/swipes.sqlite
    checkpoint_store: Literal["local", "s3"] = "local"
    checkpoint_dir: Path = Path("checkpoints")
    checkpoint_prefix: str = ""

    # -- model reloads ----------------------------------------------------------------------
    reload_interval_s: float = Field(30.0, gt=0)
    s3_timeout_s: float = Field(10.0, gt=0)

    # -- checkpoint downloads (a release is outside data: capped and bounded in time) -------
    download_max_bytes: int = Field(MAX_CHECKPOINT_BYTES, ge=1024)  # per file of a release
    download_deadline_s: float = Field(120.0, gt=0)  # the whole download of one release

    # -- limits -----------------------------------------------------------------------------
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_points: int = Field(2000, ge=2)
    max_batch: int = Field(256, ge=1)
    max_k: int = Field(8, ge=1, le=8)
    max_personal_words: int = Field(5000, ge=1)

    # -- prediction -------------------------------------------------------------------------
    predict_workers: int = Field(1, ge=1, le=16)
    predict_max_batch: int = Field(16, ge=1)
    predict_queue: int = Field(256, ge=1)
    predict_timeout_s: float = Field(10.0, gt=0)
    torch_threads: int = Field(1, ge=1)
    # Serve float16 weights (row-independent answers, cheaper than float):
    # fl_app.decoder.model.serving_module; false: float32.
    quantize: bool = True
    switch_interval_ms: float = Field(0.5, gt=0, le=100)  # sys.setswitchinterval (GIL hand-off)

    # -- swipe store ------------------------------------------------------------------------
    retention_max_rows: int | None = Field(None, ge=1)
    retention_max_age_days: float | None = Field(None, gt=0)
    retention_check_s: float = Field(3600.0, gt=0)
    heldout_fraction: float = Field(0.1, ge=0.0, le=1.0)
    # Which rows personalization is judged on: a fixed pseudo-random share ("hash"), or the
    # newest rows by order ("newest": what the person swiped after the training rows).
    heldout_split: Literal["hash", "newest"] = "hash"
    # With no release published yet, serve the base decoder shipped in the package.
    serve_base: bool = True
    ingest_max_group: int = Field(2048, ge=1)

    # -- personalization --------------------------------------------------------------------
    train_min_swipes: int = Field(50, ge=2)
    train_max_swipes: int = Field(5000, ge=2)
    train_epochs: float = Field(3.0, gt=0)
    train_lr: float = Field(1e-3, gt=0)
    train_batch_size: int = Field(32, ge=1)
    train_accept_margin: float = 0.0
    # > 0: personalize on the decoder's own close calls (the word-level objective the base was
    # finished with, beside CTC; fl_app.decoder.discriminative); 0: CTC only, the default:
    # on public-val users it serves 0.4 points more top-1 than word-level (dev: 0.2;
    # bench/results/personalization.md).
    train_word_weight: float = Field(0.0, ge=0)
    train_word_candidates: int = Field(16, ge=2)  # the truth and its best-ranked rivals

    # -- logs -------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: bool = False  # log every request (errors are always logged)

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @property
    def swipe_store_path(self) -> Path:
        return self.swipe_store or self.device_dir / "swipes.sqlite"

    @property
    def token_file_path(self) -> Path:
        return self.device_dir / "api-token"

    @property
    def allowed_host_names(self) -> frozenset[str] | None:
        """Lower-case names a Host header may carry; None when any is allowed (``*``)."""
        names = {n.strip().lower() for n in self.allowed_hosts.split(",") if n.strip()}
        return None if "*" in names else frozenset(names)

    @property
    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None
