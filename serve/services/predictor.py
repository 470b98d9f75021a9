"""Predictions off the event loop: decode threads, concurrent requests batched.

A request's model input (``swipe_features``, numpy) is computed on the event loop as it
arrives, while the decode thread runs the model on the batch before. Requests queue up; a decode
thread takes whatever is waiting (up to ``max_batch``), runs the model once over the batch
(``LearnedDecoder.log_probs_of_features``; the served model is TorchScript, so the whole forward
runs without the GIL) and scores each swipe's shortlist, with the ``ServedModel`` it read once
for the batch. A helper thread per decode thread builds the shortlists (template pass, numpy)
while the model runs; then both take the batch's jobs from one shared iterator and CTC-score
them: the model's and CTC's kernels release the GIL, so a batch uses two cores. Results go back to the event loop with
``call_soon_threadsafe``. The event loop never runs model code. With ``workers`` > 1 several
threads decode at once; a decoder is only read by them (its caches fill by plain assignment).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from fl_app.decoder.features import FeatureSpec, swipe_features
from fl_app.decoder.ranking import LearnedDecoder, Shortlist
from fl_app.decoder.swipe import Swipe

from ..errors import ApiError, model_not_loaded
from .metrics import Metrics
from .model_manager import ModelManager, ServedModel

log = logging.getLogger("serve.predict")

Candidates = list[tuple[str, float]]


@dataclass
class _Job:
    swipe: Swipe
    features: np.ndarray | None  # computed on the event loop with `feature_spec`
    feature_spec: FeatureSpec
    k: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    t0: float


def _deliver(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():  # the request timed out or was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Predictor:
    def __init__(
        self,
        manager: ModelManager,
        metrics: Metrics,
        *,
        max_batch: int = 16,
        queue_size: int = 256,
        timeout_s: float = 10.0,
        workers: int = 1,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self.workers = max(1, int(workers))
        self._threads: list[threading.Thread] = []
        self._helper = ThreadPoolExecutor(self.workers, thread_name_prefix="swipefl-decode-helper")
        self._count_lock = threading.Lock()
        self.served = 0

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"swipefl-decode-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)  # one stop mark per thread, after the queued requests
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        self._helper.shutdown(wait=False, cancel_futures=True)

    async def predict(self, swipe: Swipe, k: int) -> tuple[Candidates, ServedModel]:
        served = self.manager.current
        if served is None:
            raise model_not_loaded()
        t0 = time.perf_counter()
        # The model's input features are computed here, while the decode thread runs the model
        # on the batch before: numpy on small arrays holds the GIL, so on the decode thread they
        # would lengthen every batch.
        spec = served.decoder.spec
        try:
            features: np.ndarray | None = swipe_features(swipe.points, swipe.keyboard, spec)
        except Exception:  # the decode thread retries it, and fails only this request
            features = None
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        try:
            self._queue.put_nowait(_Job(swipe, features, spec, k, future, loop, t0))
        except queue.Full:
            raise ApiError(
                "OVERLOADED", "too many predictions waiting", headers={"Retry-After": "1"}
            ) from None
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(
                "OVERLOADED", "prediction timed out", headers={"Retry-After": "1"}
            ) from None

    # -- the decode thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._decode_batch(batch)
            if stop:
                return

    def _decode_batch(self, batch: list[_Job]) -> None:
        served = self.manager.current
        if served is None:
            for job in batch:
                job.loop.call_soon_threadsafe(_deliver, job.future, None, model_not_loaded())
            return
        self.metrics.predict_batch.observe(len(batch))
        decoder = served.decoder
        n = len(batch)
        shortlists: list[Shortlist | None] = [None] * n
        logps: list[torch.Tensor | None] = [None] * n
        model_done = threading.Event()
        work = iter(range(n))  # shared by both threads: list iterators hand out each index once

        def helper() -> None:
            # While this thread runs the model (no GIL held), the helper builds shortlists; then
            # both threads take jobs from `work` and CTC-score them, so neither waits on a half.
            for i in range(n):
                if model_done.is_set():
                    break
                try:
                    shortlists[i] = decoder.shortlist(
                        batch[i].swipe.points, batch[i].swipe.keyboard
                    )
                except Exception:
                    log.exception("shortlist failed; decoding one by one")
                    break
            model_done.wait()
            self._finish(served, batch, logps, shortlists, work)

        other = self._helper.submit(helper)
        try:
            logps[:] = decoder.log_probs_of_features(
                [
                    j.features
                    if j.features is not None and j.feature_spec == decoder.spec
                    # else a release changed the features (or they failed on the loop)
                    else swipe_features(j.swipe.points, j.swipe.keyboard, decoder.spec)
                    for j in batch
                ]
            )
        except Exception:
            log.exception("batched model call failed; decoding one by one")
        finally:
            model_done.set()
        self._finish(served, batch, logps, shortlists, work)
        other.result()

    def _finish(
        self,
        served: ServedModel,
        jobs: list[_Job],
        logps: list[torch.Tensor | None],
        shortlists: list[Shortlist | None],
        work: Iterator[int],
    ) -> None:
        """CTC-score the jobs whose index this thread takes from ``work``, and answer them."""
        decoder = served.decoder
        for i in work:
            job, logp, shortlist = jobs[i], logps[i], shortlists[i]
            result, error = None, None
            for attempt in range(2):  # one retry: a decoder cache may have been pruned meanwhile
                try:
                    evidence = (logp, shortlist) if attempt == 0 else (None, None)
                    top = self._top_k(decoder, job, *evidence)
                    result = ([(w, s if math.isfinite(s) else -1e9) for w, s in top], served)
                    error = None
                    break
                except Exception as exc:
                    log.error("decode failed", extra={"error_type": type(exc).__name__})
                    error = ApiError("INTERNAL", "decode failed")
            if error is None:
                with self._count_lock:
                    self.served += 1
                self.metrics.predictions.inc()
                self.metrics.predict_latency.observe(time.perf_counter() - job.t0)
                self.manager.note_keyboard(job.swipe.keyboard)
            job.loop.call_soon_threadsafe(_deliver, job.future, result, error)

    @staticmethod
    def _top_k(
        decoder: LearnedDecoder,
        job: _Job,
        logp: torch.Tensor | None,
        shortlist: Shortlist | None,
    ) -> list[tuple[str, float]]:
        points, keyboard = job.swipe.points, job.swipe.keyboard
        if logp is None:
            logp = decoder.frame_log_probs([(points, keyboard)])[0]
        return decoder.ranked(decoder.candidate_scores(points, keyboard, logp, shortlist), job.k)
