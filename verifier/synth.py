"""A synthetic enforcement workload that looks like the real thing, with its ground truth.

``python -m verifier.synth --cases 1000 --out events.jsonl`` writes an events file (one JSON
object per line, ``{"recorded_at", "payload"}``, grouped by case) and ``events.truth.json``
beside it: for every case the defects injected and the findings the inspector must produce,
as ``[rule, kind]`` pairs. A case with no defect must come out clean.

Cases follow the real order of the flow nodes for the demo courts (rulebook §6): 立案 → 分案 →
告知提供线索 → 执行通知书 and 报告财产令 together → 限制消费 → 网络查控 → 核查 → 现场调查 →
询问 → (seizure, valuation, auction, in-kind offer …) → 约谈 → 终本裁定 → 送达 → 结案 → 终本库 →
every six months a post-closure query, and sometimes 恢复执行 as a new 执恢 case. Acts happen
well inside their limits unless a defect says otherwise, and nothing is recorded after ``now``.

Each defect is named after the rule it breaks, and lists every finding it produces (a late
execution notice breaks ND-02 and, if never sent, ZB-02 too), so the ground truth is an
explicit statement rather than a re-run of the rules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.periods import DAY_MS, HOUR_MS, add_months, beijing_date, day_start, parse_now
from verifier.records import Record, payload_to_json

#: Demo enforcement courts (rulebook §6) with officer prefixes.
COURTS = (("吉0102", "JL0102"), ("吉0103", "JL0103"), ("吉0104", "JL0104"), ("吉01", "JL01"),
          ("沪0115", "SH0115"))

CATEGORIES = ("DEPOSIT", "VEHICLE", "REAL_ESTATE", "SECURITIES", "EQUITY", "NET_FUNDS")

# Flows and their share of cases.
FLOWS = (("zb_nothing", 35), ("zb_disposal_failed", 10), ("zb_vehicle", 10), ("paid", 20),
         ("open", 15), ("resumed", 10))

ZB_FLOWS = ("zb_nothing", "zb_disposal_failed", "zb_vehicle")

V = "violation"
W = "warning"

#: defect → (flows it applies to, findings it produces as (rule, kind)).
DEFECTS: dict[str, tuple[tuple[str, ...], frozenset[tuple[str, str]]]] = {
    "ZB-01": (("zb_nothing",), frozenset({("ZB-01", V)})),
    "ZB-02": (ZB_FLOWS, frozenset({("ZB-02", V), ("ND-02", V)})),
    "ZB-03": (ZB_FLOWS, frozenset({("ZB-03", V)})),
    "ZB-03-apart": (ZB_FLOWS, frozenset({("ZB-03", V)})),
    "ZB-04": (ZB_FLOWS, frozenset({("ZB-04", V)})),
    "ZB-05": (ZB_FLOWS, frozenset({("ZB-05", V)})),
    "ZB-06": (ZB_FLOWS, frozenset({("ZB-06", V)})),
    "ZB-07": (ZB_FLOWS, frozenset({("ZB-07", V)})),
    "ZB-08": (ZB_FLOWS, frozenset({("ZB-08", V)})),
    "ZB-08-late": (ZB_FLOWS, frozenset({("ZB-08", V)})),
    "ZB-09": (ZB_FLOWS, frozenset({("ZB-09", V)})),
    "ZB-10": (ZB_FLOWS, frozenset({("ZB-10", V)})),
    "ZB-11": (ZB_FLOWS, frozenset({("ZB-11", V)})),
    "ZB-12": (ZB_FLOWS, frozenset({("ZB-12", V)})),
    "ZB-13": (("zb_nothing",), frozenset({("ZB-13", V)})),
    "ZB-14": (("zb_disposal_failed",), frozenset({("ZB-14", V), ("ZB-13", V)})),
    "ZB-15": (ZB_FLOWS, frozenset({("ZB-15", V)})),
    "ZB-16": (ZB_FLOWS, frozenset({("ZB-16", V)})),
    "ZB-17": (ZB_FLOWS, frozenset({("ZB-17", V)})),
    "ZB-18": (ZB_FLOWS, frozenset({("ZB-18", V)})),
    "ZB-19": (ZB_FLOWS, frozenset({("ZB-19", V)})),
    "ZB-20": (ZB_FLOWS, frozenset({("ZB-20", V)})),
    "ZB-21": (ZB_FLOWS, frozenset({("ZB-21", V)})),
    "ZB-22": (ZB_FLOWS, frozenset({("ZB-22", V)})),
    "ZB-23": (ZB_FLOWS, frozenset({("ZB-23", "violation")})),
    "ZB-30": (ZB_FLOWS, frozenset({("ZB-30", V)})),
    "ZB-31": (("zb_nothing",), frozenset({("ZB-31", V)})),
    "ZB-31-soon": (("zb_nothing",), frozenset({("ZB-31", W)})),
    "ZB-32": (("zb_nothing",), frozenset({("ZB-32", V)})),
    "ZB-33": (("zb_disposal_failed",), frozenset({("ZB-33", V)})),
    "ZB-34": (("zb_vehicle",), frozenset({("ZB-34", V)})),
    "ZB-34-soon": (("zb_vehicle",), frozenset({("ZB-34", W)})),
    "ZB-35": (("zb_nothing",), frozenset({("ZB-35", V)})),
    "ZB-36": (("zb_nothing",), frozenset({("ZB-36", V)})),
    "ZB-37": (("resumed",), frozenset({("ZB-37", V)})),
    "ND-01": (ZB_FLOWS + ("paid",), frozenset({("ND-01", V)})),
    "ND-02": (ZB_FLOWS + ("paid",), frozenset({("ND-02", V)})),
    "ND-03": (ZB_FLOWS + ("paid",), frozenset({("ND-03", V)})),
    "ND-04": (("open",), frozenset({("ND-04", V)})),
    "ND-04-soon": (("open",), frozenset({("ND-04", W)})),
    "ND-05": (("paid",), frozenset({("ND-05", V)})),
    "ND-06": (("zb_disposal_failed",), frozenset({("ND-06", V)})),
    "ND-06-cut": (("zb_disposal_failed",), frozenset({("ND-06", V)})),
    "ND-07": (("paid",), frozenset({("ND-07", V)})),
    "ND-07-soon": (("open",), frozenset({("ND-07", W)})),
    "ND-08": (("paid",), frozenset({("ND-08", V)})),
    "EV-01": (ZB_FLOWS, frozenset({("EV-01", V)})),
    "LATE-01": (ZB_FLOWS + ("paid",), frozenset({("LATE-01", V)})),
    "LATE-02": (ZB_FLOWS + ("paid",), frozenset({("LATE-02", V)})),
    "CASENO-01": (ZB_FLOWS + ("paid",), frozenset({("CASENO-01", V)})),
    "KEY-01": (ZB_FLOWS + ("paid",), frozenset({("KEY-01", W)})),
}


def party_hash(id_type: str, value: str) -> str:
    """A stand-in for the courts' keyed party hash (events.md): synthetic, no real key."""
    return hashlib.sha256(f"synthetic-k:{id_type}:{value}".encode()).hexdigest()


