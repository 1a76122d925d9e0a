"""``/v1/receipts``: the receipt of a cosigned entry (DESIGN §2)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Identity, Service
from api.routers.common import parse_hex32
from api.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1/receipts", tags=["receipts"], responses=ERROR_RESPONSES)


@router.get("/{entry_id}")
def read_receipt(entry_id: str, service: Service, identity: Identity) -> dict[str, Any]:
    """The ``courtledger-receipt/1`` JSON, once the entry's checkpoint has its quorum."""
    return service.receipt(parse_hex32(entry_id, "entry_id"))
