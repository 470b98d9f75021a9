"""The API token: where it comes from, and who may start without one.

A token is required by default (``SWIPEFL_AUTH=token``). ``SWIPEFL_API_TOKEN`` wins when set;
otherwise the token is read from ``<device_dir>/api-token``, generated there on first start
with owner-only permissions (0600; a file others can read is refused, not used). The keyboard
reads the same file. Running without a token takes ``SWIPEFL_AUTH=none``, and is refused on any
address but loopback. Logs name the file, never the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from fl_app.checkpoints.format import fsync_dir

from .config import Settings

log = logging.getLogger("serve.auth")

TOKEN_BYTES = 32


class AuthConfigError(Exception):
    """The settings cannot be served safely; the message says what to change."""


@dataclass(frozen=True)
class ApiToken:
    """The token requests must carry, or None when the operator chose ``SWIPEFL_AUTH=none``."""

    value: str | None
    source: str  # "environment", "file", "generated" or "none"

    def allows(self, authorization: str | None) -> bool:
        """True for ``Bearer <token>`` (scheme case-insensitive), or for anything without one."""
        if self.value is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.value.encode()
        )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another name may resolve to anything


def check_startup(settings: Settings) -> None:
    """Refuse settings that would open the door: no token on a non-loopback address, or a
    token given while ``SWIPEFL_AUTH=none`` says there is none."""
    if settings.auth == "none":
        if settings.token is not None:
            raise AuthConfigError(
                "SWIPEFL_AUTH=none and SWIPEFL_API_TOKEN are both set; unset one of them"
            )
        if not is_loopback(settings.host):
            raise AuthConfigError(
                f"refusing to serve {settings.host} without a token: SWIPEFL_AUTH=none is "
                "allowed on loopback only (unset SWIPEFL_AUTH to use a token)"
            )


def resolve_token(settings: Settings) -> ApiToken:
    """The environment's token, else the device's token file (made on first start)."""
    check_startup(settings)
    if settings.auth == "none":
        log.warning("no API token: predictions, writes and admin are open to every local process")
        return ApiToken(None, "none")
    if settings.token is not None:
        log.info("API token from the environment")
        return ApiToken(settings.token, "environment")
    path = settings.token_file_path
    token = read_token_file(path)
    if token is not None:
        log.info("API token read from file", extra={"token_file": str(path)})
        return ApiToken(token, "file")
    token = create_token_file(path)
    log.info("API token generated", extra={"token_file": str(path)})
    return ApiToken(token, "generated")


def read_token_file(path: Path) -> str | None:
    """The token in ``path``, None when there is no file; refuses one others may read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthConfigError(f"cannot open the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AuthConfigError(f"the token file {path} is not a regular file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise AuthConfigError(
                f"the token file {path} can be read by others (mode {mode:o}); chmod 600 it, "
                "or delete it to have a new token made"
            )
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise AuthConfigError(f"the token file {path} belongs to another user")
        token = f.read().strip()
    if not token:
        raise AuthConfigError(f"the token file {path} is empty; delete it to have one made")
    return token


def create_token_file(path: Path) -> str:
    """A new random token written to ``path`` (0600) atomically: a crash leaves no half file,
    and two sidecars starting at once end with one token (the second reads the first's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: never overwrite a token in use
            fsync_dir(path.parent)  # a token the keyboard has read survives a power cut
        except FileExistsError:
            existing = read_token_file(path)
            if existing is None:
                raise AuthConfigError(f"the token file {path} vanished while starting") from None
            return existing
    finally:
        tmp.unlink(missing_ok=True)
    return token
