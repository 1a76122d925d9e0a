"""The internal court API (DESIGN §5): plain HTTP on loopback unless ``[internal_tls]``."""

from __future__ import annotations

from fastapi import FastAPI

from api.dashboard import mount_dashboard
from api.errors import install_error_handlers
from api.routers import blocks, cases, checkpoints, cluster, entries, inspection, receipts
from api.service import NodeService


def create_internal_app(service: NodeService, *, max_body_bytes: int = 32 << 20) -> FastAPI:
    """The internal app: entries, receipts, blocks, head, checkpoints, consistency, cases,
    cluster status, health and metrics; the inspection's findings and its dashboard
    (``/dashboard/``)."""
    app = FastAPI(
        title="courtledger internal API",
        version="1",
        description="Court systems submit and read entries here (DESIGN §5).",
    )
    app.state.service = service
    app.state.max_body_bytes = max_body_bytes
    install_error_handlers(app)
    for r in (entries, receipts, blocks, checkpoints, cases, cluster, inspection):
        app.include_router(r.router)
    mount_dashboard(app)
    return app
