"""The flow-node event schema (domain/events.md, "Event types and their fields"), for admission.

An ``event`` entry's ``body`` is ``{type, occurred_at, actor: {officer_id, role}, fields,
doc_refs?, evidence_refs?, links?}``. :func:`check_event_body` is the node's admission check
(DESIGN §2: admission, not validity, so the schema can evolve without a fork):

- the envelope keys and their types; ``doc_refs``, ``evidence_refs`` and ``links`` are lists of
  32-byte digests (SHA-256 content digests; entry ids in the chain hash);
- for a known ``type``, each *known* field present has its declared type; extra fields are kept
  and ignored (events.md: "extra fields are kept and ignored by the rules");
- enumerations listed in events.md ("Conventions") hold one of their values;
- ``fields`` never hold bytes, and every hash inside ``fields`` is a lowercase hex str;
- ``case``-like numbers inside fields (``doc_no``, ``prior_case_no``, ``new_case_no``) are
  normalised (:mod:`ledger.caseno`);
- an unknown ``type`` is accepted with only the envelope checked (events.md: "an event of an
  unknown type is stored, and no rule reads it");
- ``EVENT_CORRECTED.body`` is checked as an event body whose byte lists are hex str.

Fields are not required to be present: the rules report what is missing, with evidence, which is
more use to an inspection office than a refusal at the door.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from ledger.caseno import CaseNumberError, check_normalised
from ledger.errors import AdmissionError

DIGEST_SIZE: Final = 32

# Field type codes: "int", "str", "bool", "list" (any list), "list[str]", "list[map]", "map".
FieldSpec = Mapping[str, str]

_PARTY_MAP = {"kind": "str", "party": "str", "legal_rep": "str"}

#: type code → {field name: type code}, transcribed from events.md.
EVENT_TYPES: Final[dict[str, dict[str, str]]] = {
    "CASE_FILED": {
        "amount_claimed_fen": "int", "applicants": "list[map]", "application_received_at": "int",
        "basis": "map", "case_type": "str", "debtors": "list[map]", "source": "str",
        "prior_case_no": "str",
    },
    "HANDLER_ASSIGNED": {"handler": "str", "team": "str"},
    "APPLICANT_NOTIFIED": {
        "channel": "str", "party": "str", "topic": "str", "batch_id": "str", "result": "str",
        "window": "int",
    },
    "PROPERTY_REPORT_ORDER_ISSUED": {
        "doc_no": "str", "party": "str", "questionnaire": "bool", "report_deadline": "int",
    },
    "EXEC_NOTICE_ISSUED": {
        "dishonest_warning": "bool", "doc_no": "str", "party": "str", "perform_deadline": "int",
    },
    "NET_INQUIRY_REQUESTED": {
        "batch_id": "str", "categories": "list[str]", "channel": "str", "party": "str",
    },
    "EXEC_NOTICE_SERVED": {
        "doc_no": "str", "method": "str", "party": "str", "receipt_sha256": "str",
        "served_at": "int",
    },
    "NET_INQUIRY_FEEDBACK": {
        "assets": "list", "batch_id": "str", "category": "str", "feedback_at": "int",
        "institution": "str", "party": "str", "status": "str",
    },
    "PROPERTY_REPORT_ORDER_SERVED": {
        "doc_no": "str", "method": "str", "party": "str", "served_at": "int",
    },
    "CONSUMPTION_RESTRICTED": {
        "doc_no": "str", "order_no": "str", "party": "str", "persons": "list[str]",
        "signed_by_president": "bool",
    },
    "PROPERTY_REPORT_SUBMITTED": {"items": "list[map]", "party": "str"},
    "PROPERTY_REPORT_VERIFIED": {
        "discrepancies": "list", "method": "str", "party": "str", "result": "str",
    },
    "SITE_INVESTIGATION": {
        "address_hash": "str", "end_at": "int", "findings": "str", "gps": "map",
        "officers": "list[str]", "party": "str", "start_at": "int",
    },
    "INTERROGATION": {
        "doc_no": "str", "party": "str", "person": "str", "person_role": "str",
        "transcript_sha256": "str",
    },
    "CLUE_SUBMITTED": {
        "category": "str", "clue": "str", "clue_id": "str", "submitter": "str", "urgent": "bool",
    },
    "CLUE_VERIFIED": {"clue_id": "str", "method": "str", "result": "str"},
    "APPLICANT_INTERVIEW": {
        "channel": "str", "doc_no": "str", "informed_basis_and_consequences": "bool",
        "informed_execution": "bool", "informed_measures": "bool", "informed_property": "bool",
        "interviewee": "str", "party": "str", "record_sha256": "str",
    },
    "APPLICANT_OPINION": {"opinion": "str", "party": "str", "signed_consent": "bool"},
    "ZB_RULING_ISSUED": {
        "amount_outstanding_fen": "int", "amount_realized_fen": "int", "contains_claim": "bool",
        "contains_process": "bool", "contains_property": "bool", "contains_realized": "bool",
        "contains_rights": "bool", "doc_no": "str",
    },
    "ZB_RULING_SERVED": {"doc_no": "str", "method": "str", "party": "str", "served_at": "int"},
    "CASE_CLOSED": {"doc_no": "str", "mode": "str"},
    "ZB_DB_ENTERED": {"doc_no": "str"},
    "RULING_PUBLISHED": {
        "doc_no": "str", "published": "bool", "url": "str", "not_published_reason": "str",
    },
    "POST_CLOSURE_QUERY": {
        "assets": "list", "batch_id": "str", "categories": "list[str]", "channel": "str",
        "parties": "list[str]", "party": "str", "result": "str", "window": "int",
    },
    "SEIZURE": {
        "asset_class": "str", "asset_id": "str", "asset_type": "str",
        "assistance_notice_no": "str", "attendees": "list[str]", "debtor_notified": "bool",
        "doc_no": "str", "expires_at": "int", "from_preservation": "bool",
        "inventory_hash": "str", "measure": "str", "note": "str", "officers": "list[str]",
        "party": "str", "physically_seized": "bool", "rank": "str", "registry": "str",
        "ruling_no": "str", "start_at": "int", "value_fen": "int",
    },
    "PROPERTY_REPORT_REFUSED": {"party": "str", "report_deadline": "int"},
    "FINE": {
        "amount_fen": "int", "approved_by": "str", "decision_no": "str", "doc_no": "str",
        "person": "str", "reason": "str",
    },
    "DISHONEST_LISTED": {
        "decision_no": "str", "doc_no": "str", "party": "str", "period_months": "int",
        "published_at": "int", "situation": "str",
    },
    "CONCEALMENT_FLAGGED": {"basis": "str", "party": "str", "source": "str"},
    "SEARCH": {
        "doc_no": "str", "end_at": "int", "gps": "map", "items_found": "str",
        "officers": "list[str]", "party": "str", "place_hash": "str",
        "signed_by_president": "bool", "start_at": "int", "warrant_no": "str",
    },
    "SEIZURE_RENEWED": {
        "asset_id": "str", "doc_no": "str", "expires_at": "int", "previous_expires_at": "int",
        "requested_by": "str",
    },
    "FUNDS_RECEIVED": {"amount_fen": "int", "funds_id": "str", "payer": "str", "source": "str"},
    "FUNDS_DISBURSED": {"amount_fen": "int", "funds_id": "str", "payee": "str"},
    "VALUATION_STARTED": {"asset_id": "str", "institution": "str", "method": "str"},
    "VALUATION_REPORTED": {"asset_id": "str", "method": "str", "value_fen": "int"},
    "REWARD_APPLIED": {"amount_fen": "int", "party": "str", "reward_id": "str"},
    "AUCTION_ANNOUNCED": {
        "asset_id": "str", "auction_at": "int", "notice_at": "int", "platform": "str",
        "round": "int", "starting_price_fen": "int",
    },
    "PROPERTY_REPORT_OVERDUE": {"party": "str", "report_deadline": "int"},
    "REWARD_DECIDED": {"decision": "str", "reward_id": "str"},
    "REWARD_PUBLISHED": {"amount_fen": "int", "platform": "str", "reward_id": "str"},
    "HEARING": {"party": "str", "topic": "str"},
    "COLLEGIAL_REVIEW": {"decision": "str", "members": "list[str]"},
    "PRESIDENT_APPROVAL": {"approver": "str", "decision": "str"},
    "DEBTOR_MISSING_FLAGGED": {"basis": "str", "party": "str", "source": "str"},
    "AUCTION_RESULT": {
        "asset_id": "str", "buyer_hash": "str", "price_fen": "int", "result": "str",
        "round": "int",
    },
    "MISSING_DEBTOR_SEARCH": {"method": "str", "party": "str", "result": "str"},
    "SEIZURE_RELEASED": {"asset_id": "str", "reason": "str"},
    "OBSTRUCTION_FLAGGED": {"basis": "str", "party": "str", "source": "str"},
    "DETENTION": {
        "approved_by": "str", "days": "int", "decision_no": "str", "doc_no": "str",
        "person": "str", "reason": "str",
    },
    "OFFLINE_INQUIRY": {
        "category": "str", "channel": "str", "institution": "str", "party": "str",
        "result": "str", "status": "str",
    },
    "CONSUMPTION_RESTRICTION_LIFTED": {"party": "str", "reason": "str"},
    "ACCEPT_IN_KIND_OFFERED": {"asset_id": "str", "party": "str", "price_fen": "int"},
    "ACCEPT_IN_KIND_DECLINED": {
        "asset_id": "str", "forced_management_possible": "bool", "party": "str",
        "price_fen": "int",
    },
    "DISHONEST_DELISTED": {"party": "str", "reason": "str"},
    "CONTROL_MEASURE": {"asset_id": "str", "basis": "str", "measure": "str"},
    "RESUMED": {"basis": "str", "new_case_no": "str", "trigger": "str"},
    "PROPERTY_REPORT_FALSE": {"party": "str", "basis": "str"},
    "SUMMONS": {"doc_no": "str", "party": "str", "person": "str"},
    "COMPELLED_APPEARANCE": {"doc_no": "str", "party": "str", "person": "str"},
    "CRIMINAL_REFERRAL": {
        "decision_no": "str", "person": "str", "reason": "str", "receiving_body": "str",
    },
    "SEIZURE_LAPSED": {"asset_id": "str", "reason": "str"},
    "ACCEPT_IN_KIND_ACCEPTED": {"asset_id": "str", "party": "str", "price_fen": "int"},
    "EXIT_RESTRICTED": {"doc_no": "str", "party": "str"},
    "AUDIT_APPLIED": {"audit_id": "str"},
    "AUDIT_DECIDED": {"audit_id": "str", "decision": "str"},
    "AUDIT_DONE": {"audit_id": "str", "auditor": "str", "findings": "str"},
    "EXTENSION_APPROVED": {"approver": "str", "new_deadline": "int"},
    "ZB_DB_MASKED": {"doc_no": "str", "reason": "str"},
    "BANKRUPTCY_REFERRED": {"receiving_court": "str"},
    "SUSPENDED": {"doc_no": "str", "reason": "str"},
    "SUSPENSION_ENDED": {"doc_no": "str", "reason": "str"},
    "EVENT_CORRECTED": {"corrects": "str", "reason": "str", "body": "map"},
    "EVENT_VOIDED": {"voids": "str", "reason": "str"},
}

#: Sub-field types of the map-valued fields that have a fixed shape.
SUBFIELDS: Final[dict[str, dict[str, str]]] = {
    "applicants": _PARTY_MAP,
    "debtors": _PARTY_MAP,
    "basis": {"doc_no": "str", "effective_at": "int", "issuing_body": "str"},
    "gps": {"lat_e6": "int", "lon_e6": "int"},
    "items": {"category": "str", "description": "str", "value_fen": "int"},
}

ASSET_CATEGORIES: Final = frozenset({
    "DEPOSIT", "VEHICLE", "REAL_ESTATE", "SECURITIES", "EQUITY", "NET_FUNDS", "VESSEL",
    "HOUSING_FUND", "INSURANCE", "OTHER",
})

#: (type, field) → allowed values (events.md "Conventions: Enumerations").
ENUMS: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("NET_INQUIRY_FEEDBACK", "status"): frozenset({"FOUND", "NONE", "UNSUPPORTED", "FAILED",
                                                   "PENDING"}),
    ("OFFLINE_INQUIRY", "status"): frozenset({"FOUND", "NONE", "UNSUPPORTED", "FAILED",
                                              "PENDING"}),
    ("NET_INQUIRY_FEEDBACK", "category"): ASSET_CATEGORIES,
    ("OFFLINE_INQUIRY", "category"): ASSET_CATEGORIES,
    ("NET_INQUIRY_REQUESTED", "categories"): ASSET_CATEGORIES,
    ("POST_CLOSURE_QUERY", "categories"): ASSET_CATEGORIES,
    ("SEIZURE", "asset_class"): frozenset({"movable", "immovable", "right"}),
    ("APPLICANT_NOTIFIED", "topic"): frozenset({"provide_clues", "measures_taken",
                                                "post_closure_query_result"}),
    ("CASE_CLOSED", "mode"): frozenset({"执行完毕", "终本", "终结执行", "销案", "不予执行",
                                        "驳回申请"}),
    ("AUCTION_RESULT", "result"): frozenset({"SOLD", "UNSOLD"}),
    ("APPLICANT_OPINION", "opinion"): frozenset({"agree", "object", "new_clues"}),
    ("RESUMED", "trigger"): frozenset({"application", "ex_officio"}),
}

#: Fields holding keyed hashes of people and places, or content digests: lowercase hex str.
HASH_FIELDS: Final = frozenset({
    "party", "person", "payer", "payee", "submitter", "persons", "attendees", "legal_rep",
    "buyer_hash", "address_hash", "place_hash", "receipt_sha256", "transcript_sha256",
    "record_sha256", "inventory_hash", "corrects", "voids",
})

#: Fields holding a case or document number, submitted normalised (events.md "Conventions").
CASE_NO_FIELDS: Final = frozenset({"doc_no", "prior_case_no", "new_case_no"})

_BODY_KEYS: Final = frozenset({"type", "occurred_at", "actor", "fields", "doc_refs",
                               "evidence_refs", "links"})
_REF_KEYS: Final = ("doc_refs", "evidence_refs", "links")
_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")


class EventSchemaError(AdmissionError, ValueError):
    """An event body that does not follow domain/events.md (an admission refusal)."""

    code = "bad_event"


def _fail(where: str, msg: str) -> EventSchemaError:
    return EventSchemaError(f"event body: {where}: {msg}")


def _type_ok(value: Any, spec: str) -> bool:
    if spec == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec == "str":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    if spec == "map":
        return isinstance(value, dict)
    if spec == "list":
        return isinstance(value, list)
    if spec == "list[str]":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if spec == "list[map]":
        return isinstance(value, list) and all(isinstance(x, dict) for x in value)
    raise AssertionError(f"unknown field spec {spec!r}")


def _no_bytes(value: Any, where: str) -> None:
    """events.md: "fields never hold bytes: every hash inside fields is a lowercase hex str"."""
    if isinstance(value, bytes | bytearray):
        raise _fail(where, "fields never hold bytes; write hashes as lowercase hex str")
    if isinstance(value, list):
        for i, x in enumerate(value):
            _no_bytes(x, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, x in value.items():
            _no_bytes(x, f"{where}.{k}")


def _check_hex(value: Any, where: str) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str) and not _HEX.match(v):
            raise _fail(where, f"{v!r} is not a lowercase hex hash")


def _check_fields(etype: str, fields: Mapping[str, Any], where: str) -> None:
    spec = EVENT_TYPES[etype]
    for name, value in fields.items():
        if name not in spec:
            continue  # extra fields are kept and ignored
        fwhere = f"{where}.{name}"
        if not _type_ok(value, spec[name]):
            raise _fail(fwhere, f"expected {spec[name]}, got {type(value).__name__}")
        sub = SUBFIELDS.get(name) if spec[name] in ("map", "list[map]") else None
        if sub is not None:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                for sname, svalue in item.items():
                    if sname in sub and not _type_ok(svalue, sub[sname]):
                        raise _fail(f"{fwhere}[{i}].{sname}",
                                    f"expected {sub[sname]}, got {type(svalue).__name__}")
                    if sname in HASH_FIELDS:
                        _check_hex(svalue, f"{fwhere}[{i}].{sname}")
        allowed = ENUMS.get((etype, name))
        if allowed is not None:
            for v in value if isinstance(value, list) else [value]:
                if v not in allowed:
                    raise _fail(fwhere, f"{v!r} is not one of {sorted(allowed)}")
        if name in HASH_FIELDS:
            _check_hex(value, fwhere)
        if name in CASE_NO_FIELDS:
            try:
                check_normalised(value, fwhere)
            except CaseNumberError as exc:
                raise _fail(fwhere, exc.detail) from None


def _check_refs(body: Mapping[str, Any], as_hex: bool, where: str) -> None:
    for key in _REF_KEYS:
        if key not in body:
            continue
        refs = body[key]
        if not isinstance(refs, list):
            raise _fail(f"{where}{key}", "must be a list")
        for i, ref in enumerate(refs):
            rwhere = f"{where}{key}[{i}]"
            if as_hex:
                if not (isinstance(ref, str) and _HEX.match(ref) and len(ref) == 2 * DIGEST_SIZE):
                    raise _fail(rwhere, "must be a 64-character lowercase hex digest")
            elif not (isinstance(ref, bytes) and len(ref) == DIGEST_SIZE):
                raise _fail(rwhere, f"must be {DIGEST_SIZE} bytes")


def _check_body(body: Any, *, refs_as_hex: bool, where: str, depth: int) -> None:
    if not isinstance(body, dict):
        raise _fail(where or "body", "must be a map")
    extra = set(body) - _BODY_KEYS
    if extra:
        raise _fail(where or "body", f"unknown keys {sorted(extra)}")
    etype = body.get("type")
    if not isinstance(etype, str) or not etype:
        raise _fail(f"{where}type", "must be a non-empty str")
    occurred = body.get("occurred_at")
    if not isinstance(occurred, int) or isinstance(occurred, bool) or occurred < 0:
        raise _fail(f"{where}occurred_at", "must be a non-negative int (ms since the epoch)")
    actor = body.get("actor")
    if not isinstance(actor, dict):
        raise _fail(f"{where}actor", "must be a map {officer_id, role}")
    for key in ("officer_id", "role"):
        if not isinstance(actor.get(key), str) or not actor[key]:
            raise _fail(f"{where}actor.{key}", "must be a non-empty str")
    fields = body.get("fields")
    if not isinstance(fields, dict):
        raise _fail(f"{where}fields", "must be a map")
    _no_bytes(fields, f"{where}fields")
    _check_refs(body, refs_as_hex, where)
    if etype in EVENT_TYPES:
        _check_fields(etype, fields, f"{where}fields")
    if etype in ("EVENT_CORRECTED", "EVENT_VOIDED"):
        target = "corrects" if etype == "EVENT_CORRECTED" else "voids"
        ref = fields.get(target)
        if not (isinstance(ref, str) and len(ref) == 2 * DIGEST_SIZE and _HEX.match(ref)):
            raise _fail(f"{where}fields.{target}", "must be the 64-character hex entry id")
        if etype == "EVENT_CORRECTED":
            if depth > 0:
                raise _fail(f"{where}fields.body", "a correction cannot carry a correction")
            if "body" not in fields:
                raise _fail(f"{where}fields.body", "missing: the corrected event body")
            _check_body(fields["body"], refs_as_hex=True, where=f"{where}fields.body.",
                        depth=depth + 1)
            if fields["body"]["type"] in ("EVENT_CORRECTED", "EVENT_VOIDED"):
                raise _fail(f"{where}fields.body.type", "a correction cannot carry a correction")


def check_event_body(body: Any) -> None:
    """Raise :class:`EventSchemaError` unless ``body`` follows domain/events.md.

    ``body`` is the decoded ``body`` map of an ``event`` entry payload (byte lists as bytes).
    The message names the offending path, e.g. ``event body: fields.served_at: expected int``.
    """
    _check_body(body, refs_as_hex=False, where="", depth=0)


def known_type(etype: str) -> bool:
    """True when ``etype`` is a type code of events.md (unknown types are stored, not read)."""
    return etype in EVENT_TYPES
