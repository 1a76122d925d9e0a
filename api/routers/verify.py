"""Public ``/v1/verify``: is this document anchored? (DESIGN §5). Matches ``document`` entries
only, never writes, never lists."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import Service
from api.routers.common import parse_hex32
from api.schemas import ERROR_RESPONSES, VerifyResponse
from api.service import TooLarge
from ledger.errors import EncodingError

router = APIRouter(prefix="/v1/verify", tags=["verify"], responses=ERROR_RESPONSES)


@router.get("/{sha256_hex}", response_class=JSONResponse,
            responses={200: {"model": VerifyResponse}})
async def verify_hash(sha256_hex: str, service: Service) -> JSONResponse:
    """Look a SHA-256 up among anchored documents; a node far behind answers 503.

    The hottest public route: it reads a few LevelDB keys on the event loop (microseconds; no
    thread hop) and returns the service's JSON as is (the schema is documented, not re-validated
    per request).
    """
    return JSONResponse(service.verify_sha256(parse_hex32(sha256_hex.lower(), "sha256")))


@router.post(
    "",
    response_model=VerifyResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}},
        }
    },
)
async def verify_upload(request: Request, service: Service) -> dict[str, Any]:
    """Hash an uploaded file as it streams in (never stored) and look it up."""
    limit: int = request.app.state.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"upload of {declared} bytes is over the limit of {limit}")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        raise EncodingError("send the file as the raw body (application/octet-stream)")
    h = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"upload is over the limit of {limit} bytes")
        h.update(chunk)
    if size == 0:
        # The body is required (OpenAPI): a missing body is a client error, not the hash of an
        # empty document.
        raise EncodingError("no file: send the file's bytes as the request body")
    return service.verify_sha256(h.digest())


@router.get("/receipts/{entry_id}")
def document_receipt(entry_id: str, service: Service) -> dict[str, Any]:
    """The receipt of an anchored *document* (a receipt carries the whole signed payload, so the
    public listener serves none for events or evidence)."""
    return service.receipt(parse_hex32(entry_id, "entry_id"), documents_only=True)
