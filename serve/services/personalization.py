"""On-device personalization: fine-tune the release on this device's swipes, keep it if better.

A job (one at a time) runs in its own thread:

1. reads the device's labelled swipes from the swipe store: the ``train`` split to fine-tune
   on, the ``heldout`` split (the store's fixed per-row split) to judge on;
2. scores the *release* on the held-out slice (``fl_app.decoder.evaluation.score_model``);
3. fine-tunes a copy of the release, reporting progress: on the word-level objective
   (``train_word_weight`` > 0: the release's decoder mines the swipes' close
   calls and the model learns to rank the truth first, beside CTC;
   ``fl_app.decoder.discriminative.local_word_level_round``, what a federated client runs),
   or on CTC alone (the default; ``fl_app.decoder.training.train``);
4. scores the fine-tuned model on the same slice and swaps it in only if its Swipe MRR beats
   the release's by more than ``train_accept_margin`` (ties keep the release);
5. the accepted model is written to ``<device_dir>/personal`` with a manifest naming its base
   release (sha256), so it survives a restart while that release is current; a new release
   replaces it.

Raw swipes are read locally and never leave the device; the job does not move the store's
federated-training marker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fl_app.decoder.discriminative import local_word_level_round
from fl_app.decoder.evaluation import score_model
from fl_app.decoder.model import SwipeModel
from fl_app.decoder.ranking import LearnedDecoder
from fl_app.decoder.spec import DecoderSpec, model_arrays
from fl_app.decoder.swipe import Swipe, contract_swipes
from fl_app.decoder.training import Progress, SwipeDataset, TrainConfig, train
from fl_app.swipes.store import SwipeStore

from ..errors import ApiError, model_not_loaded
from .metrics import Metrics
from .model_manager import ModelManager, ServedModel

log = logging.getLogger("serve.personalize")

MAX_JOBS_KEPT = 16


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued | running | succeeded | failed | cancelled
    phase: str = "queued"  # loading | evaluating_release | training | evaluating | saving | done
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    base: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["progress"] = self.step / self.total_steps if self.total_steps else 0.0
        return out


@dataclass
class TrainOptions:
    epochs: float
    lr: float
    batch_size: int
    accept_margin: float
    min_swipes: int
    max_swipes: int
    word_weight: float  # > 0: the word-level objective beside CTC (module docstring)
    word_candidates: int


class Personalizer:
    def __init__(
        self, swipes: SwipeStore, manager: ModelManager, metrics: Metrics, options: TrainOptions
    ) -> None:
        self.swipes = swipes
        self.manager = manager
        self.metrics = metrics
        self.options = options
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- API -------------------------------------------------------------------------------

    def start(self, epochs: float | None = None, lr: float | None = None) -> Job:
        with self._lock:
            if self._running is not None:
                raise ApiError(
                    "TRAINING_IN_PROGRESS",
                    "a personalization job is running",
                    job_id=self._running.id,
                )
            served = self.manager.current
            if served is None:
                raise model_not_loaded()
            n = self.swipes.count()
            if n < self.options.min_swipes:
                raise ApiError(
                    "NOT_ENOUGH_SWIPES",
                    f"personalization needs at least {self.options.min_swipes} stored swipes, "
                    f"the store has {n}",
                )
            job = Job(id=uuid.uuid4().hex[:16], base=dict(served.version))
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS_KEPT:
                self._jobs.pop(next(iter(self._jobs)))
            self._running = job
            opts = TrainOptions(**{**asdict(self.options)})
            if epochs is not None:
                opts.epochs = epochs
            if lr is not None:
                opts.lr = lr
            self._thread = threading.Thread(
                target=self._run, args=(job, served, opts), name="swipefl-train", daemon=True
            )
            self._thread.start()
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self) -> Job | None:
        return next(reversed(self._jobs.values()), None) if self._jobs else None

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- the job ---------------------------------------------------------------------------

    def _run(self, job: Job, served: ServedModel, opts: TrainOptions) -> None:
        job.state, job.started_at = "running", time.time()
        log.info("personalization started", extra={"job_id": job.id})
        try:
            job.result = self._personalize(job, served, opts)
            job.state = "cancelled" if job.result.get("cancelled") else "succeeded"
            self.metrics.train_jobs.labels(job.result["outcome"]).inc()
        except ApiError as exc:
            job.state, job.error = "failed", exc.message
            self.metrics.train_jobs.labels("failed").inc()
        except Exception as exc:
            job.state, job.error = "failed", f"internal error ({type(exc).__name__})"
            self.metrics.train_jobs.labels("failed").inc()
            log.error(
                "personalization failed", extra={"job_id": job.id, "error_type": type(exc).__name__}
            )
        finally:
            job.phase, job.finished_at = "done", time.time()
            with self._lock:
                self._running = None
            log.info(
                "personalization finished",
                extra={
                    "job_id": job.id,
                    "state": job.state,
                    "outcome": (job.result or {}).get("outcome"),
                },
            )

    def _personalize(self, job: Job, served: ServedModel, opts: TrainOptions) -> dict[str, Any]:
        spec = served.spec
        job.phase = "loading"

        def usable(rows: list) -> list[Swipe]:
            """The release's language, and today's contract: a row an older version stored
            over a keyboard now refused would make non-finite features."""
            return [
                s
                for s in contract_swipes(row.swipe for row in rows)
                if s.keyboard.language == spec.language
            ]

        heldout = usable(self.swipes.load(split="heldout", limit=opts.max_swipes))
        train_set = usable(self.swipes.load(split="train", limit=opts.max_swipes))
        if len(heldout) < 2 or len(train_set) < 2:
            raise ApiError(
                "NOT_ENOUGH_SWIPES",
                f"need at least 2 held-out and 2 training swipes, have {len(heldout)} and "
                f"{len(train_set)}",
            )
        words = self.manager.words(spec.language)
        lexicon = spec.lexicon().with_words(words) if words else spec.lexicon()

        job.phase = "evaluating_release"
        release = spec.model_with(served.tensors)
        # One decoder: its lexicon's template banks and CTC targets serve the release's
        # score, the mining and the candidate's score (LearnedDecoder.with_model).
        decoder = spec.build_decoder(release, lexicon)
        held_data = SwipeDataset.from_swipes(heldout, spec.features)
        base_metrics = score_model(decoder, heldout, held_data)

        job.phase = "training"
        model = spec.model_with(served.tensors)

        def progress(p: Progress) -> None:
            job.step, job.total_steps, job.loss = p.step, p.total_steps, p.loss

        config = TrainConfig(epochs=opts.epochs, lr=opts.lr, batch_size=opts.batch_size)
        if opts.word_weight > 0:
            fit = _train_word_level(model, decoder, train_set, config, opts, progress, self._stop)
        else:
            fit = _train_ctc(model, spec, train_set, config, progress, self._stop)
        if fit.pop("cancelled"):
            return {"outcome": "cancelled", "cancelled": True, "accepted": False}

        job.phase = "evaluating"
        model.eval()
        cand_metrics = score_model(decoder.with_model(model), heldout, held_data)
        gain = cand_metrics["mrr"] - base_metrics["mrr"]
        accepted = gain > opts.accept_margin + 1e-9  # not float noise
        result: dict[str, Any] = {
            "accepted": accepted,
            "outcome": "accepted" if accepted else "rejected",
            "release_metrics": base_metrics,
            "personalized_metrics": cand_metrics,
            "mrr_gain": gain,
            "accept_margin": opts.accept_margin,
            "n_train": len(train_set),
            "n_heldout": len(heldout),
            **fit,
        }
        if not accepted:
            return result

        job.phase = "saving"
        meta = {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": {"heldout": cand_metrics, "release_heldout": base_metrics},
            "train": {
                **config.to_dict(),
                "objective": fit["objective"],
                "word_weight": opts.word_weight,
                "n_train": len(train_set),
                "n_heldout": len(heldout),
                "steps": fit["steps"],
            },
        }
        installed = self.manager.install_personal(
            served.release["sha256"], model_arrays(model), meta
        )
        if not installed:
            result.update(
                accepted=False,
                outcome="stale",
                message="the release changed while training; result discarded",
            )
        return result


def _train_ctc(
    model: SwipeModel,
    spec: DecoderSpec,
    swipes: list[Swipe],
    config: TrainConfig,
    progress: Callable[[Progress], None],
    stop: threading.Event,
) -> dict[str, Any]:
    """Fine-tune on the CTC loss of this device's training swipes (`train`, the ClientApp's
    loop)."""
    data = SwipeDataset.from_swipes(swipes, spec.features)
    outcome = train(model, data, config, progress=progress, should_stop=stop.is_set)
    return {
        "objective": "ctc",
        "cancelled": outcome.cancelled,
        "steps": outcome.steps,
        "train_loss": outcome.loss,
        "train_seconds": outcome.seconds,
    }


def _train_word_level(
    model: SwipeModel,
    decoder: LearnedDecoder,
    swipes: list[Swipe],
    config: TrainConfig,
    opts: TrainOptions,
    progress: Callable[[Progress], None],
    stop: threading.Event,
) -> dict[str, Any]:
    """Fine-tune on this device's close calls: the release's decoder ranks each training
    swipe's shortlist and the model learns to put the truth first (the word-level objective
    the base was finished with, beside CTC). CTC alone raises the right letters' likelihood
    but knows nothing of the rivals a decoder weighs them against."""
    stats = local_word_level_round(
        model,
        decoder,
        swipes,
        config,
        opts.word_weight,
        opts.word_candidates,
        progress=progress,
        should_stop=stop.is_set,
    )
    return {
        "objective": "word-level",
        "cancelled": stats["steps"] < stats["planned_steps"],
        "steps": int(stats["steps"]),
        "mined": int(stats["choices"]),
        "train_loss": stats["ctc_loss"],
        "train_word_loss": stats["word_loss"],
        "train_seconds": stats["seconds"],
    }
