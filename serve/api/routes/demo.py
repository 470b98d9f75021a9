"""The demo page (``GET /demo``): a swipe keyboard in the browser that talks to this sidecar.

The page is plain HTML, CSS and JavaScript shipped inside the package (``serve/static/``,
package data), so it works offline and from a non-editable install. It is served from the
sidecar's own origin, so its requests pass the Host allow-list and carry the token and JSON
content type like any keyboard's. Only the files in ``serve/static/`` are served, by name (no
paths). The Content-Security-Policy lets the page load nothing but its own files and talk to
nothing but this sidecar, and no other site may frame it (a framed page could be tricked into
committing swipes). Left out of the OpenAPI description: it is not part of the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ...errors import ApiError

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["demo"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    media_type = MEDIA_TYPES.get(path.suffix)
    # A bare file name of the static folder only: no separators, no dot files.
    if (
        media_type is None
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or not path.is_file()
    ):
        raise ApiError("NOT_FOUND", "no such file")
    return FileResponse(path, media_type=media_type, headers=HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    """The sidecar's address in a browser opens the demo page."""
    return RedirectResponse("/demo", status_code=307)


@router.get("/demo")
async def page() -> FileResponse:
    return _file("index.html")


@router.get("/demo/{name}")
async def static_file(name: str) -> FileResponse:
    return _file(name)
