"""The on-chain ``report`` body and its reproduction (DESIGN §2, kind ``report``).

``{height, now, ruleset: H(canonical(rule config)), calendar: "<package>==<version>",
findings: H(canonical([{case, rule, kind, entries: [{id, height}], due}] sorted by case, rule,
entries)), count}``, the two hashes as lowercase hex str (they are not among DESIGN §5's
byte fields; the ledger's validity checks them so). Signed by the inspector identity and
submitted by the one reporter node, the inspection itself becomes tamper-evident: anyone
holding the chain re-derives it with ``courtledger inspect --reproduce REPORT_ENTRY_ID``
(:func:`reproduce`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.config import InspectConfig
from verifier.findings import Finding, findings_digest
from verifier.periods import CALENDAR_ID
from verifier.records import Record


def build_report_body(findings: Sequence[Finding], *, height: int, now: int,
                      config: InspectConfig, hash_alg: str = "sha256") -> dict[str, Any]:
    """The ``report`` entry body for ``findings`` inspected at ``now`` over blocks ≤ ``height``."""
    return {
        "height": height,
        "now": now,
        "ruleset": config.ruleset_hash(hash_alg).hex(),
        "calendar": CALENDAR_ID,
        "findings": findings_digest(findings, hash_alg).hex(),
        "count": len(findings),
    }


@dataclass(frozen=True)
class Reproduction:
    """The outcome of re-deriving a report from the chain."""

    report: dict[str, Any]
    recomputed: dict[str, Any]

    @property
    def matches(self) -> bool:
        """True when the findings digest and count agree."""
        return bool(self.report.get("findings") == self.recomputed["findings"]
                    and self.report.get("count") == self.recomputed["count"])

    def differences(self) -> list[str]:
        """Fields that differ between the report and its re-derivation (bytes as hex)."""
        out = []
        for k in ("ruleset", "calendar", "findings", "count"):
            a, b = self.report.get(k), self.recomputed.get(k)
            if a != b:
                out.append(f"{k}: report {a} ≠ recomputed {b}")
        return out


def reproduce(records: Iterable[Record], report_id: bytes, config: InspectConfig, *,
              hash_alg: str = "sha256", progress: Any = None,
              **inspector_args: Any) -> Reproduction:
    """Find the report entry ``report_id`` and recompute its body from the chain before it.

    Records are taken in chain order up to the report's ``height`` (events files, which have no
    heights, up to the report's own line). Raises ``LookupError`` if the report is not found.
    """
    from verifier.engine import Inspector

    insp = Inspector(config, hash_alg=hash_alg, **inspector_args)
    held: list[Record] = []
    report: dict[str, Any] | None = None
    for rec in records:
        if progress is not None:
            progress()
        if rec.payload.get("kind") == "report" and rec.entry_id == report_id:
            report = dict(rec.payload.get("body") or {})
            break
        held.append(rec)
    if report is None:
        raise LookupError(f"report entry {report_id.hex()} not found")
    height = report.get("height")
    now = report.get("now")
    if not isinstance(now, int):
        raise LookupError("report has no integer 'now'")
    use = [r for r in held if r.height is None or not isinstance(height, int)
           or r.height <= height]
    insp.ingest(use, now=now)
    recomputed = build_report_body(insp.findings(), height=height if isinstance(height, int)
                                   else 0, now=now, config=config, hash_alg=hash_alg)
    return Reproduction(report, recomputed)
