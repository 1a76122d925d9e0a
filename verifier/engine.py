"""The incremental inspection engine, with its own derived state.

The engine keeps, per case, every event and evidence entry in its derived store
(:mod:`verifier.store`: compact entries in memory, or on disk in LevelDB), the recently used
cases decoded (:class:`~verifier.cases.CaseState`), and the findings of each case's last
evaluation. It is rebuildable from the chain at any time: nothing in it is authoritative, and
a full re-run over the same records at the same ``now`` yields the same findings (the
incremental test checks exactly that after every block).

A case is re-evaluated when:
- one of its entries arrives (event, correction, void, evidence filed under it);
- an evidence entry it referenced arrives from elsewhere (EV-01);
- a case it read changes (a 执恢 case reads its original for ZB-37);
- the inspection time passes the earliest time at which one of its rules said its result could
  change (a due date or a warning threshold, :meth:`~verifier.policy.Context.wake`). A heap of
  those wake times makes :meth:`Inspector.advance_time` cost only the cases that fall due.

Court onboarding times (LATE-01's pre-chain history) come from the caller (genesis courts) and
from ``identity``/``membership`` entries seen on the way.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from verifier.cases import CaseState
from verifier.config import DEFAULT_CONFIG, InspectConfig
from verifier.findings import Finding, at_least, findings_digest, sort_findings
from verifier.periods import CALENDAR_ID
from verifier.policy import CaseView, Context, Hit
from verifier.records import Record
from verifier.rules import RULES, Rule
from verifier.store import (
    CaseStore,
    MemoryCaseStore,
    NullCaseStore,
    decode_entry,
    encode_entry,
)


def _cite(c: Any) -> tuple[tuple[bytes, int | None], ...]:
    """The (entry id, height) pairs behind a cited event, record or pair."""
    if isinstance(c, tuple):
        return (c,)
    if isinstance(c, Record):
        return ((c.entry_id, c.height),)
    return tuple((r.entry_id, r.height) for r in c.cites)


def to_finding(rule: Rule, case: CaseView, hit: Hit) -> Finding:
    """Turn a rule hit into a finding (events.md "Finding")."""
    entries: list[tuple[bytes, int | None]] = []
    for c in hit.cites:
        for cite in _cite(c):
            if cite not in entries:
                entries.append(cite)
    zh = rule.message_zh + (f"：{hit.zh}" if hit.zh else "")
    en = rule.message_en + (f": {hit.en}" if hit.en else "")
    return Finding(
        case=case.case, rule=rule.id, kind=hit.kind, severity=hit.severity or rule.severity,
        message_zh=zh, message_en=en, citation=rule.citation, entries=tuple(entries),
        due=hit.due, provisional=hit.provisional, court=case.court,
        detail=tuple(sorted(hit.detail.items())),
    )


class Inspector:
    """Follows records (blocks, files), keeps per-case state, answers with findings.

    Typical use inside a node::

        insp = Inspector(config, hash_alg=genesis.hash_alg, onboarded=genesis_court_times)
        for block in applied_blocks:
            insp.ingest(records_from_blocks([block]), now=block_time)
        insp.findings(court="吉0102", severity="CRIT")
        insp.advance_time(clock_ms)            # deadlines that fell due since
        body = insp.report_body(height, now)    # a `report` entry body (DESIGN §2)
    """

    def __init__(self, config: InspectConfig = DEFAULT_CONFIG, *, hash_alg: str = "sha256",
                 onboarded: Mapping[str, int] | None = None, now: int = 0,
                 rules: Iterable[Rule] | None = None,
                 identities: Mapping[str, bytes] | None = None,
                 store: CaseStore | None = None, cache_cases: int = 1024) -> None:
        self.config = config
        self.hash_alg = hash_alg
        self.now = now
        self.rules = [r for r in (rules if rules is not None else RULES)
                      if config.enabled(r.id)]
        # Every case's entries, compactly (the derived store), its court, its entry count, and
        # the most recently used cases kept decoded.
        self._store: CaseStore = store if store is not None else MemoryCaseStore()
        self._courts: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._decoded: OrderedDict[str, CaseState] = OrderedDict()
        self._cache_cases = max(1, cache_cases)
        self.onboarded: dict[str, int] = dict(onboarded or {})
        self.evidence: dict[bytes, Record] = {}  # evidence entries not filed under a case
        self._findings: dict[str, list[Finding]] = {}
        self._wake_at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._evidence_readers: dict[bytes, set[str]] = defaultdict(set)
        self._case_readers: dict[str, set[str]] = defaultdict(set)
        # KEY-01: identity id → current key (genesis, then identity entries), revoked keys,
        # and which cases hold entries signed by each key.
        self._identity_key: dict[str, bytes] = dict(identities or {})
        self._compromised: dict[bytes, tuple[int, tuple[bytes, int | None], str]] = {}
        self._signer_readers: dict[bytes, set[str]] = defaultdict(set)
        self._index_signers = True  # off when streaming: each case is judged once, at the end
        self.height: int | None = None
        self.evaluations = 0
        # One lock for state changes and reads: a node applies blocks on one thread and
        # serves findings on others.
        self._lock = threading.RLock()

    # -- input -----------------------------------------------------------------------------

    def ingest(self, records: Iterable[Record], now: int | None = None) -> set[str]:
        """Take in records (in chain order); re-evaluate what they touched and what fell due.

        ``now`` is the inspection time after these records (a node passes the block time);
        it never goes backwards. Returns the case numbers re-evaluated.
        """
        with self._lock:
            touched: set[str] = set()
            for rec in records:
                touched |= self._add(rec)
            if now is not None and now > self.now:
                self.now = now
            # Cases that read a touched case (a 执恢 case reads its original) see a new view.
            readers = {r for c in touched for r in self._case_readers.get(c, ())}
            todo = touched | readers | self._due_cases()
            self._evaluate(todo)
            return todo

    def advance_time(self, now: int) -> set[str]:
        """Move the inspection time forward; re-evaluate only the cases whose rules fell due."""
        with self._lock:
            if now > self.now:
                self.now = now
            due = self._due_cases()
            self._evaluate(due)
            return due

    def _add(self, rec: Record) -> set[str]:
        p = rec.payload
        kind = p.get("kind")
        if rec.height is not None:
            self.height = rec.height if self.height is None else max(self.height, rec.height)
        if kind in ("identity", "membership"):
            body = p.get("body") or {}
            court = body.get("court") or p.get("court")
            if isinstance(court, str) and court not in self.onboarded:
                self.onboarded[court] = rec.recorded_at
            if kind == "identity":
                return self._identity(body, rec)
            return set()
        if kind not in ("event", "evidence"):
            return set()
        case_no = p.get("case")
        if kind == "evidence" and not isinstance(case_no, str):
            sha = bytes((p.get("body") or {}).get("sha256", b""))
            if sha in self.evidence:
                return set()
            self.evidence[sha] = rec
            return set(self._evidence_readers.get(sha, ()))
        if not isinstance(case_no, str) or not case_no:
            return set()
        n = self._counts.get(case_no, 0)
        self._counts[case_no] = n + 1
        self._courts.setdefault(case_no, str(p.get("court", "")))
        if not isinstance(self._store, NullCaseStore):
            self._store.append(case_no, encode_entry(rec))
        state = self._decoded.get(case_no)
        if state is None and n == 0:
            # A new case starts decoded: the next evaluation needs it anyway.
            state = self._decoded[case_no] = CaseState(case_no)
            if len(self._decoded) > self._cache_cases:
                self._decoded.popitem(last=False)
        if state is not None and not state.add(rec, n):
            return set()
        signer = p.get("signer")
        if self._index_signers and kind == "event" and isinstance(signer, bytes):
            self._signer_readers[signer].add(case_no)
        out = {case_no}
        if kind == "evidence":
            sha = bytes((p.get("body") or {}).get("sha256", b""))
            out |= self._evidence_readers.get(sha, set())
        return out

    def _identity(self, body: Mapping[str, Any], rec: Record) -> set[str]:
        ident, op = body.get("id"), body.get("op")
        if not isinstance(ident, str):
            return set()
        if op == "add" and isinstance(body.get("public_key"), bytes):
            self._identity_key[ident] = body["public_key"]
        elif op == "rotate" and isinstance(body.get("new_public_key"), bytes):
            self._identity_key[ident] = body["new_public_key"]
        elif op == "revoke" and isinstance(body.get("compromised_since"), int):
            key = self._identity_key.get(ident)
            if key is not None and key not in self._compromised:
                self._compromised[key] = (body["compromised_since"],
                                          (rec.entry_id, rec.height), ident)
                return set(self._signer_readers.get(key, ()))
        return set()

    # -- evaluation ------------------------------------------------------------------------

    def _due_cases(self) -> set[str]:
        out: set[str] = set()
        while self._heap and self._heap[0][0] <= self.now:
            t, case_no = heapq.heappop(self._heap)
            if self._wake_at.get(case_no) == t:
                del self._wake_at[case_no]
                out.add(case_no)
        return out

    @property
    def cases(self) -> Mapping[str, str]:
        """Every case number known, with its court."""
        return self._courts

    def _state(self, case_no: str) -> CaseState | None:
        st = self._decoded.get(case_no)
        if st is not None:
            self._decoded.move_to_end(case_no)
            return st
        if case_no not in self._courts:
            return None
        st = CaseState(case_no)
        for i, item in enumerate(self._store.items(case_no)):
            st.add(decode_entry(item), i)
        self._decoded[case_no] = st
        if len(self._decoded) > self._cache_cases:
            self._decoded.popitem(last=False)
        return st

    def forget(self, case_no: str) -> None:
        """Drop a case's state and findings (streaming inspection, once a case is done)."""
        with self._lock:
            self._store.drop(case_no)
            self._decoded.pop(case_no, None)
            self._courts.pop(case_no, None)
            self._counts.pop(case_no, None)
            self._findings.pop(case_no, None)

    def view(self, case_no: str) -> CaseView | None:
        """The corrected view of one case, or None if unknown."""
        st = self._state(case_no)
        if st is None:
            return None
        return CaseView(st.case, st.court, st.view(), st.evidence)

    def _evaluate(self, case_nos: set[str]) -> None:
        # Rules read other cases' events, never their findings, so one pass suffices.
        for case_no in case_nos:
            self._evaluate_one(case_no)

    def _evaluate_one(self, case_no: str) -> None:
        view = self.view(case_no)
        if view is None:
            return
        self.evaluations += 1
        ctx = Context(self.now, self.config, evidence=self.evidence.get, linked=self.view,
                      onboarded=self.onboarded.get,
                      compromised=self._compromised.get if self._compromised else None)
        out: list[Finding] = []
        for r in self.rules:
            for hit in r.verify(view, ctx):
                out.append(to_finding(r, view, hit))
        self._findings[case_no] = out
        for sha in ctx.evidence_read:
            self._evidence_readers[sha].add(case_no)
        for other in ctx.cases_read:
            self._case_readers[other].add(case_no)
        for key in ctx.signers_read:
            self._signer_readers[key].add(case_no)
        if ctx.next_wake is not None:
            self._wake_at[case_no] = ctx.next_wake
            heapq.heappush(self._heap, (ctx.next_wake, case_no))
        else:
            self._wake_at.pop(case_no, None)

    def reevaluate_all(self) -> None:
        """Evaluate every case again (after a configuration or calendar change)."""
        with self._lock:
            self._evaluate(set(self._courts))

    # -- output ----------------------------------------------------------------------------

    def findings(self, *, case: str | None = None, court: str | None = None,
                 rule: str | Iterable[str] | None = None,
                 severity: str | Iterable[str] | None = None, kind: str | None = None,
                 min_severity: str | None = None) -> list[Finding]:
        """Current findings in report order, filtered by case, court, rule(s), severity(ies)."""
        rules = {rule} if isinstance(rule, str) else set(rule) if rule is not None else None
        sevs = ({severity} if isinstance(severity, str) else set(severity)
                if severity is not None else None)
        with self._lock:
            source = ([self._findings.get(case, [])] if case is not None
                      else list(self._findings.values()))
        out = [f for fs in source for f in fs
               if (court is None or f.court == court)
               and (rules is None or f.rule in rules)
               and (sevs is None or f.severity in sevs)
               and (kind is None or f.kind == kind)
               and (min_severity is None or at_least(f.severity, min_severity))]
        return sort_findings(out)

    def summary_by_court(self) -> dict[str, dict[str, Any]]:
        """Per court: cases, violations and warnings by severity, cases with a CRIT violation."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            items = [(court, list(self._findings.get(c, [])))
                     for c, court in self._courts.items()]
        for court, case_findings in items:
            s = out.setdefault(court, {"cases": 0, "violations": {}, "warnings": {},
                                       "cases_with_crit": 0})
            s["cases"] += 1
            crit = False
            for f in case_findings:
                bucket = s["violations"] if f.kind == "violation" else s["warnings"]
                bucket[f.severity] = bucket.get(f.severity, 0) + 1
                crit = crit or (f.kind == "violation" and f.severity == "CRIT")
            s["cases_with_crit"] += int(crit)
        return out

    def report_body(self, height: int, now: int | None = None) -> dict[str, Any]:
        """The body of a ``report`` entry (DESIGN §2) for the current state.

        ``now`` defaults to the engine's inspection time; if given and later, the engine
        advances to it first so the digest covers deadlines that fell due.
        """
        from verifier.report import build_report_body

        with self._lock:
            if now is not None:
                self.advance_time(now)
            return build_report_body(self.findings(), height=height, now=self.now,
                                     config=self.config, hash_alg=self.hash_alg)

    def digest(self) -> bytes:
        """The digest of the current findings (DESIGN §2 ``report.findings``)."""
        return findings_digest(self.findings(), self.hash_alg)

    @property
    def calendar(self) -> str:
        """The holiday calendar package and version the periods were counted with."""
        return CALENDAR_ID


def inspect_records(records: Iterable[Record], now: int,
                    config: InspectConfig = DEFAULT_CONFIG, **kwargs: Any) -> Inspector:
    """A full run: ingest every record, then evaluate at ``now``."""
    insp = Inspector(config, **kwargs)
    insp.ingest(records, now=now)
    return insp


RESUMED_KEPT = 100_000


def stream_inspect(records: Iterable[Record], now: int,
                   config: InspectConfig = DEFAULT_CONFIG, **kwargs: Any) -> Iterable[Finding]:
    """Inspect records grouped by case (an events file written case by case) in bounded memory.

    Each case is evaluated when the next case starts and its state is then dropped; only the
    ruling of a finished case that was resumed is kept (the last :data:`RESUMED_KEPT`), for
    the ZB-37 link of its 执恢 case, which must come after it. Evidence filed under no case is
    kept.
    Yields findings case by case.
    """
    # One case at a time stays decoded, so nothing needs keeping in a store.
    insp = Inspector(config, now=now, store=NullCaseStore(), **kwargs)
    insp._index_signers = False
    # Rulings of finished cases that were resumed (only those can be a 执恢 case's original),
    # the most recent RESUMED_KEPT of them: memory stays bounded however long the stream.
    rulings: OrderedDict[str, CaseView] = OrderedDict()

    def linked(case_no: str) -> CaseView | None:
        return insp.view(case_no) or rulings.get(case_no)

    current: str | None = None

    def flush(case_no: str) -> list[Finding]:
        view = insp.view(case_no)
        if view is None:
            return []
        ctx = Context(now, config, evidence=insp.evidence.get, linked=linked,
                      onboarded=insp.onboarded.get,
                      compromised=insp._compromised.get if insp._compromised else None)
        out = [to_finding(r, view, h) for r in insp.rules for h in r.verify(view, ctx)]
        if view.ruling is not None:
            if view.first("RESUMED") is not None:
                rulings[case_no] = CaseView(case_no, view.court, [view.ruling])
                if len(rulings) > RESUMED_KEPT:
                    rulings.popitem(last=False)
        insp.forget(case_no)
        insp.evaluations += 1
        return out

    for rec in records:
        case_no = rec.payload.get("case")
        if isinstance(case_no, str) and case_no != current and rec.payload.get("kind") in (
                "event", "evidence"):
            if current is not None:
                yield from flush(current)
            current = case_no
        insp._add(rec)
    if current is not None:
        yield from flush(current)
