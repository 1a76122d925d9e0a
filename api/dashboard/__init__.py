"""The inspection dashboard (issue 10), served by the internal app at ``/dashboard/``.

For a court's inspection office: findings by court, rule and severity over time, each court's
share of improperly closed (终本) cases, deadline warnings sorted by due date, and a case page
with the chain's timeline and the case's findings. Static HTML, one ES module and CSS with no
build step; charts are SVG drawn by the page; nothing is fetched from anywhere but this
listener. The public page's stylesheet (``api/web/style.css``) is served here too, so both pages
share one visual language.

The files carry no case data and are served without a token; every read of data goes to
``/v1/inspection/*`` and ``/v1/cases`` with the bearer token the user enters (kept in the tab's
``sessionStorage`` only), so the dashboard shows nothing without an identity (DESIGN §5).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response

__all__ = ["mount_dashboard"]

_HERE = Path(__file__).resolve().parent
_WEB = _HERE.parent / "web"

#: Files served under /dashboard/static/: a fixed list, nothing else of these folders.
STATIC_FILES: dict[str, tuple[Path, str]] = {
    "dashboard.js": (_HERE / "dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": (_HERE / "dashboard.css", "text/css; charset=utf-8"),
    "web.css": (_WEB / "style.css", "text/css; charset=utf-8"),
    "favicon.svg": (_WEB / "favicon.svg", "image/svg+xml"),
}

#: Only this origin's scripts, styles and data; no inline script, no frames.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount_dashboard(app: FastAPI, prefix: str = "/dashboard") -> None:
    """Add the dashboard's routes to ``app`` (the internal app)."""
    page = (_HERE / "index.html").read_bytes()

    @app.get(prefix, include_in_schema=False)
    def dashboard_redirect() -> Response:
        return RedirectResponse(prefix + "/", status_code=308)

    @app.get(prefix + "/", include_in_schema=False)
    def dashboard_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)

    @app.get(prefix + "/static/{name}", include_in_schema=False)
    def dashboard_static(name: str) -> Response:
        got = STATIC_FILES.get(name)
        if got is None:
            raise HTTPException(404)
        path, media = got
        return Response(path.read_bytes(), media_type=media, headers=_HEADERS)
