"""``python -m serve``: run the sidecar with uvicorn on SWIPEFL_HOST:SWIPEFL_PORT (loopback).

Settings that would open the door (no token on a non-loopback address) stop it before it binds,
with the reason logged and exit status 2.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from .app import create_app
from .core.auth import AuthConfigError, check_startup
from .core.config import Settings
from .logging import setup_logging

EXIT_REFUSED = 2


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    try:
        check_startup(settings)
    except AuthConfigError as exc:
        logging.getLogger("serve").error("refusing to start", extra={"reason": str(exc)})
        sys.exit(EXIT_REFUSED)
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
