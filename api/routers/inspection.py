"""``/v1/inspection/*``: the closed-case inspection (终本智能巡查) and deadline warnings
(节点期限预警) of this node's verifier engine (issue 8). Bearer token required: findings name
cases (DESIGN §5, reads of case data).

Findings are in the finding shape of domain/events.md (entry ids hex, heights of the chain).
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.deps import Identity, Service
from api.schemas import ERROR_RESPONSES
from api.service import NotFound
from verifier.findings import SEVERITY_RANK

router = APIRouter(prefix="/v1/inspection", tags=["inspection"], responses=ERROR_RESPONSES)
log = logging.getLogger("courtledger.reads")

Severity = Literal["CRIT", "HIGH", "MED", "INFO"]


@router.get("/findings")
def findings(
    service: Service,
    identity: Identity,
    case: Annotated[str | None, Query(description="Only this 案号.")] = None,
    court: Annotated[str | None, Query(description="Only this court (法院代字).")] = None,
    rule: Annotated[list[str] | None, Query(description="Only these rule ids.")] = None,
    severity: Annotated[list[Severity] | None, Query(description="Only these severities.")] = None,
    kind: Literal["violation", "warning"] | None = None,
    order: Annotated[Literal["report", "severity"], Query(
        description="report: case, rule, entries (the report digest's order); "
                    "severity: gravest first, then report order.")] = "report",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Current findings, filtered, in report order (case, rule, entries) or gravest first;
    ``total`` counts all that match, ``findings`` holds ``limit`` of them from ``offset``, and
    ``months`` counts all that match by the month their case was filed (Beijing time) and
    severity: the filtered findings over time."""
    log.info("inspection read", extra={"identity": identity})
    got = service.inspection_findings(case=case, court=court, rule=rule,
                                      severity=list(severity) if severity else None, kind=kind)
    if order == "severity":
        # A stable sort keeps report order within one severity.
        got.sort(key=lambda f: SEVERITY_RANK.get(f["severity"], len(SEVERITY_RANK)))
    months: dict[str, dict[str, int]] = {}
    for f in got:
        filed = f.get("filed_at")
        m = months.setdefault(_month(filed) if isinstance(filed, int) else "?", {})
        m[f["severity"]] = m.get(f["severity"], 0) + 1
    return {"total": len(got), "offset": offset, "findings": got[offset:offset + limit],
            "months": dict(sorted(months.items()))}


def _month(ms: int) -> str:
    """``YYYY-MM`` in Beijing time (UTC+8, domain/events.md "Conventions")."""
    return time.strftime("%Y-%m", time.gmtime(ms / 1000 + 8 * 3600))


@router.get("/summary")
def summary(service: Service, identity: Identity) -> dict[str, Any]:
    """Where the inspection stands (height, time, rule set, calendar, recent reports) and counts
    per court (with each court's share of improperly closed 终本 cases), rule, severity and the
    month cases were filed (Beijing time)."""
    log.info("inspection read", extra={"identity": identity})
    return service.inspection_summary()


@router.get("/courts/{court}")
def court_summary(court: str, service: Service, identity: Identity) -> dict[str, Any]:
    """One court's counts and its findings by rule."""
    log.info("inspection read", extra={"identity": identity})
    s = service.inspection_summary()
    if court not in s["courts"]:
        raise NotFound(f"no inspected cases of court {court}")
    by_rule: dict[str, int] = {}
    for f in service.inspection_findings(court=court):
        by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + 1
    return {"court": court, "height": s["height"], "now": s["now"], **s["courts"][court],
            "rules": dict(sorted(by_rule.items()))}


@router.get("/deadlines")
def deadlines(
    service: Service,
    identity: Identity,
    court: Annotated[str | None, Query(description="Only this court (法院代字).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> dict[str, Any]:
    """Deadline warnings (seizures, freezes and sealings about to lapse, post-closure queries,
    the case time limit, payouts) sorted by due date, lapsed ones first."""
    log.info("inspection read", extra={"identity": identity})
    return {"warnings": service.inspection_deadlines(court=court, limit=limit)}


@router.get("/cases/{case_no}")
def case(case_no: str, service: Service, identity: Identity) -> dict[str, Any]:
    """One case: its timeline (documents, events, evidence with block height, block time and
    proof status ``cosigned`` or ``committed``) and its findings."""
    log.info("inspection case read", extra={"identity": identity})
    return service.inspection_case(case_no)
