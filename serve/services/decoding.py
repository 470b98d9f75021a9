"""One batch of predictions on a decode thread: the model once, then each request on its own.

A request's failure is its own. Its model input is checked finite before it is queued
(``model_input``, on the event loop); on the decode thread a shortlist or CTC pass that fails
for one request, or scores that come out non-finite, answer that request ``422 INVALID_SWIPE``
(reason ``UNDECODABLE``), and its neighbours are decoded as if it were not there. The served
module's rows are independent of each other (``fl_app.decoder.model.zero_past_end``), so
the model runs once over the batch whatever one row holds; only a batched model call that
fails anyway sends the batch one by one.

While this thread runs the model (no GIL held), a helper thread builds the shortlists (the
template pass needs only the traces); then both take the batch's requests from one shared
iterator and CTC-score them, so neither waits on a fixed half.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from fl_app.decoder.features import FeatureSpec, swipe_features
from fl_app.decoder.ranking import LearnedDecoder, Shortlist
from fl_app.decoder.swipe import Swipe

from ..errors import ApiError
from .metrics import Metrics
from .model_manager import ServedModel

log = logging.getLogger("serve.predict")

Candidates = list[tuple[str, float]]


def undecodable(message: str) -> ApiError:
    """422 INVALID_SWIPE, reason UNDECODABLE: the served model cannot decode this swipe."""
    return ApiError("INVALID_SWIPE", message, reason="UNDECODABLE")


def model_input(swipe: Swipe, spec: FeatureSpec) -> np.ndarray:
    """The swipe's model features, or 422 UNDECODABLE when they cannot be computed or are not
    finite (a keyboard whose keys are vanishingly small or astronomically far away)."""
    try:
        with np.errstate(all="ignore"):  # overflow is answered below, not warned about
            features = swipe_features(swipe.points, swipe.keyboard, spec)
    except Exception as exc:
        log.info("model input failed", extra={"error_type": type(exc).__name__})
        raise undecodable("the model's input cannot be computed for this swipe") from None
    if not np.isfinite(features).all():
        raise undecodable("the swipe gives non-finite model input on this keyboard")
    return features


@dataclass
class Job:
    """One queued prediction; answered on its event loop, at most once."""

    swipe: Swipe
    features: np.ndarray  # model_input with `feature_spec`
    feature_spec: FeatureSpec
    k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    t0: float
    deadline: float  # perf_counter time after which nobody waits for the answer
    previous: str | None = None  # the word before the cursor (LearnedDecoder.ranked)

    def expired(self, now: float) -> bool:
        # done(): the request timed out or was cancelled (a read-only peek from this thread)
        return now >= self.deadline or self.future.done()

    def answer(self, result: object, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(_deliver, self.future, result, error)


def _deliver(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():  # the request timed out or was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class BatchDecoder:
    """Decodes batches of jobs with a helper thread; ``on_decoded`` runs for each success."""

    def __init__(
        self,
        metrics: Metrics,
        helper: ThreadPoolExecutor,
        on_decoded: Callable[[Job], None],
    ) -> None:
        self.metrics = metrics
        self.helper = helper
        self.on_decoded = on_decoded

    def decode(self, served: ServedModel, jobs: list[Job]) -> None:
        decoder = served.decoder
        n = len(jobs)
        inputs: list[np.ndarray | None] = [None] * n
        for i, job in enumerate(jobs):
            try:
                inputs[i] = self._input(job, decoder.spec)
            except ApiError as err:  # a release changed the features, and this swipe fails them
                self._fail(job, err)
        rows = [i for i in range(n) if inputs[i] is not None]
        shortlists: list[Shortlist | None] = [None] * n
        logps: list[torch.Tensor | None] = [None] * n
        model_done = threading.Event()
        work = iter(rows)  # shared by both threads: a list iterator hands out each index once

        def helper() -> None:
            for i in rows:
                if model_done.is_set():
                    break
                try:
                    with np.errstate(all="ignore"):
                        shortlists[i] = decoder.shortlist(
                            jobs[i].swipe.points, jobs[i].swipe.keyboard
                        )
                except Exception:  # this request's own failure: answered when it is scored
                    pass
            model_done.wait()
            self._finish(served, jobs, inputs, logps, shortlists, work)

        other = self.helper.submit(helper)
        try:
            if rows:
                out = decoder.log_probs_of_features([inputs[i] for i in rows])  # type: ignore[misc]
                for i, logp in zip(rows, out):
                    logps[i] = logp
        except Exception:
            log.exception("batched model call failed; decoding one by one")
        finally:
            model_done.set()
        self._finish(served, jobs, inputs, logps, shortlists, work)
        other.result()

    @staticmethod
    def _input(job: Job, spec: FeatureSpec) -> np.ndarray:
        if job.feature_spec == spec:
            return job.features
        return model_input(job.swipe, spec)

    def _fail(self, job: Job, err: ApiError) -> None:
        self.metrics.predict_undecodable.inc()
        job.answer(None, err)

    def _finish(
        self,
        served: ServedModel,
        jobs: list[Job],
        inputs: list[np.ndarray | None],
        logps: list[torch.Tensor | None],
        shortlists: list[Shortlist | None],
        work: Iterator[int],
    ) -> None:
        """CTC-score the jobs whose index this thread takes from ``work``, and answer them."""
        error_type = ""
        for i in work:
            job, features = jobs[i], inputs[i]
            assert features is not None
            top: Candidates | None = None
            # The batch's evidence first, then once more from scratch: a decoder cache may have
            # been replaced meanwhile. Failing both, the swipe is undecodable.
            for logp, shortlist in ((logps[i], shortlists[i]), (None, None)):
                try:
                    top = self._top_k(served.decoder, job, features, logp, shortlist)
                    break
                except Exception as exc:
                    error_type = type(exc).__name__
            if top is None:
                log.warning("decode failed", extra={"error_type": error_type})
                self._fail(job, undecodable("the served model cannot decode this swipe"))
                continue
            self.on_decoded(job)
            self.metrics.predict_latency.observe(time.perf_counter() - job.t0)
            job.answer((top, served))

    @staticmethod
    def _top_k(
        decoder: LearnedDecoder,
        job: Job,
        features: np.ndarray,
        logp: torch.Tensor | None,
        shortlist: Shortlist | None,
    ) -> Candidates:
        points, keyboard = job.swipe.points, job.swipe.keyboard
        with np.errstate(all="ignore"):
            if logp is None:
                logp = decoder.log_probs_of_features([features])[0]
            scores = decoder.candidate_scores(points, keyboard, logp, shortlist)
            finite = np.isfinite(scores.combined(decoder.fusion))
        if not finite.any():
            raise ValueError("no candidate has a finite score")
        if not finite.all():  # rank only what was scored
            scores = scores.subset(finite)
        return decoder.ranked(scores, job.k, job.previous)
