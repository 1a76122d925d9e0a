"""A hand-written case book for the rule tests: one compliant 终本 case and a builder.

Written by hand from domain/events.md and domain/rulebook.md, independently of
``verifier.synth``, so the generator and the inspector do not share a single reading of the law
unchecked. Times are Beijing days counted from DAY0 (2025-03-03, a Monday) at 10:00.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verifier.periods import BEIJING, DAY_MS
from verifier.records import Record

DAY0 = int(dt.datetime(2025, 3, 3, 10, 0, tzinfo=BEIJING).timestamp() * 1000)
CASE = "（2025）吉0102执1203号"
COURT = "吉0102"
D1 = hashlib.sha256(b"rid:D1").hexdigest()
D2 = hashlib.sha256(b"rid:D2").hexdigest()
A1 = hashlib.sha256(b"rid:A1").hexdigest()
O1, O2 = "JL0102-007", "JL0102-011"


def day(n: float) -> int:
    """DAY0 plus ``n`` days, in ms."""
    return DAY0 + int(n * DAY_MS)


@dataclass
class Ev:
    """An event to be written: type, business time, fields, refs, recording delay."""

    type: str
    at: int
    fields: dict[str, Any]
    evidence_refs: list[bytes] = field(default_factory=list)
    record_delay: int = 600_000  # recorded ten minutes later
    case: str = CASE
    court: str = COURT
    kind: str = "event"
    body: dict[str, Any] | None = None  # for evidence entries
    nonce: int = 0

    def payload(self) -> dict[str, Any]:
        if self.kind == "evidence":
            body = self.body or {}
        else:
            body = {"type": self.type, "occurred_at": self.at,
                    "actor": {"officer_id": O1, "role": "officer"}, "fields": self.fields}
            if self.evidence_refs:
                body["evidence_refs"] = list(self.evidence_refs)
        return {"v": 1, "kind": self.kind, "court": self.court, "case": self.case,
                "time": self.at, "nonce": self.nonce.to_bytes(16, "big"),
                "signer": b"\x01" * 32, "body": body}


class Book:
    """An editable list of events that renders to records."""

    def __init__(self, events: list[Ev]) -> None:
        self.events = events

    def add(self, etype: str, n: float, **fields: Any) -> Ev:
        e = Ev(etype, day(n), fields, nonce=len(self.events) + 1000)
        self.events.append(e)
        return e

    def drop(self, etype: str, where: Callable[[Ev], bool] | None = None) -> None:
        self.events = [e for e in self.events
                       if not (e.type == etype and (where is None or where(e)))]

    def get(self, etype: str) -> Ev:
        return next(e for e in self.events if e.type == etype)

    def records(self) -> list[Record]:
        out = []
        for i, e in enumerate(self.events):
            if not e.nonce:
                e.nonce = i + 1
            out.append(Record.of(e.payload(), e.at + e.record_delay))
        return out

    def record_of(self, ev: Ev) -> Record:
        return next(r for r in self.records() if r.payload["nonce"] == ev.nonce.to_bytes(16, "big"))


def evidence(sha: bytes, at: int, *, location: bool = True, case: str = CASE) -> Ev:
    body: dict[str, Any] = {"sha256": sha, "media_type": "video/mp4", "size": 1000,
                            "captured_at": at, "device": "BWC-01", "officers": [O1, O2]}
    if location:
        body["location"] = {"lat_e6": 43_880_000, "lon_e6": 125_320_000}
    return Ev("", at, {}, kind="evidence", body=body, case=case)


EVID = hashlib.sha256(b"site video").digest()

INTERVIEW_FLAGS = {"informed_basis_and_consequences": True, "informed_execution": True,
                   "informed_measures": True, "informed_property": True}
RULING_FLAGS = {"contains_claim": True, "contains_process": True, "contains_property": True,
                "contains_realized": True, "contains_rights": True}


def compliant(debtors: tuple[str, ...] = (D1,)) -> Book:
    """A 终本 case that meets every condition of rulebook §1a and events.md.

    Filed 2025-03-03; ruling on day 105 (2025-06-16, more than three months later); served on
    the applicant on day 107; closed day 108; in the 终本 database day 109; published day 110.
    """
    b = Book([])
    b.add("CASE_FILED", 0, case_type="执", source="申请", amount_claimed_fen=5_000_000,
          applicants=[{"kind": "natural", "party": A1}],
          debtors=[{"kind": "natural", "party": d} for d in debtors])
    b.add("HANDLER_ASSIGNED", 1, handler=O1, team="执行一庭")
    b.add("APPLICANT_NOTIFIED", 2, topic="provide_clues", party=A1, channel="sms")
    for d in debtors:
        b.add("EXEC_NOTICE_ISSUED", 3, party=d, doc_no="（2025）吉0102执1203号之一",
              dishonest_warning=True, perform_deadline=day(10))
        b.add("PROPERTY_REPORT_ORDER_ISSUED", 3.01, party=d, doc_no="（2025）吉0102执1203号之二",
              questionnaire=True, report_deadline=day(13))
        b.add("EXEC_NOTICE_SERVED", 4, party=d, doc_no="（2025）吉0102执1203号之一",
              method="直接", served_at=day(4))
        b.add("CONSUMPTION_RESTRICTED", 5, party=d, doc_no="（2025）吉0102执1203号之三",
              order_no="X1", persons=[d], signed_by_president=True)
        for cat in ("DEPOSIT", "VEHICLE", "REAL_ESTATE", "SECURITIES", "EQUITY"):
            b.add("NET_INQUIRY_FEEDBACK", 8, party=d, batch_id="B1", category=cat,
                  status="NONE", assets=[], feedback_at=day(8), institution="总对总")
        b.add("PROPERTY_REPORT_SUBMITTED", 10, party=d,
              items=[{"category": "DEPOSIT", "description": "工资卡", "value_fen": 100}])
        b.add("PROPERTY_REPORT_VERIFIED", 15, party=d, method="网络查控", result="一致",
              discrepancies=[])
        b.add("INTERROGATION", 25, party=d, person=d, person_role="debtor",
              transcript_sha256="ab" * 32)
    site = b.add("SITE_INVESTIGATION", 20, party=D1, officers=[O1, O2], start_at=day(20),
                 end_at=day(20.05), address_hash="cd" * 32)
    site.evidence_refs = [EVID]
    b.events.append(evidence(EVID, day(20) + 600_000))
    b.add("CLUE_SUBMITTED", 30, clue_id="C1", submitter=A1, urgent=False, category="VEHICLE")
    b.add("CLUE_VERIFIED", 33, clue_id="C1", method="车管所", result="无")
    b.add("APPLICANT_INTERVIEW", 100, party=A1, channel="面谈", record_sha256="ef" * 32,
          **INTERVIEW_FLAGS)
    b.add("APPLICANT_OPINION", 101, party=A1, opinion="agree", signed_consent=True)
    b.add("ZB_RULING_ISSUED", 105, doc_no="（2025）吉0102执1203号之四",
          amount_outstanding_fen=5_000_000, amount_realized_fen=0, **RULING_FLAGS)
    b.add("ZB_RULING_SERVED", 107, party=A1, doc_no="（2025）吉0102执1203号之四",
          method="电子", served_at=day(107))
    b.add("CASE_CLOSED", 108, mode="终本", doc_no="（2025）吉0102执1203号之四")
    b.add("ZB_DB_ENTERED", 109, doc_no="（2025）吉0102执1203号之四")
    b.add("RULING_PUBLISHED", 110, doc_no="（2025）吉0102执1203号之四", published=True,
          url="https://wenshu.court.gov.cn/x")
    return b


#: The default inspection time for the compliant case: 2025-07-15, before any post-closure
#: window ends (the first ends 2025-12-18).
NOW = day(134)
