"""Event body admission checks against domain/events.md."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.eventschema import EVENT_TYPES, EventSchemaError, check_event_body

PARTY = "ab" * 32


def body(etype: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "type": etype,
        "occurred_at": 1_700_000_000_000,
        "actor": {"officer_id": "JL0102-007", "role": "officer"},
        "fields": fields,
    }
    b.update(extra)
    return b


def test_every_events_md_type_is_listed() -> None:
    assert len(EVENT_TYPES) >= 70
    assert "SUMMONS" in EVENT_TYPES and "COMPELLED_APPEARANCE" in EVENT_TYPES


def test_valid_bodies() -> None:
    check_event_body(
        body(
            "EXEC_NOTICE_SERVED",
            {
                "doc_no": "（2025）吉0102执1203号",
                "method": "直接",
                "party": PARTY,
                "served_at": 1_700_000_000_000,
                "receipt_sha256": "00" * 32,
                "extra_field": 1,
            },
            doc_refs=[b"\x01" * 32],
        )
    )
    check_event_body(
        body(
            "CASE_FILED",
            {
                "debtors": [{"kind": "natural", "party": PARTY}],
                "amount_claimed_fen": 5,
                "basis": {
                    "doc_no": "（2024）吉0102民初1号",
                    "effective_at": 1,
                    "issuing_body": "x",
                },
            },
        )
    )
    # `basis` is a map on CASE_FILED and a str elsewhere.
    check_event_body(body("OBSTRUCTION_FLAGGED", {"basis": "阻挠查封", "party": PARTY}))
    # An unknown type is stored: only the envelope is checked.
    check_event_body(body("SOMETHING_NEW", {"anything": [1, "x"]}))


@pytest.mark.parametrize(
    "bad, where",
    [
        (body("EXEC_NOTICE_SERVED", {"served_at": "yesterday"}), "fields.served_at"),
        (body("EXEC_NOTICE_SERVED", {"served_at": True}), "fields.served_at"),
        (body("CASE_CLOSED", {"mode": "closed"}), "fields.mode"),
        (body("CASE_FILED", {"debtors": [{"party": 5}]}), "fields.debtors[0].party"),
        (body("SEIZURE", {"party": "AB" * 32}), "fields.party"),
        (body("SEIZURE", {"note": b"x"}), "fields.note"),
        (body("SEIZURE", {"doc_no": "(2025)吉0102执1号"}), "fields.doc_no"),
        (body("SEIZURE", {}, doc_refs=["ab" * 32]), "doc_refs[0]"),
        (body("SEIZURE", {}, links=[b"short"]), "links[0]"),
        (body("SEIZURE", {}, docrefs=[]), "unknown keys"),
        ({**body("SEIZURE", {}), "occurred_at": -1}, "occurred_at"),
        ({**body("SEIZURE", {}), "actor": {"officer_id": "x"}}, "actor.role"),
        (body("EVENT_VOIDED", {"voids": "xyz"}), "fields.voids"),
        (body("EVENT_CORRECTED", {"corrects": "ab" * 32}), "fields.body"),
        (
            body(
                "EVENT_CORRECTED",
                {"corrects": "ab" * 32, "body": body("SEIZURE", {}, doc_refs=[b"\x00" * 32])},
            ),
            "fields.body.doc_refs[0]",
        ),
    ],
)
def test_refusals_name_the_path(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(EventSchemaError) as exc:
        check_event_body(bad)
    assert where in str(exc.value)
    assert exc.value.code == "bad_event"
    assert isinstance(exc.value, ValueError)


def test_correction_body_uses_hex_refs() -> None:
    check_event_body(
        body(
            "EVENT_CORRECTED",
            {
                "corrects": "ab" * 32,
                "reason": "typo",
                "body": body("SEIZURE", {"asset_id": "A1"}, evidence_refs=["cd" * 32]),
            },
        )
    )