@dataclass
class SynthEvent:
    """One entry of the workload: an ``event`` body or an ``evidence`` body, with its times."""

    kind: str
    case: str
    court: str
    occurred_at: int
    recorded_at: int
    body: dict[str, Any]
    officer: str
    corrects: SynthEvent | None = None  # EVENT_CORRECTED: its target, id filled at payload time

    def payload(self, signer: bytes = b"\x00" * 32, nonce: bytes | None = None) -> dict[str, Any]:
        """The entry payload (DESIGN §2); a deterministic nonce unless one is given."""
        if self.corrects is not None:
            target = Record.of(self.corrects.payload(signer), self.corrects.recorded_at)
            self.body["fields"]["corrects"] = target.entry_id.hex()
        if nonce is None:
            seed = f"{self.case}|{self.kind}|{self.occurred_at}|{self.body.get('type')}|" \
                   f"{json.dumps(payload_to_json(self.body), sort_keys=True, ensure_ascii=False)}"
            nonce = hashlib.sha256(seed.encode()).digest()[:16]
        out = {"v": 1, "kind": self.kind, "court": self.court, "case": self.case,
               "time": self.recorded_at - 1000 if self.kind == "event" else self.occurred_at,
               "nonce": nonce, "signer": signer, "body": self.body}
        if self.kind == "identity":
            del out["case"]  # an identity entry belongs to no case
        return out


@dataclass
class SynthCase:
    """One generated case: its events in recording order, its defects and expected findings."""

    case: str
    court: str
    flow: str
    events: list[SynthEvent]
    defects: list[str] = field(default_factory=list)
    expected: set[tuple[str, str]] = field(default_factory=set)
    #: The officer key that signed this case's entries, when it is not the default one.
    signer: bytes | None = None

    def records(self, signer: bytes = b"\x00" * 32) -> list[Record]:
        """The case's entries as records (entry ids computed with SHA-256)."""
        key = self.signer or signer
        return [Record.of(e.payload(key), e.recorded_at) for e in self.events]


