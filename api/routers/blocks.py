"""``/v1/blocks`` and ``/v1/head``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.codec import envelope_to_json
from api.deps import Identity, Service
from api.routers.common import jsonable
from api.schemas import ERROR_RESPONSES, Head
from ledger.crypto import hash_object
from ledger.encoding import canonical

router = APIRouter(prefix="/v1", tags=["blocks"], responses=ERROR_RESPONSES)


@router.get("/head", response_model=Head)
def read_head(service: Service) -> dict[str, Any]:
    """The applied head: height, block hash, tree size, root, time."""
    return jsonable(service.head())  # type: ignore[no-any-return]


@router.get(
    "/genesis",
    response_class=Response,
    responses={200: {"content": {"application/msgpack": {}}}},
)
def read_genesis(service: Service, identity: Identity) -> Response:
    """The chain bundle's first frame, ``{block, consortium}`` as canonical msgpack (DESIGN §2):
    with it an auditor who pins only the chain id can check a node's chain (the block's hash is
    the chain id, and the block commits to the consortium map by its hash)."""
    return Response(canonical(service.genesis_frame()), media_type="application/msgpack")


@router.get(
    "/blocks/{height}",
    responses={200: {"content": {"application/msgpack": {}, "application/json": {}}}},
)
def read_block(height: int, request: Request, service: Service, identity: Identity) -> Any:
    """An applied block: canonical msgpack with ``Accept: application/msgpack`` (for verified
    transfer), else JSON (header in hex, entries in the JSON envelope form)."""
    block = service.block(height)
    if "application/msgpack" in request.headers.get("accept", ""):
        return Response(canonical(block), media_type="application/msgpack")
    return {
        "height": block["header"]["height"],
        "hash": hash_object(service.hash_alg, block["header"]).hex(),
        "header": jsonable(block["header"]),
        "sig": block["sig"].hex(),
        "entries": [envelope_to_json(e) for e in block["entries"]],
    }
