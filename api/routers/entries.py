"""``/v1/entries``: submit (DESIGN §5) and read committed entries."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from api.codec import envelope_to_json, parse_json_submission, parse_msgpack_submission
from api.deps import Identity, Service
from api.schemas import ERROR_RESPONSES, EntryRead, SubmitResponse
from api.service import TooLarge
from ledger.errors import EncodingError

router = APIRouter(prefix="/v1/entries", tags=["entries"], responses=ERROR_RESPONSES)

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/msgpack": {
                "schema": {"type": "string", "format": "binary"},
                "description": "canonical bytes of one envelope or a list of envelopes",
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/JsonSubmission"}},
        },
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes is over the limit of {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "", response_model=SubmitResponse, response_model_exclude_none=True, openapi_extra=_BODY_DOC
)
async def submit_entries(
    request: Request,
    service: Service,
    wait: Literal["commit", "receipt"] | None = Query(
        None, description="hold the answer until commit, or until the cosigned checkpoint"
    ),
) -> dict[str, Any]:
    """Submit envelopes (all or nothing). Replays answer as the original; followers forward
    to the leader over the peer links."""
    limit: int = request.app.state.max_body_bytes
    body = await read_body(request, limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/msgpack", "application/x-msgpack"):
        envelopes = parse_msgpack_submission(body, limit)
    elif ctype == "application/json":
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise EncodingError(f"body is not JSON: {exc}") from None
        envelopes = parse_json_submission(obj)
    else:
        raise EncodingError("Content-Type must be application/msgpack or application/json")
    results = await service.submit(envelopes, wait or "none")
    return {"entries": results}


@router.get("/{entry_id}", response_model=EntryRead)
def read_entry(entry_id: str, service: Service, identity: Identity) -> dict[str, Any]:
    """A committed entry by its id (bearer token required)."""
    from api.routers.common import parse_hex32

    got = service.entry(parse_hex32(entry_id, "entry_id"))
    return {
        "entry_id": entry_id,
        "height": got["height"],
        "leaf_index": got["leaf_index"],
        "entry": envelope_to_json(got["envelope"]),
    }
