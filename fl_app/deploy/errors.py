"""The one error a deployment raises, so the CLI can print it as a message, not a traceback."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A component did not start, a command failed, or the state directory is unusable."""
