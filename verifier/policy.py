"""The shape of a rule, the context it reads, and how rules combine.

A rule is a small pure function ``check(case, ctx) -> iterable of Hit`` with its id, citation,
severity and messages in Chinese and English (the sigstore-python policy shape: one object,
one ``verify``-like call, a result with a reason). Rules never touch a clock, a disk or the
engine: "now", the configuration, anchored evidence and linked cases come through
:class:`Context`, which also records what the result depends on, so the incremental engine
knows when to look again:

- ``ctx.wake(t)``: the result may change when the inspection time reaches ``t`` (a due date or
  a warning threshold);
- ``ctx.evidence(sha256)``, ``ctx.linked(case_no)``: the result depends on another entry or
  case, re-evaluated when that changes.

Predicates over a case combine with :class:`AllOf` and :class:`AnyOf`; an empty ``AllOf``
fails on purpose, so a rule whose list of conditions was lost never passes silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

from ledger.caseno import parse as parse_case_no
from verifier.cases import Event
from verifier.config import InspectConfig
from verifier.findings import Cite
from verifier.periods import DAY_MS, Due
from verifier.records import Record


class CaseView:
    """A read-only view of one case's corrected events, with the lookups rules need."""

    def __init__(self, case: str, court: str, events: Sequence[Event],
                 evidence: Mapping[bytes, Record] | None = None) -> None:
        self.case = case
        self.court = court
        self.events = events
        self.evidence = evidence or {}
        self._by_type: dict[Any, list[Event]] = {}
        for e in events:
            self._by_type.setdefault(e.type, []).append(e)
        self._ruling: list[Event | None] = []

    def _list(self, types: tuple[str, ...]) -> list[Event]:
        if len(types) == 1:
            return self._by_type.get(types[0], [])
        # Merged lists are memoised: rules ask for the same groups many times per case.
        merged = self._by_type.get(types)
        if merged is None:
            merged = sorted((e for t in types for e in self._by_type.get(t, [])),
                            key=lambda e: (e.occurred_at, e.seq))
            self._by_type[types] = merged
        return merged

    def of(self, *types: str, before: int | None = None) -> list[Event]:
        """Events of the given types in business-time order, optionally only before ``before``."""
        out = self._list(types)
        if before is not None and out and out[-1].occurred_at >= before:
            out = list(takewhile(lambda e: e.occurred_at < before, out))
        return out

    def first(self, *types: str, before: int | None = None,
              where: Callable[..., bool] | None = None) -> Event | None:
        """The earliest matching event (occurring before ``before``, if given), or None."""
        for e in self._list(types):
            if before is not None and e.occurred_at >= before:
                return None  # lists are in business-time order
            if where is None or where(e):
                return e
        return None

    @property
    def filed(self) -> Event | None:
        """立案: the case's ``CASE_FILED``."""
        return self.first("CASE_FILED")

    @property
    def ruling(self) -> Event | None:
        """终本裁定作出: the first ``ZB_RULING_ISSUED``."""
        if not self._ruling:
            self._ruling.append(self.first("ZB_RULING_ISSUED"))
        return self._ruling[0]

    def debtors(self) -> list[Mapping[str, Any]]:
        """``CASE_FILED.debtors`` (maps with ``party`` and ``kind``)."""
        f = self.filed
        ds = f.get("debtors", []) if f else []
        return [d for d in ds if isinstance(d, Mapping) and isinstance(d.get("party"), str)]

    def debtor_parties(self) -> list[str]:
        """The debtors' party hashes, in filing order, without repeats."""
        out: list[str] = []
        for d in self.debtors():
            if d["party"] not in out:
                out.append(d["party"])
        return out

    def applicant_parties(self) -> list[str]:
        """The applicants' party hashes."""
        f = self.filed
        aps = f.get("applicants", []) if f else []
        return [a["party"] for a in aps
                if isinstance(a, Mapping) and isinstance(a.get("party"), str)]

    def applicant_service(self) -> Event | None:
        """终本裁定送达申请执行人: the earliest ``ZB_RULING_SERVED`` on an applicant."""
        applicants = set(self.applicant_parties())
        return self.first("ZB_RULING_SERVED",
                          where=lambda e: not applicants or e.party in applicants)

    def closed_by_zb(self) -> Event | None:
        """The ``CASE_CLOSED`` with mode 终本, if any."""
        return self.first("CASE_CLOSED", where=lambda e: e.get("mode") == "终本")

    def case_no_ok(self) -> bool:
        """True when the 案号 matches the rule book's regex (rulebook §5)."""
        return parse_case_no(self.case) is not None


