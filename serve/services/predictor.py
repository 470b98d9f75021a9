"""Predictions off the event loop: decode threads, concurrent requests batched.

A request's model input (``model_input``, numpy) is computed and checked on the event loop as
it arrives, while the decode thread runs the model on the batch before; input the model cannot
take is refused there (422 UNDECODABLE) and never queued. Requests queue up; a decode thread
takes whatever is waiting (up to ``max_batch``), drops those whose deadline has passed (their
requester has been answered 503 already: decoding them would only delay the live ones), and
decodes the rest together (``decoding.BatchDecoder``: the model once, then each request on its
own) with the ``ServedModel`` it read once for the batch. Results go back to the event loop
with ``call_soon_threadsafe``. The event loop never runs model code. With ``workers`` > 1
several threads decode at once; a decoder is only read by them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fl_app.decoder.swipe import Swipe

from ..errors import ApiError, model_not_loaded
from .decoding import BatchDecoder, Candidates, Job, model_input
from .metrics import Metrics
from .model_manager import ModelManager, ServedModel

log = logging.getLogger("serve.predict")


def timed_out() -> ApiError:
    return ApiError("OVERLOADED", "prediction timed out", headers={"Retry-After": "1"})


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
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.workers = max(1, int(workers))
        self._threads: list[threading.Thread] = []
        self._helper = ThreadPoolExecutor(self.workers, thread_name_prefix="swipefl-decode-helper")
        self._batches = BatchDecoder(metrics, self._helper, self._decoded)
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

    async def predict(
        self, swipe: Swipe, k: int, previous: str | None = None
    ) -> tuple[Candidates, ServedModel]:
        served = self.manager.current
        if served is None:
            raise model_not_loaded()
        t0 = time.perf_counter()
        # Computed here, while the decode thread runs the model on the batch before: numpy on
        # small arrays holds the GIL, so on the decode thread it would lengthen every batch.
        spec = served.decoder.spec
        try:
            features = model_input(swipe, spec)
        except ApiError:
            self.metrics.predict_undecodable.inc()
            raise
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        job = Job(swipe, features, spec, k, future, loop, t0, t0 + self.timeout_s, previous)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(
                "OVERLOADED", "too many predictions waiting", headers={"Retry-After": "1"}
            ) from None
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise timed_out() from None

    def _decoded(self, job: Job) -> None:
        with self._count_lock:
            self.served += 1
        self.metrics.predictions.inc()
        self.manager.note_keyboard(job.swipe.keyboard)

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
            self._decode_batch(self._live(batch))
            if stop:
                return

    def _live(self, batch: list[Job]) -> list[Job]:
        """The jobs someone still waits for; the others are answered 503 and counted."""
        now = time.perf_counter()
        live = []
        for job in batch:
            if job.expired(now):
                self.metrics.predict_expired.inc()
                job.answer(None, timed_out())  # a no-op where the loop answered it already
            else:
                live.append(job)
        return live

    def _decode_batch(self, batch: list[Job]) -> None:
        if not batch:
            return
        served = self.manager.current
        if served is None:
            for job in batch:
                job.answer(None, model_not_loaded())
            return
        self.metrics.predict_batch.observe(len(batch))
        self._batches.decode(served, batch)
