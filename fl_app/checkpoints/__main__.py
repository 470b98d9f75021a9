"""Entry point of ``python -m fl_app.checkpoints`` (see ``fl_app.checkpoints.cli``)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
