"""``python -m fl_app.deploy``: the deployment's command line (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