class _Flow:
    """Builds one case's events; defects steer the flow away from compliance."""

    def __init__(self, rng: random.Random, case: str, court: str, prefix: str, filed: int,
                 now: int, defects: set[str]) -> None:
        self.rng = rng
        self.case = case
        self.court = court
        self.F = filed
        self.now = now
        self.defects = defects
        self.officers = [f"{prefix}-{n:03d}" for n in rng.sample(range(1, 81), 3)]
        self.events: list[SynthEvent] = []
        self.doc_seq = 0
        n_debtors = rng.choices((1, 2, 3), (70, 22, 8))[0]
        legal = "ZB-23" in defects or rng.random() < 0.15
        self.debtors = [party_hash("uscc" if legal and i == 0 else "rid",
                                   f"{case}-D{i}") for i in range(n_debtors)]
        self.debtor_kinds = ["legal" if legal and i == 0 else "natural"
                             for i in range(n_debtors)]
        self.applicant = party_hash("rid", f"{case}-A")
        self.listed: set[str] = set()
        # Optional compliant extras (a refusal that was sanctioned, a concealment that was
        # searched, a reward notice …) only in cases without a defect, so that a defect's
        # findings are exactly those listed in DEFECTS.
        self.extras = not defects

    def extra(self, p: float) -> bool:
        """True with probability ``p`` in a case without defects."""
        return self.extras and self.rng.random() < p

    # -- helpers ---------------------------------------------------------------------------

    def t(self, days: float, base: int | None = None) -> int:
        """``base`` (default filing) plus whole days, at a working hour of that day."""
        b = self.F if base is None else base
        day = beijing_date(b) + dt.timedelta(days=int(days))
        return day_start(day) + 9 * HOUR_MS + self.rng.randint(0, 7 * 60) * 60_000

    def doc(self) -> str:
        self.doc_seq += 1
        cn = "一二三四五六七八九十"
        n = self.doc_seq
        suffix = cn[n - 1] if n <= 10 else "十" + cn[n - 11] if n < 20 else "十"
        return f"{self.case}之{suffix}"

    def ev(self, etype: str, at: int, refs: list[bytes] | None = None, **fields: Any) -> None:
        body: dict[str, Any] = {"type": etype, "occurred_at": at,
                                "actor": {"officer_id": self.officers[0], "role": "officer"},
                                "fields": fields}
        if refs:
            body["evidence_refs"] = refs
        delay = self.rng.randint(1, 40) * 60_000
        self.events.append(SynthEvent("event", self.case, self.court, at, at + delay, body,
                                      self.officers[0]))

    def evidence(self, at: int) -> bytes:
        sha = hashlib.sha256(f"{self.case}-media-{at}-{self.rng.random()}".encode()).digest()
        body = {"sha256": sha, "media_type": "video/mp4", "size": self.rng.randint(10**6, 10**8),
                "captured_at": at + self.rng.randint(0, 40) * 60_000,
                "location": {"lat_e6": 43_800_000 + self.rng.randint(0, 200_000),
                             "lon_e6": 125_200_000 + self.rng.randint(0, 200_000)},
                "device": f"BWC-{self.rng.randint(1, 99):02d}", "officers": self.officers[:2]}
        cap = body["captured_at"]
        assert isinstance(cap, int)
        self.events.append(SynthEvent("evidence", self.case, self.court, cap,
                                      cap + self.rng.randint(5, 60) * 60_000, body,
                                      self.officers[0]))
        return sha

    def has(self, defect: str) -> bool:
        return defect in self.defects

    # -- phases ----------------------------------------------------------------------------

    def opening(self, *, prior_case: str | None = None) -> None:
        f: dict[str, Any] = {
            "case_type": "执恢" if prior_case else "执", "source": "申请",
            "amount_claimed_fen": self.rng.randint(10_000, 50_000_000) * 100,
            "application_received_at": self.F - self.rng.randint(1, 5) * DAY_MS,
            "basis": {"doc_no": f"（{beijing_date(self.F).year - 1}）{self.court}民初"
                                f"{self.rng.randint(1, 9999)}号",
                      "effective_at": self.F - 40 * DAY_MS, "issuing_body": self.court},
            "applicants": [{"kind": "natural", "party": self.applicant}],
            "debtors": [{"kind": k, "party": p} for k, p in zip(self.debtor_kinds, self.debtors,
                                                               strict=True)],
        }
        if prior_case:
            f["prior_case_no"] = prior_case
        self.ev("CASE_FILED", self.F, **f)
        # Late variants sit beyond the limit plus the longest holiday roll (8 days).
        assigned = self.t(self.rng.randint(17, 20) if self.has("ND-01") else self.rng.randint(0, 3))
        self.ev("HANDLER_ASSIGNED", assigned, handler=self.officers[0], team="执行实施一组")
        self.ev("APPLICANT_NOTIFIED",
                self.t(self.rng.randint(13, 15) if self.has("ND-03") else self.rng.randint(0, 2),
                       assigned) + HOUR_MS, topic="provide_clues", party=self.applicant,
                channel="短信")
        notice_day = self.rng.randint(20, 24) if self.has("ND-02") else self.rng.randint(4, 6)
        for i, d in enumerate(self.debtors):
            at = self.t(notice_day)
            if not (self.has("ZB-02") and i == len(self.debtors) - 1):
                no = self.doc()
                self.ev("EXEC_NOTICE_ISSUED", at, doc_no=no, party=d, dishonest_warning=True,
                        perform_deadline=at + 10 * DAY_MS)
                self.ev("EXEC_NOTICE_SERVED", at + self.rng.randint(1, 3) * DAY_MS, doc_no=no,
                        party=d, method=self.rng.choice(("直接", "邮寄", "电子")),
                        served_at=at + DAY_MS,
                        receipt_sha256=hashlib.sha256(no.encode()).hexdigest())
            if not (self.has("ZB-03") and i == 0):
                o_at = at + (self.rng.randint(3, 6) * DAY_MS if self.has("ZB-03-apart") and i == 0
                             else 30 * 60_000)
                self.ev("PROPERTY_REPORT_ORDER_ISSUED", o_at, doc_no=self.doc(), party=d,
                        questionnaire=True, report_deadline=o_at + 5 * DAY_MS)
            self.ev("CONSUMPTION_RESTRICTED", self.t(notice_day + 2), doc_no=self.doc(),
                    order_no=f"XF{self.rng.randint(1000, 9999)}", party=d, persons=[d],
                    signed_by_president=True)

    def inquiries(self, found: dict[str, dict[str, Any]] | None = None) -> None:
        """网络查控 for every debtor; ``found`` maps a category to the asset found (debtor 0)."""
        found = found or {}
        for i, d in enumerate(self.debtors):
            batch = f"{self.case}-NQ{i}"
            req = self.t(7 + i)
            self.ev("NET_INQUIRY_REQUESTED", req, batch_id=batch, categories=list(CATEGORIES),
                    channel="总对总", party=d)
            for cat in CATEGORIES:
                if self.has("ZB-09") and i == 0 and cat == "SECURITIES":
                    continue
                status, assets = "NONE", []
                if i == 0 and cat in found:
                    status, assets = "FOUND", [found[cat]]
                elif i == 0 and self.has("ZB-10") and cat == next(
                        c for c in ("VEHICLE", "SECURITIES", "EQUITY") if c not in found):
                    status = "UNSUPPORTED"
                elif self.rng.random() < 0.05:
                    status = "UNSUPPORTED"
                at = req + self.rng.randint(1, 4) * DAY_MS
                self.ev("NET_INQUIRY_FEEDBACK", at, batch_id=batch, category=cat, status=status,
                        assets=assets, feedback_at=at, institution="总对总", party=d)
                if status == "UNSUPPORTED" and not (self.has("ZB-10") and i == 0):
                    self.ev("OFFLINE_INQUIRY", at + self.rng.randint(2, 8) * DAY_MS,
                            category=cat, channel="登门临柜", institution="车管所", party=d,
                            result="未发现", status="NONE")

    def investigation(self) -> None:
        for i, d in enumerate(self.debtors):
            if self.rng.random() < 0.8 or (i == 0 and self.has("ZB-04")):
                s = self.t(10 + i)
                self.ev("PROPERTY_REPORT_SUBMITTED", s, party=d, items=[
                    {"category": "DEPOSIT", "description": "工资卡", "value_fen": 12_000}])
                if not (self.has("ZB-04") and i == 0):
                    self.ev("PROPERTY_REPORT_VERIFIED", s + self.rng.randint(2, 8) * DAY_MS,
                            party=d, method="网络查控比对", result="一致", discrepancies=[])
        if self.has("ZB-05"):
            d = self.debtors[0]
            self.ev("PROPERTY_REPORT_OVERDUE", self.t(20), party=d, report_deadline=self.t(18))
            self.list_dishonest(d, self.t(22))
        elif self.extra(0.08) or self.has("ZB-36"):
            d = self.debtors[0]
            self.ev("PROPERTY_REPORT_REFUSED", self.t(20), party=d, report_deadline=self.t(18))
            self.ev("FINE", self.t(23), amount_fen=500_000, approved_by="院长",
                    decision_no=self.doc(), doc_no=self.doc(), person=d, reason="拒绝报告财产")
            self.list_dishonest(d, self.t(24))
        if not self.has("ZB-10"):
            d = self.debtors[0]
            at = self.t(self.rng.randint(15, 35))
            refs = [] if self.has("EV-01") else [self.evidence(at)]
            self.ev("SITE_INVESTIGATION", at, refs, party=d, officers=self.officers[:2],
                    start_at=at, end_at=at + HOUR_MS, address_hash=party_hash("addr", d),
                    gps={"lat_e6": 43_850_000, "lon_e6": 125_300_000}, findings="未发现财产")
        for i, d in enumerate(self.debtors):
            if self.has("ZB-17") and i == 0:
                continue
            if self.has("ZB-15") and i == 0:
                self.ev("DEBTOR_MISSING_FLAGGED", self.t(30), party=d, basis="住所地无人",
                        source="现场调查")
                continue
            self.ev("INTERROGATION", self.t(self.rng.randint(20, 50)), doc_no=self.doc(), party=d,
                    person=d, person_role="被执行人",
                    transcript_sha256=party_hash("transcript", d))
        if self.has("ZB-07"):
            self.ev("OBSTRUCTION_FLAGGED", self.t(40), party=self.debtors[0], basis="阻挠查封",
                    source="执行员")
            self.ev("DETENTION", self.t(41), approved_by="院长", days=5, decision_no=self.doc(),
                    doc_no=self.doc(), person=self.debtors[0], reason="妨害执行")
        if self.has("ZB-16"):
            self.ev("OBSTRUCTION_FLAGGED", self.t(40), party=self.debtors[0], basis="辱骂执行人员",
                    source="执行员")
            self.list_dishonest(self.debtors[0], self.t(42))
        if self.has("ZB-11") or self.extra(0.04):
            self.ev("CONCEALMENT_FLAGGED", self.t(36), party=self.debtors[0], basis="转移账簿",
                    source="申请人")
            self.list_dishonest(self.debtors[0], self.t(37))
            if not self.has("ZB-11"):
                at = self.t(39)
                self.ev("SEARCH", at, [self.evidence(at)], doc_no=self.doc(), party=self.debtors[0],
                        officers=self.officers[:3], warrant_no=f"SW{self.rng.randint(1, 999)}",
                        signed_by_president=True, start_at=at, end_at=at + 2 * HOUR_MS,
                        place_hash=party_hash("place", self.case), items_found="无")
        if self.has("ZB-08") or self.has("ZB-08-late") or self.rng.random() < 0.5:
            at = self.t(self.rng.randint(20, 40))
            urgent = self.rng.random() < 0.2
            self.ev("CLUE_SUBMITTED", at, clue_id=f"{self.case}-C1", submitter=self.applicant,
                    urgent=urgent, category="VEHICLE", clue="被执行人使用车辆")
            if not self.has("ZB-08"):
                lag = self.rng.randint(16, 20) if self.has("ZB-08-late") else (
                    self.rng.randint(1, 2) if urgent else self.rng.randint(1, 5))
                self.ev("CLUE_VERIFIED", at + lag * DAY_MS, clue_id=f"{self.case}-C1",
                        method="车管所核查", result="无此车辆")
        if self.has("ZB-12") or self.extra(0.05):
            at = self.t(45)
            self.ev("REWARD_APPLIED", at, amount_fen=1_000_000, party=self.applicant,
                    reward_id=f"{self.case}-R")
            if not self.has("ZB-12"):
                self.ev("REWARD_DECIDED", at + 3 * DAY_MS, decision="granted",
                        reward_id=f"{self.case}-R")
                self.ev("REWARD_PUBLISHED", at + 6 * DAY_MS, amount_fen=1_000_000,
                        platform="法院公告网", reward_id=f"{self.case}-R")
        if self.has("ZB-06"):
            self.ev("CONSUMPTION_RESTRICTION_LIFTED", self.t(60), party=self.debtors[-1],
                    reason="被执行人申请")

    def list_dishonest(self, d: str, at: int) -> None:
        self.ev("DISHONEST_LISTED", at, decision_no=self.doc(), doc_no=self.doc(), party=d,
                period_months=24, published_at=at + DAY_MS, situation="(2)")
        self.listed.add(d)

    def seizure(self, at: int, asset_id: str, asset_type: str, asset_class: str, measure: str,
                limit_months: int | None, *, physically: bool | None = None) -> None:
        f: dict[str, Any] = {"asset_id": asset_id, "asset_type": asset_type,
                             "asset_class": asset_class, "measure": measure,
                             "party": self.debtors[0], "doc_no": self.doc(),
                             "ruling_no": self.doc(), "start_at": at, "rank": "首封",
                             "officers": self.officers[:2], "registry": "不动产登记中心"}
        if limit_months is not None:
            f["expires_at"] = day_start(add_months(beijing_date(at), limit_months)) \
                + 12 * HOUR_MS
        if physically is not None:
            f["physically_seized"] = physically
        refs: list[bytes] = []
        if asset_class == "movable" and physically:
            f["attendees"] = [self.debtors[0]]
            f["debtor_notified"] = True
            if not self.has("ND-08"):
                f["inventory_hash"] = party_hash("inventory", asset_id)
            refs = [self.evidence(at)]
        self.ev("SEIZURE", at, refs, **f)

    def renewals(self, asset_id: str, seized_at: int, months: int, *, stop: int) -> None:
        """续封 before expiry, as long as the seizure is held (民诉解释 §485)."""
        expiry = day_start(add_months(beijing_date(seized_at), months)) + 12 * HOUR_MS
        while expiry <= self.now + 60 * DAY_MS and expiry < stop:
            at = expiry - self.rng.randint(35, 55) * DAY_MS
            if at > self.now - HOUR_MS:
                at = self.now - 2 * HOUR_MS
            new = day_start(add_months(beijing_date(expiry), months)) + 12 * HOUR_MS
            self.ev("SEIZURE_RENEWED", at, asset_id=asset_id, doc_no=self.doc(),
                    expires_at=new, previous_expires_at=expiry, requested_by="依职权")
            expiry = new

    def auction(self, asset_id: str, start: int, value: int, *, sell_round: int | None) -> int:
        """Valuation and online auction rounds; returns when the last step happened."""
        val_at = start + (self.rng.randint(40, 45) if self.has("ND-05")
                          else self.rng.randint(5, 20)) * DAY_MS
        self.ev("VALUATION_STARTED", val_at, asset_id=asset_id, institution="评估机构",
                method="委托评估")
        rep = val_at + self.rng.randint(10, 20) * DAY_MS
        self.ev("VALUATION_REPORTED", rep, asset_id=asset_id, method="委托评估", value_fen=value)
        price = value * self.rng.randint(70, 100) // 100
        at = rep + self.rng.randint(1, 7) * DAY_MS
        for rnd in (1, 2):
            self.ev("AUCTION_ANNOUNCED", at, asset_id=asset_id, auction_at=at + 30 * DAY_MS,
                    notice_at=at, platform="人民法院诉讼资产网", round=rnd,
                    starting_price_fen=price)
            res_at = at + 31 * DAY_MS
            if self.has("ZB-14") and rnd == 2:
                return res_at
            sold = sell_round == rnd
            extra: dict[str, Any] = {"price_fen": price} if sold else {}
            if sold:
                extra["buyer_hash"] = party_hash("rid", f"buyer-{asset_id}")
            self.ev("AUCTION_RESULT", res_at, asset_id=asset_id, round=rnd,
                    result="SOLD" if sold else "UNSOLD", **extra)
            if sold:
                return res_at
            if rnd == 1:
                gap = self.rng.randint(40, 45) if self.has("ND-06") else self.rng.randint(5, 20)
                at = res_at + gap * DAY_MS
                cut = self.rng.randint(25, 35) if self.has("ND-06-cut") else self.rng.randint(
                    5, 20)
                price = price * (100 - cut) // 100
        return res_at

    def funds(self, at: int, amount: int, *, late: bool = False) -> int:
        fid = f"{self.case}-F{self.rng.randint(1, 10**6)}"
        self.ev("FUNDS_RECEIVED", at, amount_fen=amount, funds_id=fid, payer=self.debtors[0],
                source="拍卖款")
        out = at + (self.rng.randint(40, 50) if late else self.rng.randint(3, 20)) * DAY_MS
        self.ev("FUNDS_DISBURSED", out, amount_fen=amount, funds_id=fid, payee=self.applicant)
        return out

    def closing_zb(self, not_before: int) -> int:
        """约谈 → 意见 → 终本裁定 → 送达 → 结案 → 终本库 → 公开. Returns the service time."""
        earliest = self.F + 95 * DAY_MS
        if self.has("ZB-01"):
            interview = self.t(self.rng.randint(55, 75))
        else:
            interview = self.t(0, max(earliest, not_before + DAY_MS))
        if interview + 15 * DAY_MS > self.F + 170 * DAY_MS:
            # A long disposal: the president extends the six-month limit in good time
            # (法释〔2000〕29号 §5: requested before expiry).
            self.ev("EXTENSION_APPROVED", self.t(150), approver="院长",
                    new_deadline=self.t(400))
        flags: dict[str, Any] = {
            "informed_basis_and_consequences": True, "informed_execution": True,
            "informed_measures": True, "informed_property": not self.has("ZB-18")}
        self.ev("APPLICANT_INTERVIEW", interview, party=self.applicant, channel="面谈",
                interviewee=self.applicant, record_sha256=party_hash("record", self.case),
                doc_no=self.doc(), **flags)
        consent = not self.has("ZB-19") and self.rng.random() < 0.85
        self.ev("APPLICANT_OPINION", interview + DAY_MS, party=self.applicant,
                opinion="agree" if consent else "object", signed_consent=consent)
        if not consent and not self.has("ZB-19"):
            self.ev("HEARING", interview + 2 * DAY_MS, party=self.applicant, topic="终本异议")
            self.ev("COLLEGIAL_REVIEW", interview + 3 * DAY_MS, decision="同意终本",
                    members=self.officers)
            self.ev("PRESIDENT_APPROVAL", interview + 4 * DAY_MS, approver="院长",
                    decision="批准")
        ruling = interview + self.rng.randint(5, 8) * DAY_MS
        no = self.doc()
        self.ev("ZB_RULING_ISSUED", ruling, doc_no=no, amount_outstanding_fen=1,
                amount_realized_fen=0,
                contains_claim=True, contains_process=True, contains_property=True,
                contains_realized=True, contains_rights=not self.has("ZB-20"))
        served = ruling + self.rng.randint(1, 3) * DAY_MS
        self.ev("ZB_RULING_SERVED", served, doc_no=no, party=self.applicant, method="电子送达",
                served_at=served)
        closed = served - 2 * DAY_MS if self.has("ZB-21") else served + self.rng.randint(
            0, 1) * DAY_MS + HOUR_MS
        self.ev("CASE_CLOSED", closed, doc_no=no, mode="终本")
        self.ev("ZB_DB_ENTERED", served + (self.rng.randint(20, 30) if self.has("ZB-30")
                                           else self.rng.randint(1, 4)) * DAY_MS, doc_no=no)
        if not self.has("ZB-22"):
            self.ev("RULING_PUBLISHED", served + self.rng.randint(1, 5) * DAY_MS, doc_no=no,
                    published=True, url=f"https://wenshu.court.gov.cn/{self.rng.randint(1, 10**9)}")
        if "legal" in self.debtor_kinds and not self.has("ZB-23"):
            self.ev("BANKRUPTCY_REFERRED", served + 5 * DAY_MS, receiving_court="吉01")
        return served

    def post_closure(self, served: int, *, until: int | None = None) -> None:
        """Every six months a network query and a notice to the applicant (终本规定 §9)."""
        end_all = min(self.now, until) if until is not None else self.now
        fruitless = 0
        skip_window = None
        for k in range(10):
            start = served if k == 0 else day_start(add_months(beijing_date(served), 6 * k)) \
                + DAY_MS
            end = day_start(add_months(beijing_date(served), 6 * (k + 1)) + dt.timedelta(days=1))
            if self.has("ZB-31") and skip_window is None and end < self.now - 15 * DAY_MS:
                skip_window = k
            if k == skip_window:
                continue
            if self.has("ZB-31-soon") and self.now < end <= self.now + 25 * DAY_MS:
                return
            latest = min(end_all - 4 * DAY_MS, start + 150 * DAY_MS)
            if latest < start + 2 * DAY_MS:
                return
            q = start + self.rng.randint(2 * DAY_MS, latest - start)
            found = self.has("ZB-32") and k == 0
            self.ev("POST_CLOSURE_QUERY", q, window=k, batch_id=f"{self.case}-PQ{k}",
                    categories=list(CATEGORIES), channel="总对总", parties=self.debtors,
                    result="FOUND" if found else "NONE",
                    assets=[{"asset_id": f"{self.case}-NEWCAR"}] if found else [])
            self.ev("APPLICANT_NOTIFIED", q + DAY_MS, window=k, topic="post_closure_query_result",
                    party=self.applicant, channel="短信", batch_id=f"{self.case}-PQ{k}")
            if found:
                continue  # property found: ZB-32 says what must follow; queries go on
            fruitless += 1
            if fruitless == 2 and self.listed and not self.has("ZB-36"):
                for d in sorted(self.listed):
                    self.ev("DISHONEST_DELISTED", q + 2 * DAY_MS, party=d,
                            reason="两次网络查询未发现财产")
                self.listed.clear()


