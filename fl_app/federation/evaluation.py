"""The server's own measurement of the global model: which swipes, which evaluator, and the
release it must beat.

`evaluation.source` picks the swipes every round is measured on: held-out synthetic users
(never any node's), or real people: a fixed 2,000-swipe subsample of the public-val users of
the real swipes (docs/data.md), stratified by user. With real evaluation the best round is also
measured on the dev users at the end, for the report only (nothing is chosen on dev).

A release replaces the one devices serve, so a round must beat *that* model on the same
swipes, not only the run's own earlier rounds: `Incumbent` measures the current release (or,
before any release, the shipped base that sidecars serve) once, with its own decoder spec.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fl_app.checkpoints import CheckpointError, CheckpointStore, StoreUnavailable
from fl_app.decoder.evaluation import score_model
from fl_app.decoder.spec import DecoderSpec, load_arrays
from fl_app.decoder.swipe import Swipe
from fl_app.decoder.training import SwipeDataset
from fl_app.federation.data import heldout_swipes, lexicon_for
from fl_app.federation.run_config import RunConfig

log = logging.getLogger(__name__)

REAL_SAMPLE_SEED = 0  # the public-val subsample is the same in every run


def evaluation_swipes(cfg: RunConfig, spec: DecoderSpec) -> list[Swipe]:
    """The swipes every round of this run is measured on (see the module docstring)."""
    ev = cfg.evaluation
    if ev.source == "real":
        from fl_app.datasets.real import RealSwipesMissing, load_real, stratified_sample

        try:
            val = load_real("public-val")
        except RealSwipesMissing as exc:  # say how to run without them
            raise RealSwipesMissing(
                f"{exc}. evaluation.source=real (the default from the shipped base) measures "
                "every round on real public-val users; evaluation.source=synthetic measures "
                "them on held-out synthetic users and needs no real swipes"
            ) from exc
        rows = stratified_sample(val, ev.real_swipes, seed=REAL_SAMPLE_SEED)
        return [r.swipe for r in rows]
    return heldout_swipes(
        spec,
        seed=cfg.data.seed + ev.seed_offset,
        users=ev.users,
        per_user=ev.swipes_per_user,
        regime=cfg.data.regime,
    )


def describe_evaluation(cfg: RunConfig, n_swipes: int) -> str:
    """What the run's log says its rounds (and releases) are judged on."""
    if cfg.evaluation.source == "real":
        return f"{n_swipes} swipes of real public-val users"
    return f"{n_swipes} swipes of {cfg.evaluation.users} held-out synthetic users"


def dev_swipes() -> list[Swipe]:
    """Every dev user's swipes: the end-of-run report of a real-evaluated run."""
    from fl_app.datasets.real import load_real

    return [r.swipe for r in load_real("dev")]


class Evaluator:
    """Top-1/top-4/MRR and CTC loss of tensors for one decoder spec on fixed swipes."""

    def __init__(self, spec: DecoderSpec, swipes: list[Swipe]) -> None:
        self.spec, self.swipes = spec, swipes
        self.data = SwipeDataset.from_swipes(swipes, spec.features)
        self.model = spec.build_model(device=torch.device("cpu"))
        self.decoder = spec.build_decoder(self.model, lexicon_for(spec.language, spec.lexicon_size))

    def __call__(self, arrays: dict[str, Any]) -> dict[str, float]:
        load_arrays(self.model, arrays)
        self.model.eval()
        return score_model(self.decoder, self.swipes, self.data)


@dataclass
class Incumbent:
    """What devices serve before this run releases anything, measured on this run's swipes."""

    label: str  # "release <run>/<round>", "shipped base", or "none"
    metrics: dict[str, float] | None  # None: nothing to beat (or not measurable: see `floor`)
    measurable: bool = True

    def floor(self, metric: str) -> float | None:
        """The score a round must exceed to be released; +inf when the incumbent could not be
        measured (no automatic release rather than a blind one)."""
        if not self.measurable:
            return math.inf
        return None if self.metrics is None else float(self.metrics[metric])


def measure_incumbent(
    store: CheckpointStore, swipes: list[Swipe], language: str, *, base_counts: bool = True
) -> Incumbent:
    """The current release (or, with `base_counts`, the shipped base before any release) on
    `swipes`. Raises StoreUnavailable during an outage."""
    from fl_app.base import has_base, read_base

    try:
        pointer = store.read_release()
        if pointer is not None:
            ckpt = store.load(str(pointer["run_id"]), int(pointer["round"]))
            spec = DecoderSpec.from_manifest(ckpt.manifest["decoder"])
            label = f"release {pointer['run_id']}/round {pointer['round']}"
            tensors = ckpt.tensors
        elif base_counts and has_base(language):
            tensors, manifest = read_base(language)
            spec = DecoderSpec.from_manifest(manifest["decoder"])
            label = "shipped base"
        else:
            return Incumbent("none", None)
        return Incumbent(label, Evaluator(spec, swipes)(tensors))
    except StoreUnavailable:
        raise  # an outage says nothing about the release: measure it once the store is back
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        log.warning("cannot measure the current release: %s", exc)
        return Incumbent(f"unmeasurable ({exc})", None, measurable=False)


def incumbent_measure(
    cfg: RunConfig, store: CheckpointStore, swipes: list[Swipe], language: str
) -> Callable[[], Incumbent]:
    """How the run measures what its releases must beat (`evaluation.must_beat`)."""
    rule = cfg.evaluation.must_beat
    if rule == "none":
        return lambda: Incumbent("none: evaluation.must_beat=none", None)
    return lambda: measure_incumbent(store, swipes, language, base_counts=rule == "served")
