"""The public verify API and its page (DESIGN §5): never writes, never lists.

Only ``/``, ``/v1/verify…`` and ``/healthz`` exist here, so every internal route is a 404.
A token bucket per client address answers 429 past its rate.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import install_error_handlers
from api.routers import verify
from api.service import NodeService


class RateLimit:
    """A token bucket per client address (``rate`` per second, ``burst`` deep).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per
    request, which showed in verify-by-hash throughput.
    """

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.rate = rate
        self.burst = float(burst)
        self.buckets: dict[str, tuple[float, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "?"
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            response = JSONResponse(
                {"error": "rate_limited", "detail": "too many requests; retry shortly"},
                status_code=429, headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.buckets[key] = (tokens - 1.0, now)
        if len(self.buckets) > 100_000:  # bound memory under a spray of addresses
            self.buckets.clear()
        await self.app(scope, receive, send)


def _mount_web_page(app: FastAPI, genesis: Any) -> bool:
    """Mount ``api.web``'s page (which verifies receipts in the browser) when it is present."""
    try:
        from api.web import mount_public_page, summarize_genesis
    except ImportError:
        return False
    mount_public_page(app, genesis_summary=summarize_genesis(genesis))
    return True


def _page() -> str:
    return resources.files("api").joinpath("static/index.html").read_text(encoding="utf-8")


def create_public_app(
    service: NodeService,
    *,
    genesis: Any = None,
    max_upload_bytes: int = 64 << 20,
    rate_per_second: float = 50.0,
    rate_burst: int = 100,
) -> FastAPI:
    """The public app: ``/`` (the page), ``GET /v1/verify/{sha256}``, ``POST /v1/verify``."""
    app = FastAPI(
        title="courtledger public verification",
        version="1",
        description="Check whether a court document is anchored, by its SHA-256 (DESIGN §5).",
    )
    app.state.service = service
    app.state.max_upload_bytes = max_upload_bytes
    app.add_middleware(RateLimit, rate=rate_per_second, burst=rate_burst)
    install_error_handlers(app)
    app.include_router(verify.router)
    if genesis is not None and _mount_web_page(app, genesis):
        pass  # the verification page of api/web (issue 10), with its trust anchors
    else:
        page = _page()

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        def index() -> str:
            return page

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