def _pick_flow(rng: random.Random, defects: list[str]) -> str:
    if defects:
        allowed = set(DEFECTS[defects[0]][0])
        for d in defects[1:]:
            allowed &= set(DEFECTS[d][0])
        return rng.choice(sorted(allowed))
    return rng.choices([f for f, _ in FLOWS], [w for _, w in FLOWS])[0]


def generate_case(rng: random.Random, seq: int, now: int, defects: list[str],
                  flow: str | None = None,
                  courts: tuple[tuple[str, str], ...] = COURTS) -> list[SynthCase]:
    """One case (two for a resumed pair) with the given defects. Events at or after ``now``
    are never produced."""
    flow = flow or _pick_flow(rng, defects)
    court, prefix = courts[seq % len(courts)]
    dset = set(defects)
    if flow == "open":
        back = rng.randint(15, 140)
        if "ND-04" in dset:
            back = rng.randint(200, 300)
        elif "ND-04-soon" in dset:
            back = (now - day_start(add_months(beijing_date(now), -6))) // DAY_MS - 10
    elif flow == "zb_vehicle" and "ZB-34" in dset:
        back = rng.randint(800, 1000)
    elif flow == "zb_vehicle" and "ZB-34-soon" in dset:
        # the vehicle is seized on day 12; make its 24 months end 10 … 20 days from now
        expiry = now + rng.randint(10, 20) * DAY_MS
        back = (now - (day_start(add_months(beijing_date(expiry), -24))) + 12 * DAY_MS) // DAY_MS
    elif flow in ZB_FLOWS or flow == "resumed":
        back = rng.randint(260, 1500)
        if "ZB-31-soon" in dset:
            # served ≈ filing + 103 days; make the second window end 12 days from now
            target = beijing_date(now + 12 * DAY_MS)
            back = (now - day_start(add_months(target, -12))) // DAY_MS + 103
        if dset & {"ZB-32", "ZB-36", "ZB-31", "ZB-35"} or flow == "resumed":
            back = max(back, 700)
    else:
        back = rng.randint(250, 900)
    filed = day_start(beijing_date(now) - dt.timedelta(days=back)) + 9 * HOUR_MS
    year = beijing_date(filed).year
    if "CASENO-01" in dset:
        case = f"（{year}）{court}执字第{seq + 1}号"
    else:
        case = f"（{year}）{court}执{seq + 1}号"
    fl = _Flow(rng, case, court, prefix, filed, now, dset)
    out: list[SynthCase] = []
    if flow == "open":
        fl.opening()
        fl.inquiries()
        fl.investigation()
        if "ND-07-soon" in dset:
            fid = f"{case}-F1"
            fl.ev("FUNDS_RECEIVED", now - rng.randint(3, 10) * DAY_MS, amount_fen=50_000,
                  funds_id=fid, payer=fl.debtors[0], source="扣划")
    elif flow == "paid":
        fl.opening()
        house = f"{case}-H1"
        fl.inquiries({"REAL_ESTATE": {"asset_id": house, "value_fen": 80_000_000}})
        fl.investigation()
        seized_at = fl.t(14)
        if "ND-08" in dset or rng.random() < 0.3:
            car = f"{case}-V1"
            fl.seizure(fl.t(13), car, "VEHICLE", "movable", "扣押", 24, physically=True)
            done = fl.auction(car, fl.t(13), 6_000_000, sell_round=1)
            fl.funds(done + 5 * DAY_MS, 6_000_000)
        fl.seizure(seized_at, house, "REAL_ESTATE", "immovable", "查封", 36)
        sold = fl.auction(house, seized_at, 80_000_000, sell_round=rng.choice((1, 2)))
        paid = fl.funds(sold + rng.randint(5, 15) * DAY_MS, 70_000_000, late="ND-07" in dset)
        if paid > filed + 170 * DAY_MS:
            fl.ev("EXTENSION_APPROVED", fl.t(165), approver="院长", new_deadline=fl.t(400))
        fl.ev("CASE_CLOSED", paid + DAY_MS, doc_no=fl.doc(), mode="执行完毕")
        fl.ev("SEIZURE_RELEASED", paid + 2 * DAY_MS, asset_id=house, reason="执行完毕")
    else:
        zb_flow = "zb_nothing" if flow == "resumed" else flow
        fl.opening()
        not_before = filed
        if zb_flow == "zb_nothing":
            if "ZB-13" in dset:
                fl.inquiries({"DEPOSIT": {"asset_id": f"{case}-ACC", "balance_fen": 300_000}})
            else:
                fl.inquiries()
            fl.investigation()
        elif zb_flow == "zb_vehicle":
            acc, car = f"{case}-ACC", f"{case}-V1"
            fl.inquiries({"DEPOSIT": {"asset_id": acc, "balance_fen": 80_000},
                          "VEHICLE": {"asset_id": car, "value_fen": 3_000_000}})
            fl.investigation()
            fl.seizure(fl.t(10), acc, "DEPOSIT", "right", "扣划", None)
            fl.funds(fl.t(11), 80_000)
            fl.seizure(fl.t(12), car, "VEHICLE", "movable", "查封", 24, physically=False)
            if "ZB-34" not in dset and "ZB-34-soon" not in dset:
                fl.renewals(car, fl.t(12), 24, stop=now + 10**12)
            not_before = fl.t(40)
        else:  # zb_disposal_failed
            house = f"{case}-H1"
            fl.inquiries({"REAL_ESTATE": {"asset_id": house, "value_fen": 50_000_000}})
            fl.investigation()
            at = fl.t(12)
            fl.seizure(at, house, "REAL_ESTATE", "immovable", "查封", 36)
            last = fl.auction(house, at, 50_000_000, sell_round=None)
            if "ZB-14" not in dset:
                fl.ev("ACCEPT_IN_KIND_OFFERED", last + 2 * DAY_MS, asset_id=house,
                      party=fl.applicant, price_fen=1)
                fl.ev("ACCEPT_IN_KIND_DECLINED", last + 4 * DAY_MS, asset_id=house,
                      party=fl.applicant, price_fen=1, forced_management_possible=False)
            not_before = last + 5 * DAY_MS
            released = None
            if "ZB-33" in dset:
                released = not_before + 40 * DAY_MS
            fl.renewals(house, at, 36, stop=released or now + 10**12)
        served = fl.closing_zb(not_before)
        if "ZB-33" in dset:
            fl.ev("SEIZURE_RELEASED", served + 20 * DAY_MS, asset_id=f"{case}-H1",
                  reason="终本结案")
        if flow == "resumed":
            resume_at = served + rng.randint(200, 400) * DAY_MS
            resume_at = min(resume_at, now - 200 * DAY_MS)
            fl.post_closure(served, until=resume_at)
            new_case = f"（{beijing_date(resume_at).year}）{court}执恢{seq + 1}号"
            fl.ev("RESUMED", resume_at, basis="申请执行人提供新线索", new_case_no=new_case,
                  trigger="application")
            nf = _Flow(rng, new_case, court, prefix, resume_at + DAY_MS, now,
                       {"ZB-37"} if "ZB-37" in dset else set())
            nf.debtors, nf.debtor_kinds, nf.applicant = fl.debtors, fl.debtor_kinds, fl.applicant
            nf.opening(prior_case=case)
            nf.inquiries()
            nf.investigation()
            if "ZB-37" in dset:
                served2 = nf.closing_zb(nf.F)
                nf.post_closure(served2)
            else:
                acc = f"{new_case}-ACC"
                nf.seizure(nf.t(9), acc, "DEPOSIT", "right", "扣划", None)
                paid = nf.funds(nf.t(10), 60_000)
                served2 = nf.closing_zb(paid)
                nf.post_closure(served2)
            out.append(SynthCase(new_case, court, "resumed-new", nf.events))
        elif "ZB-35" in dset or (zb_flow == "zb_nothing" and not dset and rng.random() < 0.05
                                 and served + 40 * DAY_MS < now - 20 * DAY_MS):
            paid_at = min(served + rng.randint(60, 150) * DAY_MS, now - 20 * DAY_MS)
            fl.post_closure(served, until=paid_at)
            fl.ev("FUNDS_RECEIVED", paid_at - 10 * DAY_MS, amount_fen=1_000_000,
                  funds_id=f"{case}-FP", payer=fl.debtors[0], source="主动履行")
            fl.ev("FUNDS_DISBURSED", paid_at - 3 * DAY_MS, amount_fen=1_000_000,
                  funds_id=f"{case}-FP", payee=fl.applicant)
            fl.ev("CASE_CLOSED", paid_at, doc_no=fl.doc(), mode="执行完毕")
            if "ZB-35" not in dset:
                fl.ev("ZB_DB_MASKED", paid_at + DAY_MS, doc_no=fl.doc(), reason="执行完毕")
        else:
            fl.post_closure(served)
        if not dset and rng.random() < 0.05:
            _add_correction(fl, rng)
    main = SynthCase(case, court, flow, fl.events, list(defects))
    out.insert(0, main)
    for sc in out:
        sc.events = [e for e in sc.events if e.recorded_at < now and e.occurred_at < now]
    _late_defects(main, rng, dset, now)
    if "KEY-01" in dset:
        _compromised_key(main, now)
    expected: set[tuple[str, str]] = set()
    for d in defects:
        expected |= DEFECTS[d][1]
    # ZB-37 is reported on the resumed case, everything else on the case that has the defect.
    if "ZB-37" in dset:
        expected.discard(("ZB-37", V))
        out[1].expected.add(("ZB-37", V))
    main.expected |= expected
    return out


