"""Resuming a run: load a checkpoint, pick the run id to continue under, refuse to overwrite.

``resume.run_id=R`` continues from R's newest round, ``resume.round=N`` from round N. Round
numbers continue (the first new round is N+1). Resuming R's newest round continues in R itself;
resuming an older round (or setting ``run_id``) starts a new run whose first checkpoint is a copy
of round N with that checkpoint as its parent, so no existing checkpoint is ever overwritten.
New run ids come from `fl_app.checkpoints.base.new_run_id`, which also checks them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fl_app.checkpoints import (
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    CheckpointStore,
    StoreUnavailable,
    checkpoint_path,
)
from fl_app.checkpoints.base import new_run_id
from fl_app.decoder.spec import DecoderSpec
from fl_app.federation.run_config import RunConfig
from fl_app.federation.strategies import STATE_FILE

log = logging.getLogger(__name__)


class ResumeError(RuntimeError):
    """The run cannot start from the requested checkpoint (the message names it)."""


@dataclass
class ResumePoint:
    run_id: str
    round: int
    arrays: dict[str, np.ndarray]
    strategy_state: bytes | None

    @property
    def path(self) -> str:
        return checkpoint_path(self.run_id, self.round)


def load_resume_point(
    store: CheckpointStore, run_id: str, server_round: int | None, spec: DecoderSpec
) -> ResumePoint:
    """Load and verify the checkpoint to resume from; every failure names the checkpoint."""
    what = checkpoint_path(run_id, server_round) if server_round is not None else f"run {run_id}"
    try:
        ckpt = store.load(run_id, server_round)
    except CheckpointCorrupt as exc:
        raise ResumeError(f"cannot resume from {what}: checkpoint is corrupt: {exc}") from exc
    except CheckpointNotFound as exc:
        raise ResumeError(f"cannot resume from {what}: {exc}") from exc
    except StoreUnavailable as exc:
        raise ResumeError(
            f"cannot resume from {what}: checkpoint store unavailable: {exc}"
        ) from exc
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume from {what}: {exc}") from exc
    saved = (ckpt.manifest.get("decoder") or {}).get("model")
    wanted = spec.to_manifest()["model"]
    if saved is not None and saved != wanted:
        diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        raise ResumeError(
            f"cannot resume from {ckpt.path}: it holds a different model architecture "
            f"(saved vs configured: {diff}); resume with the same model/data settings"
        )
    return ResumePoint(
        run_id=ckpt.run_id,
        round=ckpt.round,
        arrays=dict(ckpt.tensors),
        strategy_state=ckpt.extra.get(STATE_FILE),
    )


def choose_run_id(cfg: RunConfig, store: CheckpointStore, resume: ResumePoint | None) -> str:
    """The id this run writes under (see the module docstring); refuses to overwrite rounds."""
    if cfg.run_id:
        run_id = cfg.run_id
    elif resume is not None and _is_newest(store, resume):
        run_id = resume.run_id
    else:
        return new_run_id(cfg.strategy.name)  # fresh and random: nothing to overwrite
    start = resume.round if resume is not None else -1
    try:
        existing = store.list_rounds(run_id)
    except StoreUnavailable as exc:
        log.warning("cannot list run %s (%s); assuming it is new", run_id, exc)
        return run_id
    later = [r for r in existing if r > start]
    if later:
        where = f"resuming from round {start}" if resume is not None else "a new run"
        raise ResumeError(
            f"run {run_id} already has checkpoints for rounds {later} in {store.describe()}: "
            f"{where} would overwrite them; choose another run_id"
        )
    return run_id


def _is_newest(store: CheckpointStore, resume: ResumePoint) -> bool:
    try:
        return store.latest_round(resume.run_id) == resume.round
    except StoreUnavailable:
        return False
