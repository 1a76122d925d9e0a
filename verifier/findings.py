"""The finding: the inspection's output, one per rule hit (domain/events.md, "Finding").

``case``, ``rule``, ``kind`` (``violation`` or ``warning``), ``severity`` (CRIT, HIGH, MED,
INFO), ``message_zh``, ``message_en``, ``citation``, ``entries`` (entry ids and, for chain data,
block heights of the events that prove it), ``due`` (warnings and deadline findings),
``provisional`` (a holiday-calendar year was missing). ``court`` and ``detail`` are extras for
filtering and for people; they are not part of the report digest.

The digest a ``report`` entry commits to (DESIGN §2) is ``H(canonical([{case, rule, kind,
entries: [{id, height}], due}] sorted by case, rule, entries))``: only what another inspector
must reproduce exactly, never the wording of a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.crypto import hash_object

SEVERITIES = ("CRIT", "HIGH", "MED", "INFO")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # lower is graver

Cite = tuple[bytes, int | None]
"""An entry cited by a finding: (entry id, block height or None outside a chain)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule hit on one case."""

    case: str
    rule: str
    kind: str
    severity: str
    message_zh: str
    message_en: str
    citation: str
    entries: tuple[Cite, ...]
    due: int | None = None
    provisional: bool = False
    court: str = ""
    detail: tuple[tuple[str, Any], ...] = field(default=())

    def sort_key(self) -> tuple[Any, ...]:
        """The report order: case, rule, entries (then kind and due, to be total)."""
        return (self.case, self.rule,
                [(i, -1 if h is None else h) for i, h in self.entries],
                self.kind, -1 if self.due is None else self.due)

    def digest_item(self) -> dict[str, Any]:
        """The element of the report digest (DESIGN §2); absent fields omitted, never nil."""
        entries = []
        for entry_id, height in self.entries:
            item: dict[str, Any] = {"id": entry_id}
            if height is not None:
                item["height"] = height
            entries.append(item)
        out: dict[str, Any] = {"case": self.case, "rule": self.rule, "kind": self.kind,
                               "entries": entries}
        if self.due is not None:
            out["due"] = self.due
        return out

    def to_json(self) -> dict[str, Any]:
        """The finding shape of events.md as JSON (entry ids as hex)."""
        out: dict[str, Any] = {
            "case": self.case, "court": self.court, "rule": self.rule, "kind": self.kind,
            "severity": self.severity, "message_zh": self.message_zh,
            "message_en": self.message_en, "citation": self.citation,
            "entries": [{"id": i.hex(), **({"height": h} if h is not None else {})}
                        for i, h in self.entries],
        }
        if self.due is not None:
            out["due"] = self.due
        if self.provisional:
            out["provisional"] = True
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in report order."""
    return sorted(findings, key=Finding.sort_key)


def findings_digest(findings: Iterable[Finding], hash_alg: str = "sha256") -> bytes:
    """``H(canonical([digest items in report order]))`` (DESIGN §2 ``report.findings``)."""
    return hash_object(hash_alg, [f.digest_item() for f in sort_findings(findings)])


def at_least(severity: str, threshold: str) -> bool:
    """True when ``severity`` is ``threshold`` or graver."""
    return SEVERITY_RANK[severity] <= SEVERITY_RANK[threshold]
