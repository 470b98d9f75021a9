"""``python -m serve``: run the sidecar with uvicorn on SWIPEFL_HOST:SWIPEFL_PORT (loopback)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .core.config import Settings
from .logging import setup_logging


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