def _add_correction(fl: _Flow, rng: random.Random) -> None:
    """A clerk's typo fixed by EVENT_CORRECTED (compliant after correction)."""
    ruling = next((e for e in fl.events if e.body.get("type") == "ZB_RULING_ISSUED"), None)
    if ruling is None:
        return
    ruling.body["fields"]["contains_property"] = False
    fixed = json.loads(json.dumps(payload_to_json(ruling.body)))
    fixed["fields"]["contains_property"] = True
    fl.ev("EVENT_CORRECTED", ruling.occurred_at + 3 * HOUR_MS, corrects="00" * 32,
          reason="漏勾选查明财产情况", body=fixed)
    fl.events[-1].corrects = ruling


def _compromised_key(sc: SynthCase, now: int) -> None:
    """The officer's key is revoked as compromised from the middle of the case on (KEY-01)."""
    key = hashlib.sha256(f"officer key {sc.case}".encode()).digest()
    sc.signer = key
    ident = "officer-" + hashlib.sha256(sc.case.encode()).hexdigest()[:8]
    first = sc.events[0].recorded_at
    since = sc.events[len(sc.events) // 2].recorded_at
    add = SynthEvent("identity", sc.case, sc.court, first - DAY_MS, first - DAY_MS,
                     {"op": "add", "id": ident, "court": sc.court, "roles": ["officer"],
                      "public_key": key}, ident)
    revoke = SynthEvent("identity", sc.case, sc.court, now - 2 * DAY_MS, now - 2 * DAY_MS,
                        {"op": "revoke", "id": ident, "court": sc.court,
                         "compromised_since": since}, ident)
    sc.events = [add, *sc.events, revoke]


def _late_defects(sc: SynthCase, rng: random.Random, dset: set[str], now: int) -> None:
    events = [e for e in sc.events if e.kind == "event"
              and e.body.get("type") not in ("EVENT_CORRECTED",)]
    if "LATE-01" in dset:
        e = next(e for e in events if e.occurred_at < now - 30 * DAY_MS)
        e.recorded_at = e.occurred_at + rng.randint(4, 20) * DAY_MS
    if "LATE-02" in dset:
        e = events[len(events) // 2]
        e.recorded_at = e.occurred_at - rng.randint(3, 10) * HOUR_MS
    sc.events.sort(key=lambda e: e.recorded_at)


def generate(n_cases: int, *, seed: int = 1, now: int, defect_rate: float = 0.3,
             rates: dict[str, float] | None = None, cover_all: bool = True,
             courts: list[str] | None = None) -> Iterator[SynthCase]:
    """Yield ``n_cases`` cases (a resumed pair counts as one), grouped by case.

    ``defect_rate`` is the share of cases with one defect, spread evenly over the defects;
    ``rates`` sets a rate per defect instead. With ``cover_all`` the first defective cases take
    the defects in turn, so every rule is hit at least once when enough cases are asked for.
    """
    rng = random.Random(seed)
    court_list: tuple[tuple[str, str], ...] = COURTS
    if courts:
        known = dict(COURTS)
        court_list = tuple((c, known.get(c, "OF" + "".join(ch for ch in c if ch.isdigit())))
                           for c in courts if c != "最高法") or COURTS
    names = sorted(DEFECTS)
    queue = list(names) if cover_all else []
    for i in range(n_cases):
        defects: list[str] = []
        if queue and i % 2 == 1:
            defects = [queue.pop(0)]
        elif rates:
            defects = [d for d, r in rates.items() if rng.random() < r][:1]
        elif rng.random() < defect_rate:
            defects = [rng.choice(names)]
        yield from generate_case(rng, i, now, defects, courts=court_list)


DEFAULT_NOW = "2026-06-01"


def demo_items(courts: list[str], cases: int, seed: int = 1, now: int | None = None,
               defect_rate: float = 0.3) -> Iterator[dict[str, Any]]:
    """Unsigned items for ``courtledger demo``: ``{"kind", "case", "court", "role", "body"}``.

    The node signs and submits them now, so business times lie in the past (the courts'
    history, reported by LATE-01 as pre-chain when their onboarding time is known).
    Corrections are folded into their target here, because an ``EVENT_CORRECTED`` names the
    target's entry id, which only exists once the node has signed it.
    """
    import time as _time

    now = now if now is not None else int(_time.time() * 1000)
    for sc in generate(cases, seed=seed, now=now, defect_rate=defect_rate, courts=courts):
        for e in sc.events:
            if e.corrects is not None:
                e.corrects.body = dict(e.body["fields"]["body"])
                e.corrects.body["fields"] = dict(e.corrects.body["fields"])
        for e in sc.events:
            if e.corrects is not None or e.kind == "identity":
                continue  # identity changes need the court's admin signatures, not an officer's
            body = e.body
            if e.kind == "event" and "evidence_refs" in body:
                body = {**body, "evidence_refs": [bytes.fromhex(x) if isinstance(x, str) else x
                                                  for x in body["evidence_refs"]]}
            yield {"kind": e.kind, "case": e.case, "court": e.court, "role": "officer",
                   "body": body}


def write(path: str | Path, cases: Iterator[SynthCase]) -> tuple[int, int]:
    """Write an events file and ``<stem>.truth.json`` beside it; returns (cases, entries)."""
    path = Path(path)
    truth: dict[str, Any] = {}
    n_cases = n_entries = 0
    with open(path, "w", encoding="utf-8") as fh:
        for sc in cases:
            n_cases += 1
            truth[sc.case] = {"flow": sc.flow, "defects": sc.defects,
                              "expected": sorted([list(x) for x in sc.expected])}
            for rec in sc.records():
                fh.write(json.dumps({"recorded_at": rec.recorded_at,
                                     "payload": payload_to_json(rec.payload)},
                                    ensure_ascii=False, separators=(",", ":")) + "\n")
                n_entries += 1
    truth_path = path.with_name(path.stem + ".truth.json")
    truth_path.write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    return n_cases, n_entries


def main(argv: list[str] | None = None) -> int:
    """``python -m verifier.synth``: write a workload and its ground truth."""
    ap = argparse.ArgumentParser(prog="python -m verifier.synth", description=__doc__.split(
        "\n")[0])
    ap.add_argument("--cases", type=int, default=1000,
                    help="cases to generate (a resumed 执恢 pair counts as one)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    ap.add_argument("--now", default=DEFAULT_NOW,
                    help="inspection time the workload is built for (ISO date or ms)")
    ap.add_argument("--defect-rate", type=float, default=0.3,
                    help="share of cases with one defect, spread over all defects")
    ap.add_argument("--rate", action="append", default=[], metavar="DEFECT=RATE",
                    help="rate of one defect (repeatable); replaces --defect-rate")
    ap.add_argument("--out", default="events.jsonl",
                    help="events file; the ground truth goes to <stem>.truth.json beside it")
    ap.add_argument("--list-defects", action="store_true",
                    help="list the defects and the findings each produces, then exit")
    args = ap.parse_args(argv)
    if args.list_defects:
        for name, (flows, found) in sorted(DEFECTS.items()):
            print(f"{name:12} {', '.join(f'{r} {k}' for r, k in sorted(found)):40} "
                  f"flows: {', '.join(flows)}")
        return 0
    rates = {}
    for item in args.rate:
        name, _, value = item.partition("=")
        if name not in DEFECTS:
            print(f"unknown defect {name!r}; known: {', '.join(sorted(DEFECTS))}",
                  file=sys.stderr)
            return 2
        rates[name] = float(value)
    now = parse_now(args.now)
    n, m = write(args.out, generate(args.cases, seed=args.seed, now=now,
                                    defect_rate=args.defect_rate, rates=rates or None))
    print(f"wrote {m} entries of {n} cases to {args.out} (now {args.now}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
