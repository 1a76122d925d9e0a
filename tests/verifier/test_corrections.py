"""Corrections and voids are honoured (events.md "Conventions": rules read the corrected view,
and a finding cites both entries)."""

from __future__ import annotations

from typing import Any

from casebook import O1, Book, Ev, compliant, day
from test_inspect_rules import cited, hits


def meta(book: Book, etype: str, target: Ev, n: float, body: dict[str, Any] | None = None,
         court: str = "吉0102") -> Ev:
    tid = book.record_of(target).entry_id.hex()
    fields: dict[str, Any] = {"reason": "录入错误"}
    if etype == "EVENT_CORRECTED":
        fields.update(corrects=tid, body=body)
    else:
        fields["voids"] = tid
    e = book.add(etype, n, **fields)
    e.court = court
    return e


def corrected_body(ev: Ev, **changes: Any) -> dict[str, Any]:
    fields = {**ev.fields, **changes.pop("fields", {})}
    return {"type": ev.type, "occurred_at": changes.get("occurred_at", ev.at),
            "actor": {"officer_id": O1, "role": "judge"}, "fields": fields}


def test_correction_repairs_a_ruling() -> None:
    b = compliant()
    ruling = b.get("ZB_RULING_ISSUED")
    ruling.fields["contains_rights"] = False
    assert hits(b, "ZB-20")
    meta(b, "EVENT_CORRECTED", ruling, 106,
         corrected_body(ruling, fields={"contains_rights": True}))
    assert hits(b, "ZB-20") == []


def test_correction_that_reveals_a_violation_cites_both_entries() -> None:
    b = compliant()
    ruling = b.get("ZB_RULING_ISSUED")
    fix = meta(b, "EVENT_CORRECTED", ruling, 106, corrected_body(ruling, occurred_at=day(92)))
    (f,) = hits(b, "ZB-01")
    assert {b.record_of(ruling).entry_id, b.record_of(fix).entry_id} <= cited(f)


def test_correction_from_another_court_is_ignored() -> None:
    b = compliant()
    ruling = b.get("ZB_RULING_ISSUED")
    meta(b, "EVENT_CORRECTED", ruling, 106, corrected_body(ruling, occurred_at=day(92)),
         court="沪0115")
    assert hits(b, "ZB-01") == []


def test_void_withdraws_an_event_and_voiding_the_void_target_correction_restores() -> None:
    b = compliant()
    meta(b, "EVENT_VOIDED", b.get("CLUE_VERIFIED"), 34)
    assert hits(b, "ZB-08")
    c = compliant()
    ruling = c.get("ZB_RULING_ISSUED")
    fix = meta(c, "EVENT_CORRECTED", ruling, 106, corrected_body(ruling, occurred_at=day(92)))
    assert hits(c, "ZB-01")
    meta(c, "EVENT_VOIDED", fix, 107)
    assert hits(c, "ZB-01") == []


def test_correction_arriving_before_its_target_applies() -> None:
    b = compliant()
    ruling = b.get("ZB_RULING_ISSUED")
    fix = meta(b, "EVENT_CORRECTED", ruling, 106, corrected_body(ruling, occurred_at=day(92)))
    b.events.remove(fix)
    b.events.insert(0, fix)
    assert hits(b, "ZB-01")
