"""``/v1/checkpoints`` and ``/v1/consistency``: cosigned tree heads and proofs between them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from api.deps import Service
from api.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1", tags=["checkpoints"], responses=ERROR_RESPONSES)


@router.get("/checkpoints/latest")
def latest_checkpoint(service: Service) -> dict[str, Any]:
    """The latest checkpoint with a quorum, as a ``courtledger-checkpoint/1`` file."""
    return service.checkpoint(None)


@router.get("/checkpoints/{tree_size}")
def checkpoint_at(tree_size: int, service: Service) -> dict[str, Any]:
    """The cosigned checkpoint at ``tree_size``, as a checkpoint file."""
    return service.checkpoint(tree_size)


@router.get("/consistency")
def consistency(
    service: Service,
    first: int = Query(..., ge=0, description="older tree size"),
    second: int = Query(..., ge=0, description="newer tree size"),
) -> dict[str, Any]:
    """A ``courtledger-consistency/1`` proof between two cosigned tree sizes (RFC 9162
    §2.1.4)."""
    return service.consistency(first, second)
