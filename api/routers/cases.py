"""``/v1/cases/{案号}``: a case's entries in chain order (bearer token required)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from api.codec import envelope_to_json
from api.deps import Identity, Service
from api.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1/cases", tags=["cases"], responses=ERROR_RESPONSES)
log = logging.getLogger("courtledger.reads")


@router.get("/{case_no}")
def case_timeline(case_no: str, service: Service, identity: Identity) -> dict[str, Any]:
    """Every committed document, event and evidence entry of one 案号."""
    # Every read of case data is logged with the identity (issue 7), never with its content.
    log.info("case read", extra={"identity": identity})
    rows = service.case(case_no)
    return {
        "case": case_no,
        "entries": [
            {"entry_id": r["entry_id"].hex(), "height": r["height"],
             "leaf_index": r["leaf_index"], "entry": envelope_to_json(r["envelope"])}
            for r in rows
        ],
    }