@dataclass
class Hit:
    """One rule hit before it becomes a :class:`~verifier.findings.Finding`."""

    cites: Sequence[Event | Record | Cite]
    kind: str = "violation"
    due: int | None = None
    provisional: bool = False
    severity: str | None = None  # overrides the rule's severity (e.g. ZB-08's late MED)
    zh: str = ""  # detail appended to the rule's message
    en: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Context:
    """What a rule may read besides the case, and the record of what it depended on."""

    def __init__(self, now: int, config: InspectConfig, *,
                 evidence: Callable[[bytes], Record | None] | None = None,
                 linked: Callable[[str], CaseView | None] | None = None,
                 onboarded: Callable[[str], int | None] | None = None,
                 compromised: Callable[[bytes], tuple[int, Cite, str] | None] | None = None,
                 ) -> None:
        self.now = now
        self.config = config
        self._evidence = evidence
        self._linked = linked
        self._onboarded = onboarded
        self._compromised = compromised
        self.signers_read: set[bytes] = set()
        self.next_wake: int | None = None
        self.evidence_read: set[bytes] = set()
        self.cases_read: set[str] = set()

    def wake(self, t: int) -> None:
        """The result may change when the inspection time reaches ``t`` (only if in the future)."""
        if t > self.now and (self.next_wake is None or t < self.next_wake):
            self.next_wake = t

    def evidence(self, sha256: bytes, case: CaseView | None = None) -> Record | None:
        """The anchored ``evidence`` entry whose ``sha256`` is given, if on record."""
        self.evidence_read.add(sha256)
        if case is not None and sha256 in case.evidence:
            return case.evidence[sha256]
        return self._evidence(sha256) if self._evidence else None

    def linked(self, case_no: str) -> CaseView | None:
        """Another case's view (执恢 ↔ its original), recorded as a dependency."""
        self.cases_read.add(case_no)
        return self._linked(case_no) if self._linked else None

    def onboarded_at(self, court: str) -> int | None:
        """When ``court`` joined the chain, if known (LATE-01's pre-chain history)."""
        return self._onboarded(court) if self._onboarded else None

    @property
    def any_compromised(self) -> bool:
        """True when some key has been revoked as compromised (KEY-01 has work to do)."""
        return self._compromised is not None

    def compromised(self, key: bytes) -> tuple[int, Cite, str] | None:
        """(compromised_since, the revoking entry, identity id) if ``key`` was revoked so."""
        self.signers_read.add(key)
        return self._compromised(key) if self._compromised else None

    def duty(self, rule_warns: bool, due: Due, done: Event | None,
             cites: Sequence[Event | Record | Cite], *, zh: str = "",
             en: str = "") -> Hit | None:
        """A duty that falls due at ``due``: silent if done in time, a warning while pending
        (within the configured levels, when the rule warns), a violation when late or lapsed."""
        if done is not None:
            if done.occurred_at < due.at:
                return None
            late_days = (done.occurred_at - due.at) // DAY_MS + 1
            return Hit([*cites, done], due=due.at, provisional=due.provisional,
                       zh=f"{zh}逾期{late_days}日完成".strip("，"),
                       en=f"{en} done {late_days} day(s) late".strip(),
                       detail={"late_days": late_days})
        if self.now >= due.at:
            return Hit(cites, due=due.at, provisional=due.provisional,
                       zh=f"{zh}已逾期未完成", en=f"{en} overdue, not done".strip(),
                       detail={"status": "lapsed"})
        self.wake(due.at)
        if not rule_warns:
            return None
        level = None
        for days in sorted(self.config.warn_days):
            threshold = due.at - days * DAY_MS
            if self.now >= threshold:
                level = f"T-{days}d"
                break
            self.wake(threshold)
        if level is None:
            return None
        return Hit(cites, kind="warning", due=due.at, provisional=due.provisional,
                   zh=f"{zh}期限将至（{level}）", en=f"{en} due soon ({level})".strip(),
                   detail={"level": level})


Check = Callable[[CaseView, Context], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """One inspection rule: id, citation, severity, messages, and its pure check."""

    id: str
    citation: str
    severity: str
    message_zh: str
    message_en: str
    check: Check
    warns: bool = False  # emits deadline warnings (T-30d, T-7d, T-1d) before it is due

    def verify(self, case: CaseView, ctx: Context) -> list[Hit]:
        """Run the check on one case."""
        return list(self.check(case, ctx))


Predicate = Callable[[CaseView, Context], bool]


@dataclass(frozen=True)
class AllOf:
    """Holds when every predicate holds. An empty ``AllOf`` fails on purpose."""

    predicates: tuple[Predicate, ...]

    def __call__(self, case: CaseView, ctx: Context) -> bool:
        return bool(self.predicates) and all(p(case, ctx) for p in self.predicates)


@dataclass(frozen=True)
class AnyOf:
    """Holds when at least one predicate holds."""

    predicates: tuple[Predicate, ...]

    def __call__(self, case: CaseView, ctx: Context) -> bool:
        return any(p(case, ctx) for p in self.predicates)
