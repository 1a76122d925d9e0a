"""One case's events and their corrected view (domain/events.md "Conventions").

Nothing on a chain is edited. ``EVENT_CORRECTED`` (``corrects``, ``body``) replaces an event's
body in the view the rules read; ``EVENT_VOIDED`` (``voids``) withdraws it. Either must come from
the same court as the event it names; otherwise it is ignored (it cannot change another court's
record). Each :class:`Event` keeps the ids of every entry behind it, so a finding that cites the
event cites the original and its correction.

A correction may arrive before its target (an events file in any order): it waits, and applies
when the target arrives. A later correction of the same event wins (chain order). Voiding a
correction restores the previous body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier.records import Record

META_TYPES = ("EVENT_CORRECTED", "EVENT_VOIDED")


@dataclass(slots=True)
class Event:
    """A flow-node event as the rules read it (the corrected view)."""

    type: str
    occurred_at: int
    fields: Mapping[str, Any]
    evidence_refs: tuple[bytes, ...]
    cites: tuple[Record, ...]  # the original entry first, then its correction(s)
    recorded_at: int
    court: str
    seq: int
    actor: Mapping[str, Any] = field(default_factory=dict)
    #: (signer public key, recording time) of each entry in ``cites``, in the same order.
    signed: tuple[tuple[bytes, int], ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        """A field of the event, or ``default``."""
        return self.fields.get(name, default)

    @property
    def party(self) -> Any:
        """The debtor or applicant the event concerns (keyed hash)."""
        return self.fields.get("party")


@dataclass(slots=True)
class RawEvent:
    """An ``event`` entry as recorded, before corrections."""

    record: Record
    seq: int
    body: Mapping[str, Any]
    court: str
    signer: bytes


def _refs(body: Mapping[str, Any]) -> tuple[bytes, ...]:
    out = []
    for r in body.get("evidence_refs", ()) or ():
        if isinstance(r, bytes):
            out.append(r)
        elif isinstance(r, str):
            try:
                out.append(bytes.fromhex(r))
            except ValueError:
                continue
    return tuple(out)


class CaseState:
    """Every entry of one case, and the corrected view the rules read."""

    __slots__ = ("case", "court", "raw", "order", "meta", "_view", "_plain", "evidence",
                 "version")

    def __init__(self, case: str) -> None:
        self.case = case
        self.court = ""
        self.raw: dict[int, RawEvent] = {}  # by ingest sequence
        self.order: list[int] = []  # non-meta events, in ingest order
        self.meta: list[RawEvent] = []  # corrections and voids, in ingest order
        self.evidence: dict[bytes, Record] = {}  # evidence entries filed under this case
        self._view: list[Event] | None = None
        self._plain: dict[int, Event | None] = {}
        self.version = 0

    def add(self, record: Record, seq: int) -> bool:
        """Add an ``event`` or ``evidence`` record of this case, in chain order.

        A chain never holds an entry twice (validity), so entries are not de-duplicated here;
        evidence is keyed by its content digest (a second copy adds nothing).
        """
        payload = record.payload
        if payload.get("kind") == "evidence":
            sha = bytes(payload["body"].get("sha256", b""))
            if sha in self.evidence:
                return False
            self.evidence[sha] = record
            self.version += 1
            return True
        body = payload.get("body") or {}
        court = str(payload.get("court", ""))
        raw = RawEvent(record, seq, body, court, bytes(payload.get("signer", b"")))
        self.raw[seq] = raw
        if not self.court:
            self.court = court
        if body.get("type") in META_TYPES:
            self.meta.append(raw)
        else:
            self.order.append(seq)
        self._view = None
        self.version += 1
        return True

    def raw_events(self) -> Iterable[RawEvent]:
        """Every non-meta event entry of the case, in ingest order."""
        return (self.raw[i] for i in self.order)

    def view(self) -> list[Event]:
        """The corrected view: voided events dropped, corrected bodies used, by business time."""
        if self._view is None:
            self._view = self._build_view()
        return self._view

    def _build_view(self) -> list[Event]:
        corrections: dict[int, list[RawEvent]] = {}
        voids: dict[int, RawEvent] = {}
        if self.meta:
            # Only a case with corrections or voids needs the ids of its entries.
            by_id = {raw.record.entry_id: seq for seq, raw in self.raw.items()}
            in_order = set(self.order)

            def target_of(value: Any) -> RawEvent | None:
                tid = _hex_id(value)
                seq = by_id.get(tid) if tid is not None else None
                return self.raw[seq] if seq is not None else None

            # Resolve in chain order. A void of a correction cancels that correction.
            voided_meta: set[int] = set()
            for m in self.meta:
                f = m.body.get("fields") or {}
                if m.body.get("type") == "EVENT_VOIDED":
                    t = target_of(f.get("voids"))
                    if (t is not None and t.body.get("type") == "EVENT_CORRECTED"
                            and t.court == m.court):
                        voided_meta.add(t.seq)
            for m in self.meta:
                if m.seq in voided_meta:
                    continue
                f = m.body.get("fields") or {}
                if m.body.get("type") == "EVENT_CORRECTED":
                    t = target_of(f.get("corrects"))
                    if (t is not None and t.seq in in_order and t.court == m.court
                            and isinstance(f.get("body"), Mapping)):
                        corrections.setdefault(t.seq, []).append(m)
                else:
                    t = target_of(f.get("voids"))
                    if t is not None and t.seq in in_order and t.court == m.court:
                        voids.setdefault(t.seq, m)
        events: list[Event] = []
        for eid in self.order:
            if eid in voids:
                continue
            raw = self.raw[eid]
            fixes = corrections.get(eid)
            if not fixes:
                # Uncorrected events are built once and reused by every later view.
                ev = self._plain.get(eid)
                if ev is None:
                    ev = _event(raw, raw.body, (raw.record,),
                                ((raw.signer, raw.record.recorded_at),))
                    self._plain[eid] = ev
            else:
                body = raw.body
                cites: list[Record] = [raw.record]
                signed = [(raw.signer, raw.record.recorded_at)]
                for c in fixes:
                    body = c.body["fields"]["body"]
                    cites.append(c.record)
                    signed.append((c.signer, c.record.recorded_at))
                ev = _event(raw, body, tuple(cites), tuple(signed))
            if ev is not None:
                events.append(ev)
        events.sort(key=lambda e: (e.occurred_at, e.seq))
        return events


def _event(raw: RawEvent, body: Mapping[str, Any], cites: tuple[Record, ...],
           signed: tuple[tuple[bytes, int], ...]) -> Event | None:
    occurred = body.get("occurred_at")
    fields = body.get("fields")
    if not isinstance(occurred, int) or isinstance(occurred, bool) or not isinstance(
            fields, dict):
        return None  # not an event body the rules can read (admission refuses these)
    return Event(type=str(body.get("type", "")), occurred_at=occurred, fields=fields,
                 evidence_refs=_refs(body), cites=cites, recorded_at=raw.record.recorded_at,
                 court=raw.court, seq=raw.seq, actor=body.get("actor") or {}, signed=signed)


def _hex_id(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            return None
    return None
