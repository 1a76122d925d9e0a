"""One hand-written fixture per rule: the compliant case stays silent, a violating one fires.

Each fixture cites the line of domain/events.md or domain/rulebook.md it follows. The base
case is ``casebook.compliant()``; each violation is a small edit of it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from casebook import (
    A1,
    CASE,
    COURT,
    D1,
    D2,
    EVID,
    NOW,
    O1,
    Book,
    Ev,
    compliant,
    day,
)

from verifier.engine import inspect_records
from verifier.findings import Finding
from verifier.rules import RULES


def run(book: Book, now: int = NOW, **kw: object) -> list[Finding]:
    return inspect_records(book.records(), now, **kw).findings()  # type: ignore[arg-type]


def hits(book: Book, rule: str, now: int = NOW, **kw: object) -> list[Finding]:
    return [f for f in run(book, now, **kw) if f.rule == rule]


def entry_ids(book: Book, *events: Ev) -> set[bytes]:
    return {book.record_of(e).entry_id for e in events}


def cited(f: Finding) -> set[bytes]:
    return {i for i, _ in f.entries}


def test_compliant_case_is_clean() -> None:
    assert run(compliant()) == []


def test_compliant_case_with_several_debtors_is_clean() -> None:
    # events.md: per-debtor duties apply to every debtor in CASE_FILED.debtors, matched by party.
    assert run(compliant((D1, D2))) == []


def set_field(etype: str, **fields: object) -> Callable[[Book], None]:
    def edit(b: Book) -> None:
        b.get(etype).fields.update(fields)
    return edit


def move(etype: str, n: float) -> Callable[[Book], None]:
    def edit(b: Book) -> None:
        e = b.get(etype)
        e.at = day(n)
        for k in ("served_at",):
            if k in e.fields:
                e.fields[k] = day(n)
    return edit


def drop(etype: str) -> Callable[[Book], None]:
    return lambda b: b.drop(etype)


def add(etype: str, n: float, **fields: object) -> Callable[[Book], None]:
    return lambda b: b.add(etype, n, **fields) and None


def seq(*edits: Callable[[Book], None]) -> Callable[[Book], None]:
    def edit(b: Book) -> None:
        for e in edits:
            e(b)
    return edit


# (rule, edit, event types the finding must cite, source line)
VIOLATIONS: list[tuple[str, Callable[[Book], None], tuple[str, ...], str]] = [
    ("ZB-01", move("ZB_RULING_ISSUED", 92), ("CASE_FILED", "ZB_RULING_ISSUED"),
     "events.md: ruling date later than filing date plus three months (06-03 is not later)"),
    ("ZB-02", drop("EXEC_NOTICE_ISSUED"), ("ZB_RULING_ISSUED",), "rulebook ZB-02"),
    ("ZB-03", drop("PROPERTY_REPORT_ORDER_ISSUED"), ("ZB_RULING_ISSUED",), "rulebook ZB-03"),
    ("ZB-04", drop("PROPERTY_REPORT_VERIFIED"), ("PROPERTY_REPORT_SUBMITTED",
                                                 "ZB_RULING_ISSUED"), "rulebook ZB-04"),
    ("ZB-05", seq(add("PROPERTY_REPORT_REFUSED", 14, party=D1),
                  add("DISHONEST_LISTED", 16, party=D1)),
     ("PROPERTY_REPORT_REFUSED", "ZB_RULING_ISSUED"), "rulebook ZB-05: then a FINE … exists"),
    ("ZB-06", add("CONSUMPTION_RESTRICTION_LIFTED", 50, party=D1, reason="履行"),
     ("CONSUMPTION_RESTRICTION_LIFTED", "ZB_RULING_ISSUED"),
     "events.md: a CONSUMPTION_RESTRICTED … that was not lifted before it"),
    ("ZB-07", seq(add("OBSTRUCTION_FLAGGED", 40, party=D1, basis="x", source="officer"),
                  add("FINE", 41, person=D1, amount_fen=100, decision_no="F1")),
     ("OBSTRUCTION_FLAGGED", "ZB_RULING_ISSUED"), "events.md: ZB-07 triggers"),
    ("ZB-08", drop("CLUE_VERIFIED"), ("CLUE_SUBMITTED", "ZB_RULING_ISSUED"), "rulebook ZB-08"),
    ("ZB-09", lambda b: b.drop("NET_INQUIRY_FEEDBACK", lambda e: e.fields["category"] ==
                               "SECURITIES"), ("ZB_RULING_ISSUED",),
     "events.md: each of DEPOSIT, VEHICLE, REAL_ESTATE, SECURITIES has a final feedback"),
    ("ZB-10", seq(lambda b: next(e for e in b.events if e.fields.get("category") == "VEHICLE"
                                 ).fields.update(status="FAILED"), drop("SITE_INVESTIGATION")),
     ("NET_INQUIRY_FEEDBACK", "ZB_RULING_ISSUED"),
     "events.md: UNSUPPORTED or FAILED needs an OFFLINE_INQUIRY or a SITE_INVESTIGATION"),
    ("ZB-11", seq(add("CONCEALMENT_FLAGGED", 40, party=D1, basis="x", source="applicant"),
                  add("DISHONEST_LISTED", 41, party=D1)),
     ("CONCEALMENT_FLAGGED", "ZB_RULING_ISSUED"), "rulebook ZB-11"),
    ("ZB-12", add("REWARD_APPLIED", 40, party=A1, reward_id="R1", amount_fen=1000),
     ("REWARD_APPLIED", "ZB_RULING_ISSUED"), "rulebook ZB-12: a decision within 10 days"),
    ("ZB-13", lambda b: next(e for e in b.events if e.fields.get("category") == "DEPOSIT"
                             ).fields.update(status="FOUND", assets=[{"asset_id": "ACC1"}]),
     ("NET_INQUIRY_FEEDBACK", "ZB_RULING_ISSUED"),
     "rulebook ZB-13: any found asset that was not seized or disposed of fails"),
    ("ZB-14", add("VALUATION_STARTED", 90, asset_id="H1", institution="x", method="委托评估"),
     ("VALUATION_STARTED", "ZB_RULING_ISSUED"), "rulebook ZB-14"),
    ("ZB-15", add("DEBTOR_MISSING_FLAGGED", 40, party=D1, basis="x", source="officer"),
     ("DEBTOR_MISSING_FLAGGED", "ZB_RULING_ISSUED"), "rulebook ZB-15"),
    ("ZB-16", seq(add("OBSTRUCTION_FLAGGED", 40, party=D1, basis="x", source="officer"),
                  add("DISHONEST_LISTED", 41, party=D1)),
     ("OBSTRUCTION_FLAGGED", "ZB_RULING_ISSUED"), "rulebook ZB-16"),
    ("ZB-17", drop("INTERROGATION"), ("ZB_RULING_ISSUED",), "rulebook ZB-17"),
    ("ZB-18", set_field("APPLICANT_INTERVIEW", informed_property=False),
     ("APPLICANT_INTERVIEW", "ZB_RULING_ISSUED"), "rulebook ZB-18: all four content flags"),
    ("ZB-19", set_field("APPLICANT_OPINION", signed_consent=False), ("ZB_RULING_ISSUED",),
     "rulebook ZB-19 (民诉解释 §517)"),
    ("ZB-20", set_field("ZB_RULING_ISSUED", contains_rights=False), ("ZB_RULING_ISSUED",),
     "rulebook ZB-20: all five contains_* flags"),
    ("ZB-21", move("ZB_RULING_SERVED", 109), ("ZB_RULING_SERVED", "CASE_CLOSED"),
     "events.md: ZB-21 compares the applicant's ZB_RULING_SERVED with CASE_CLOSED"),
    ("ZB-22", drop("RULING_PUBLISHED"), ("ZB_RULING_ISSUED", "CASE_CLOSED"), "rulebook ZB-22"),
    ("ZB-23", lambda b: b.get("CASE_FILED").fields.update(
        debtors=[{"kind": "legal", "party": D1}]), ("CASE_FILED", "ZB_RULING_ISSUED"),
     "rulebook ZB-23: advisory for a legal-person debtor"),
    ("ZB-30", move("ZB_DB_ENTERED", 120), ("ZB_RULING_SERVED", "ZB_DB_ENTERED"),
     "rulebook ZB-30: ZB_DB_ENTERED.date ≤ served + 7d"),
    ("ZB-32", add("POST_CLOSURE_QUERY", 112, window=0, result="FOUND",
                  assets=[{"asset_id": "CAR9"}]), ("POST_CLOSURE_QUERY",),
     "events.md: ZB-32: 30 days counted from the POST_CLOSURE_QUERY that found assets"),
    ("ZB-33", seq(add("SEIZURE", 20, asset_id="H1", asset_class="immovable",
                      asset_type="REAL_ESTATE", measure="查封", expires_at=day(1100)),
                  add("VALUATION_STARTED", 22, asset_id="H1"),
                  add("VALUATION_REPORTED", 30, asset_id="H1", value_fen=1),
                  add("AUCTION_ANNOUNCED", 35, asset_id="H1", round=1, starting_price_fen=100),
                  add("AUCTION_RESULT", 60, asset_id="H1", round=1, result="UNSOLD"),
                  add("ACCEPT_IN_KIND_DECLINED", 62, asset_id="H1", party=A1,
                      forced_management_possible=False),
                  add("SEIZURE_RELEASED", 115, asset_id="H1", reason="终本")),
     ("SEIZURE_RELEASED",), "rulebook ZB-33: no SEIZURE_RELEASED whose reason is 终本"),
    ("ZB-35", add("CASE_CLOSED", 125, mode="执行完毕"), ("ZB_DB_ENTERED",),
     "rulebook ZB-35: ZB_DB_MASKED ≤ event + 3d"),
    ("ND-01", move("HANDLER_ASSIGNED", 8), ("CASE_FILED", "HANDLER_ASSIGNED"),
     "rulebook ND-01: HANDLER_ASSIGNED ≤ filed + 7d"),
    ("ND-02", seq(move("EXEC_NOTICE_ISSUED", 11), move("PROPERTY_REPORT_ORDER_ISSUED", 11)),
     ("CASE_FILED", "EXEC_NOTICE_ISSUED"), "rulebook ND-02: EXEC_NOTICE_ISSUED ≤ filed + 10d"),
    ("ND-03", move("APPLICANT_NOTIFIED", 5), ("HANDLER_ASSIGNED", "APPLICANT_NOTIFIED"),
     "rulebook ND-03: ≤ handler_assigned + 3d"),
    ("ND-05", seq(add("SEIZURE", 20, asset_id="H1", asset_class="immovable",
                      asset_type="REAL_ESTATE", measure="查封", expires_at=day(1100)),
                  add("VALUATION_STARTED", 60, asset_id="H1"),
                  add("VALUATION_REPORTED", 70, asset_id="H1", value_fen=1),
                  add("AUCTION_ANNOUNCED", 72, asset_id="H1", round=1, starting_price_fen=10),
                  add("AUCTION_RESULT", 90, asset_id="H1", round=1, result="SOLD")),
     ("SEIZURE", "VALUATION_STARTED"), "rulebook ND-05: reference price within 30 days"),
    ("ND-06", seq(add("SEIZURE", 20, asset_id="H1", asset_class="immovable",
                      asset_type="REAL_ESTATE", measure="查封", expires_at=day(1100)),
                  add("VALUATION_STARTED", 22, asset_id="H1"),
                  add("VALUATION_REPORTED", 30, asset_id="H1", value_fen=1),
                  add("AUCTION_ANNOUNCED", 35, asset_id="H1", round=1, starting_price_fen=100),
                  add("AUCTION_RESULT", 50, asset_id="H1", round=1, result="UNSOLD"),
                  add("AUCTION_ANNOUNCED", 60, asset_id="H1", round=2, starting_price_fen=70),
                  add("AUCTION_RESULT", 80, asset_id="H1", round=2, result="SOLD")),
     ("AUCTION_ANNOUNCED",), "rulebook ND-06: each round lowers the price by at most 20%"),
    ("ND-07", add("FUNDS_RECEIVED", 40, funds_id="F1", amount_fen=100, payer=D1),
     ("FUNDS_RECEIVED",), "rulebook ND-07: FUNDS_DISBURSED ≤ FUNDS_RECEIVED + 30d"),
    ("ND-08", seq(add("SEIZURE", 20, asset_id="V1", asset_class="movable",
                      asset_type="VEHICLE", measure="扣押", physically_seized=True,
                      officers=[O1, "JL0102-011"], attendees=[D1], expires_at=day(700)),
                  lambda b: b.get("SEIZURE").evidence_refs.append(EVID),
                  add("VALUATION_STARTED", 22, asset_id="V1"),
                  add("VALUATION_REPORTED", 25, asset_id="V1", value_fen=1),
                  add("AUCTION_ANNOUNCED", 26, asset_id="V1", round=1, starting_price_fen=1),
                  add("AUCTION_RESULT", 50, asset_id="V1", round=1, result="SOLD")),
     ("SEIZURE",), "rulebook ND-08: SEIZURE.inventory_hash present"),
    ("EV-01", lambda b: b.drop("", lambda e: e.kind == "evidence"), ("SITE_INVESTIGATION",),
     "events.md: EV-01: at least one anchored evidence item … within one hour"),
    ("LATE-01", lambda b: setattr(b.get("INTERROGATION"), "record_delay", 4 * 86_400_000),
     ("INTERROGATION",), "events.md: LATE-01: block time minus occurred_at exceeds 72 hours"),
    ("LATE-02", lambda b: setattr(b.get("INTERROGATION"), "record_delay", -2 * 3_600_000),
     ("INTERROGATION",), "events.md: LATE-02: occurred_at later than block time plus one hour"),
]


def test_every_rule_has_a_fixture() -> None:
    covered = {v[0] for v in VIOLATIONS} | {"ZB-31", "ZB-34", "ZB-36", "ZB-37", "ND-04",
                                           "CASENO-01", "KEY-01"}  # fixtures below
    assert {r.id for r in RULES} == covered


@pytest.mark.parametrize("rule_id, edit, cites, source", VIOLATIONS,
                         ids=[v[0] for v in VIOLATIONS])
def test_violation_fires_with_evidence(rule_id: str, edit: Callable[[Book], None],
                                       cites: tuple[str, ...], source: str) -> None:
    book = compliant()
    edit(book)
    found = hits(book, rule_id)
    assert found, f"{rule_id} silent on its violating fixture ({source})"
    f = found[0]
    assert f.case == CASE and f.court == COURT
    assert f.message_zh and f.message_en and f.citation
    by_type = {book.record_of(e).entry_id: e.type for e in book.events}
    cited_types = {by_type.get(i) for i in cited(f)}
    for t in cites:
        assert t in cited_types, f"{rule_id} does not cite {t}: cites {cited_types}"


def test_zb03_notice_and_order_on_different_days_is_med() -> None:
    b = compliant()
    move("PROPERTY_REPORT_ORDER_ISSUED", 6)(b)
    (f,) = hits(b, "ZB-03")
    assert f.severity == "MED"
    assert cited(f) == entry_ids(b, b.get("EXEC_NOTICE_ISSUED"),
                                 b.get("PROPERTY_REPORT_ORDER_ISSUED"))


def test_zb05_sanctioned_report_breach_is_silent() -> None:
    b = compliant()
    seq(add("PROPERTY_REPORT_REFUSED", 14, party=D1), add("DISHONEST_LISTED", 16, party=D1),
        add("FINE", 16, person=D1, amount_fen=1000, decision_no="F1"))(b)
    assert hits(b, "ZB-05") == [] and hits(b, "ZB-07") == []


def test_zb08_late_verification_is_med() -> None:
    b = compliant()
    move("CLUE_VERIFIED", 38)(b)  # submitted day 30 (04-02); 7 days → 04-09; day 38 = 04-10
    (f,) = hits(b, "ZB-08")
    assert f.severity == "MED" and f.due is not None


def test_zb12_granted_and_published_is_silent() -> None:
    b = compliant()
    seq(add("REWARD_APPLIED", 40, reward_id="R1", party=A1),
        add("REWARD_DECIDED", 45, reward_id="R1", decision="granted"),
        add("REWARD_PUBLISHED", 50, reward_id="R1", platform="x", amount_fen=1))(b)
    assert hits(b, "ZB-12") == []


def test_zb19_collegial_review_with_president_is_enough() -> None:
    # 民诉解释 §517: signed consent, or a collegial review approved by the president.
    b = compliant()
    set_field("APPLICANT_OPINION", signed_consent=False)(b)
    add("COLLEGIAL_REVIEW", 102, decision="终本", members=[O1])(b)
    assert hits(b, "ZB-19")
    add("PRESIDENT_APPROVAL", 103, approver="P1", decision="approve")(b)
    assert hits(b, "ZB-19") == []


def test_several_debtors_each_need_their_own_notice() -> None:
    b = compliant((D1, D2))
    b.drop("EXEC_NOTICE_ISSUED", lambda e: e.fields["party"] == D2)
    found = hits(b, "ZB-02")
    assert len(found) == 1 and dict(found[0].detail)["party"] == D2
    assert {dict(f.detail).get("party") for f in hits(b, "ND-02")} == {D2}


def test_caseno01_flags_a_legacy_number() -> None:
    b = compliant()
    for e in b.events:
        e.case = "（2015）浦执字第123号"
    (f,) = hits(b, "CASENO-01")
    assert f.severity == "INFO" and f.case == "（2015）浦执字第123号"
    assert hits(compliant(), "CASENO-01") == []


def test_late01_history_before_onboarding_is_not_late() -> None:
    # events.md: events that occurred before their court joined the chain are pre-chain history.
    b = compliant()
    b.get("INTERROGATION").record_delay = 30 * 86_400_000
    (f,) = hits(b, "LATE-01", onboarded={COURT: day(40)})
    assert f.severity == "INFO" and dict(f.detail)["pre_chain"] is True
    (g,) = hits(b, "LATE-01", onboarded={COURT: day(10)})
    assert g.severity == "MED" and dict(g.detail)["delay_ms"] == 30 * 86_400_000 + 0


def test_ev01_needs_two_officers() -> None:
    b = compliant()
    b.get("SITE_INVESTIGATION").fields["officers"] = [O1]
    (f,) = hits(b, "EV-01")
    assert "two officers" in f.message_en


def test_ev01_evidence_captured_too_far_from_the_event() -> None:
    b = compliant()
    next(e for e in b.events if e.kind == "evidence").body["captured_at"] = day(20.2)
    assert hits(b, "EV-01")


def test_key01_entries_signed_after_compromise_are_flagged() -> None:
    # events.md: a key revoked with compromised_since T: entries it signed in blocks timed at
    # or after T are reported as a warning naming the key.
    from verifier.records import Record

    b = compliant()
    recs = b.records()
    signer = b"\x01" * 32  # the casebook's officer key
    revoke = Record.of({"v": 1, "kind": "identity", "court": COURT, "time": day(200),
                        "nonce": b"\x09" * 16, "signer": b"\x03" * 32,
                        "body": {"op": "revoke", "id": "officer-7", "court": COURT,
                                 "compromised_since": day(105)}}, day(200))
    insp_args = {"identities": {"officer-7": signer}}
    from verifier.engine import inspect_records

    found = [f for f in inspect_records([*recs, revoke], NOW, **insp_args).findings()
             if f.rule == "KEY-01"]
    late = {b.record_of(e).entry_id for e in b.events if e.at + e.record_delay >= day(105)}
    assert found and {f.entries[0][0] for f in found} == late
    assert all(f.kind == "warning" and revoke.entry_id == f.entries[-1][0] for f in found)
    assert [f for f in inspect_records(recs, NOW, **insp_args).findings()
            if f.rule == "KEY-01"] == []
