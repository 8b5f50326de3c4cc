"""The web page: ``GET /``, its script and style sheet under ``/static/``, and its icon
(``/favicon.ico``, which browsers ask for whatever the page says).

The files ship in the package (``agentengine_server/static``) and are read once, when the app
is built. They are served with a strict Content-Security-Policy: the page loads nothing from
elsewhere and cannot be framed.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentengine_server.errors import ApiError

__all__ = ["PAGE_HEADERS", "page_routes"]

#: The page's files besides ``index.html``, with their media types.
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: Headers of every file of the page.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_routes() -> list[Route]:
    """The routes of the page, serving its files as read now."""
    root = resources.files("agentengine_server") / "static"
    files = {name: (root / name).read_bytes() for name in ("index.html", "favicon.ico", *_STATIC)}

    async def index(request: Request) -> Response:
        """The web page."""
        return Response(
            files["index.html"], media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    async def static_file(request: Request) -> Response:
        """The page's script and style sheet."""
        name = request.path_params["name"]
        if name not in _STATIC:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return Response(files[name], media_type=_STATIC[name], headers=PAGE_HEADERS)

    async def favicon(request: Request) -> Response:
        """The page's icon (a 16x16 ICO)."""
        return Response(files["favicon.ico"], media_type="image/x-icon", headers=PAGE_HEADERS)

    return [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/static/{name}", static_file),
    ]
