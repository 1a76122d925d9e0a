"""The one exception handler: domain errors → HTTP status and ``{"error", "detail"}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.service import ServiceError
from ledger.errors import (
    CheckpointError,
    CorruptionError,
    EncodingError,
    LedgerError,
    ProofError,
    StoreError,
)


def status_of(exc: LedgerError) -> int:
    """The HTTP status of a domain error (DESIGN §6: every refusal is a 4xx)."""
    status = getattr(exc, "status", None)
    if isinstance(exc, ServiceError) or isinstance(status, int):
        return int(status)  # type: ignore[arg-type]
    if isinstance(exc, CorruptionError):
        return 503  # this node's copy failed its hash check: ask another node
    if isinstance(exc, StoreError):
        return 500
    if isinstance(exc, EncodingError | ProofError | CheckpointError):
        return 400
    return 422  # validity, admission, signatures, case numbers


def _count_refusal(request: Request, status: int, reason: str) -> None:
    """A refused submission (4xx on ``POST /v1/entries``) is counted by reason when the service
    offers ``on_refused`` (the node's ``courtledger_submissions_refused_total``, issue 11)."""
    if not 400 <= status < 500 or request.method != "POST" or request.url.path != "/v1/entries":
        return
    hook = getattr(request.app.state, "service", None)
    on_refused = getattr(hook, "on_refused", None)
    if callable(on_refused):
        on_refused(reason)


def _report_corruption(request: Request, exc: CorruptionError) -> None:
    """Stored data that fails its hash check is never served (the read raised before any of
    it left); the service is told so it can raise the alarm and fail ``/readyz`` (issue 11)."""
    hook = getattr(request.app.state, "service", None)
    on_corruption = getattr(hook, "on_corruption", None)
    if callable(on_corruption):
        on_corruption(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the routes can meet to ``{"error", "detail"}``."""

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        _count_refusal(request, status_of(exc), exc.code)
        if isinstance(exc, CorruptionError):
            _report_corruption(request, exc)
        headers = {"Retry-After": "1"} if status_of(exc) in (429, 503) else None
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, status_code=status_of(exc), headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Keep the exception's headers: a 405 must name the allowed methods in ``Allow``
        # (RFC 9110 §15.5.6).
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count_refusal(request, 400, "bad_request")
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse(
            {"error": "bad_request", "detail": f"{where}: {first.get('msg', 'invalid')}"},
            status_code=400,
        )
