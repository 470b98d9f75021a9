"""The sidecar app: ``create_app(settings)``; ``serve.app:app`` for uvicorn.

The lifespan resolves the API token (``serve.core.auth``: environment, else the device's token
file, made on first start), builds the services (swipe store, model manager, decode thread,
ingest writer, personalizer), serves the release cached on the device at once if there is one,
and starts the reload watcher (first check at once, then every ``reload_interval_s``). The app
answers before any release exists: predictions get 503 MODEL_NOT_LOADED until one loads.
Shutdown stops the watcher, answers queued predictions, commits queued swipes, then closes the
swipe store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator

import torch
from anyio import to_thread
from fastapi import FastAPI

from .api.main import api_router
from .api.routes import predict
from .core.auth import AuthConfigError, resolve_token
from .core.config import Settings
from .errors import install_error_handlers
from .guards import HostAllowList, JsonOnly
from .logging import setup_logging
from .middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from .predict_shortcut import PredictShortcut
from .services import Services
from .services.metrics import Metrics

log = logging.getLogger("serve")

API_VERSION = "1"


async def _reload_loop(services: Services, interval: float) -> None:
    while True:
        try:
            await to_thread.run_sync(services.manager.check)
        except Exception as exc:  # the watcher must outlive any single failure
            log.error("release check failed", extra={"error_type": type(exc).__name__})
        await asyncio.sleep(interval)


async def _retention_loop(services: Services, interval: float) -> None:
    settings = services.settings
    if settings.retention_max_rows is None and settings.retention_max_age_days is None:
        return
    while True:
        try:
            deleted = await to_thread.run_sync(services.swipes.enforce_retention)
            if deleted:
                log.info("retention deleted swipes", extra={"deleted": deleted})
        except Exception as exc:
            log.error("retention failed", extra={"error_type": type(exc).__name__})
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    setup_logging(settings.log_level)
    try:
        app.state.token = await to_thread.run_sync(resolve_token, settings)
    except AuthConfigError as exc:  # its message names a path and a setting, never a token
        log.error("refusing to start", extra={"reason": str(exc)})
        raise
    torch.set_num_threads(settings.torch_threads)
    sys.setswitchinterval(settings.switch_interval_ms / 1000.0)
    services = await to_thread.run_sync(Services.build, settings, app.state.metrics)
    services.start()
    await to_thread.run_sync(services.manager.load_cached)
    app.state.services = services
    # The startup heap (torch, numpy, the model, templates) never becomes garbage: frozen, the
    # collector's full passes skip it instead of walking it in the middle of requests.
    gc.collect()
    gc.freeze()
    tasks = [
        asyncio.create_task(_reload_loop(services, settings.reload_interval_s)),
        asyncio.create_task(_retention_loop(services, settings.retention_check_s)),
    ]
    log.info(
        "sidecar started",
        extra={
            "checkpoint_store": settings.checkpoint_store,
            "auth": app.state.token.source,
            "model_loaded": services.manager.current is not None,
        },
    )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await to_thread.run_sync(services.close)
        log.info("sidecar stopped", extra={"swipes_stored": services.ingest.stored})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; the middlewares, outermost first: request metrics, the Host allow-list,
    JSON-only state-changing requests, the body limit, the predict shortcut."""
    settings = settings or Settings()
    app = FastAPI(
        title="swipe-fl sidecar",
        version=API_VERSION,
        description="Predictions and labelled-swipe collection for a swipe keyboard, on the device.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.services = None
    app.state.token = None  # the lifespan resolves it (env, token file, or made on first start)
    install_error_handlers(app)
    app.include_router(api_router)
    app.add_middleware(PredictShortcut, route=predict.ROUTE)  # added first: innermost
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(JsonOnly)
    app.add_middleware(HostAllowList, names=settings.allowed_host_names)
    app.add_middleware(
        RequestMetricsMiddleware, metrics=app.state.metrics, access_log=settings.access_log
    )
    return app


app = create_app()
