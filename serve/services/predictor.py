"""Predictions off the event loop: decode threads, concurrent requests batched.

Requests queue up; a decode thread takes whatever is waiting (up to ``max_batch``), runs the
model once over the batch (``LearnedDecoder.frame_log_probs``) and scores each swipe's
shortlist, with the ``ServedModel`` it read once for the batch. A helper thread per decode
thread builds the shortlists (template pass, numpy) while the model runs, then CTC-scores half
the batch: the model's and CTC's kernels release the GIL, so a batch uses two cores. Results
go back to the event loop with ``call_soon_threadsafe``. The event loop never runs model code.
With ``workers`` > 1 several threads decode at once; a decoder is only read by them (its
caches fill by plain dict assignment).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from fl_app.decoder import LearnedDecoder, Shortlist
from fl_app.swipe import Swipe

from ..errors import ApiError, model_not_loaded
from .metrics import Metrics
from .model_manager import ModelManager, ServedModel

log = logging.getLogger("serve.predict")

Candidates = list[tuple[str, float]]


@dataclass
class _Job:
    swipe: Swipe
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
        if self.manager.current is None:
            raise model_not_loaded()
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        try:
            self._queue.put_nowait(_Job(swipe, k, future, loop, time.perf_counter()))
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
        # The shortlists need only the traces: the helper builds them while this thread runs
        # the model (whose kernels release the GIL), then each takes half the CTC scoring.
        pending = self._helper.submit(_shortlists, decoder, batch)
        try:
            logps = decoder.frame_log_probs([(j.swipe.points, j.swipe.keyboard) for j in batch])
        except Exception:
            log.exception("batched model call failed; decoding one by one")
            logps = [None] * len(batch)
        try:
            shortlists = pending.result()
        except Exception:
            log.exception("shortlists failed; decoding one by one")
            shortlists = [None] * len(batch)
        half = self._helper.submit(self._finish, served, batch[1::2], logps[1::2], shortlists[1::2])
        self._finish(served, batch[::2], logps[::2], shortlists[::2])
        half.result()

    def _finish(
        self,
        served: ServedModel,
        jobs: list[_Job],
        logps: list[torch.Tensor | None],
        shortlists: list[Shortlist | None],
    ) -> None:
        """CTC-score each job's shortlist and answer it."""
        decoder = served.decoder
        for job, logp, shortlist in zip(jobs, logps, shortlists, strict=True):
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


def _shortlists(decoder: LearnedDecoder, batch: list[_Job]) -> list[Shortlist]:
    return [decoder.shortlist(j.swipe.points, j.swipe.keyboard) for j in batch]
