"""The door against web pages: a Host allow-list and JSON-only state-changing requests.

A page in the device's browser can reach loopback two ways. By DNS rebinding: its own name
(``evil.example``) re-resolves to 127.0.0.1, the browser then treats the sidecar as the page's
own origin and lets it read every answer; the request still says ``Host: evil.example:8000``,
so only the names in ``SWIPEFL_ALLOWED_HOSTS`` (loopback names by default), with the port the
request came in on, are answered; the rest get ``421 HOST_NOT_ALLOWED``. And by a cross-site
"simple" request (a form post or a no-cors fetch: no preflight, the answer unreadable but the
effect real): such a request cannot say ``Content-Type: application/json``, so a POST, PUT,
PATCH or DELETE without a JSON content type gets ``415 UNSUPPORTED_MEDIA_TYPE`` before it is
read, also when it has no body. Both run before anything else reads the request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError, error_response

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` (``[v6]:port`` for IPv6) -> (lower-case name, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            return "", None
    else:
        name, _, port = value.partition(":")
    if not port:
        return name, None
    if not port.isdigit():
        return "", None
    return name, int(port)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class HostAllowList:
    """Answer only requests whose Host names an allowed name and the port they came in on."""

    def __init__(self, app: ASGIApp, names: frozenset[str] | None) -> None:
        self.app = app
        self.names = names  # None: any host (SWIPEFL_ALLOWED_HOSTS=*)

    def allowed(self, scope: Scope) -> bool:
        value = header(scope, b"host")
        if value is None:
            return False
        name, port = split_host(value)
        if name not in self.names:  # type: ignore[operator]
            return False
        server = scope.get("server")
        if server is None or server[1] is None:  # a Unix socket: no port to compare
            return True
        return (port or (443 if scope.get("scheme") == "https" else 80)) == server[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.names is None or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        err = ApiError("HOST_NOT_ALLOWED", "this Host is not served here (SWIPEFL_ALLOWED_HOSTS)")
        await error_response(err)(scope, receive, send)


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters aside."""
    if content_type is None:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class JsonOnly:
    """POST, PUT, PATCH and DELETE need a JSON content type, with a body or without."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in STATE_CHANGING
            or is_json(header(scope, b"content-type"))
        ):
            await self.app(scope, receive, send)
            return
        err = ApiError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"{scope['method']} requests need Content-Type: application/json (also without a body)",
        )
        await error_response(err)(scope, receive, send)
