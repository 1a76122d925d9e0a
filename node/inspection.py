"""The closed-case inspection (终本智能巡查) inside a running node (issue 8, "How it runs").

:class:`InspectionWorker` follows the node's applied blocks and feeds each block's entries, with
their block height, block time and entry id, to the verifier's incremental engine
(:class:`verifier.Inspector`) in a worker thread, never on the event loop that drives Raft.
Its state is derived: it starts empty and replays the chain from height 1 when the node starts
(a LevelDB case store is wiped when opened), so it can be thrown away and rebuilt at any time.
Between blocks it moves the inspection time to the wall clock every ``tick_s`` seconds, so
deadline warnings (T-30d, T-7d, lapsed …) appear as their due time passes, at the cost of only
the cases that fell due (the engine's wake-up heap).

The one node configured as reporter (``[inspection] reporter = true`` with ``inspector_key``,
an identity of role ``inspector``: ``courtledger init`` writes ``keys/<court>-inspector.key``)
periodically signs a ``report`` entry (DESIGN §2) and submits it through its own admission
path (``NodeServiceImpl.submit``: a follower forwards it to the leader like any submission).
The report's ``height`` is the last block fed, so it is below the height of the block that will
hold it, as ledger validity requires, and anyone re-derives it from the chain with
``courtledger inspect --reproduce ID`` (the engine here is built with the same genesis
identities and court onboarding times the CLI uses for that).

:class:`InspectionReads` is the part of :class:`api.service.NodeService` the internal API's
``/v1/inspection/*`` routes call; ``NodeServiceImpl`` inherits it.

Configuration (TOML, every key optional)::

    [inspection]
    enabled = true              # false: no worker, the /v1/inspection routes answer 503
    reporter = false            # this node signs and submits the periodic `report` entries
    inspector_key = "keys/spc-inspector.key"
    report_interval_s = 300.0
    tick_s = 5.0                # how often deadlines are re-evaluated against the wall clock
    settings = "inspect.toml"   # the rule settings (verifier.InspectConfig.from_toml)
    store = "memory"            # or "leveldb": cases kept in data_dir/inspect
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("courtledger.inspection")

#: Rules that are conditions for closing a case by 终本 (rule book §2: ZB-01 … ZB-23): a
#: closed case with a violation of one of them counts as improperly closed.
CONDITION_RULE = re.compile(r"^ZB-(0[1-9]|1[0-9]|2[0-3])$")
#: Beijing time (UTC+8): months of the charts are Beijing months (events.md, "Conventions").
BEIJING_MS = 8 * 3600 * 1000
#: Blocks fed per trip to the worker thread while catching up (bounds one trip's latency,
#: and how long a stopping node waits for the trip in flight).
FEED_BATCH = 16


class InspectionUnavailable(Exception):
    """Raised when inspection is switched off on this node."""


@dataclass(frozen=True)
class InspectionSettings:
    """The ``[inspection]`` section of a node config (see the module doc)."""

    enabled: bool = True
    reporter: bool = False
    inspector_key: Path | None = None
    report_interval_s: float = 300.0
    tick_s: float = 5.0
    settings: Path | None = None
    store: str = "memory"


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"inspection.{name}: expected true or false, got {value!r}")


def parse_inspection(raw: Mapping[str, Any], base: Path) -> InspectionSettings:
    """Validate the ``[inspection]`` table (env overrides arrive as strings); relative paths
    resolve against ``base`` (the config file's folder). Raises ValueError naming the key."""
    known = set(InspectionSettings.__dataclass_fields__)
    for key in raw:
        if key not in known:
            raise ValueError(f"inspection.{key}: unknown field")

    def path(name: str) -> Path | None:
        v = raw.get(name)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise ValueError(f"inspection.{name}: expected a path")
        p = Path(v).expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    def seconds(name: str, default: float) -> float:
        v = raw.get(name, default)
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"inspection.{name}: expected a number of seconds") from None
        if isinstance(v, bool) or f <= 0:
            raise ValueError(f"inspection.{name}: must be a positive number")
        return f

    store = raw.get("store", "memory")
    if store not in ("memory", "leveldb"):
        raise ValueError("inspection.store: expected 'memory' or 'leveldb'")
    out = InspectionSettings(
        enabled=_bool("enabled", raw.get("enabled", True)),
        reporter=_bool("reporter", raw.get("reporter", False)),
        inspector_key=path("inspector_key"),
        report_interval_s=seconds("report_interval_s", 300.0),
        tick_s=seconds("tick_s", 5.0),
        settings=path("settings"),
        store=store,
    )
    if out.reporter and out.inspector_key is None:
        raise ValueError("inspection.inspector_key: a reporter needs the inspector's key")
    return out


def _month(ms: int) -> str:
    """``YYYY-MM`` of a time in Beijing."""
    return time.strftime("%Y-%m", time.gmtime((ms + BEIJING_MS) / 1000))


class InspectionWorker:
    """The verifier engine following one node's applied blocks (see the module doc)."""

    def __init__(self, node: Any, settings: InspectionSettings | None = None) -> None:
        from prometheus_client import Gauge, Histogram

        from verifier import DEFAULT_CONFIG, InspectConfig, Inspector, LevelDBCaseStore

        self.node = node
        self.chain = node.chain
        self.settings = settings or InspectionSettings()
        genesis = node.genesis
        self.config = (InspectConfig.from_toml(self.settings.settings)
                       if self.settings.settings is not None else DEFAULT_CONFIG)
        courts = {i.court for i in genesis.identities} | {n.court for n in genesis.nodes}
        store = (LevelDBCaseStore(node.config.data_dir / "inspect")
                 if self.settings.store == "leveldb" else None)
        # The same inputs `courtledger inspect --reproduce` uses with the genesis file: genesis
        # courts joined at genesis time (LATE-01's pre-chain history), genesis identities
        # (KEY-01). Anything else would make the on-chain digest irreproducible.
        self.engine = Inspector(
            self.config, hash_alg=self.chain.hash_alg,
            onboarded={c: genesis.genesis_time for c in courts},
            identities={i.id: i.public_key for i in genesis.identities},
            store=store,
        )
        self.fed_height = 0
        self.block_times: dict[int, int] = {}
        # Per case, cheap facts kept while feeding: the month it was filed (charts by time) and
        # whether it holds a CASE_CLOSED event (then its corrected view is asked for the mode).
        self._filed: dict[str, int] = {}
        self._closing: set[str] = set()
        self._closed_cache: dict[str, tuple[int, bool]] = {}
        self._entries_seen: dict[str, int] = {}
        self.reports: deque[dict[str, Any]] = deque(maxlen=20)
        self._content_height = 0
        self._last_report: tuple[int, str, int] | None = None
        self._last_report_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._summary: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._months: dict[str, str] = {}
        self._signer: Any = None
        self._court: str | None = None
        if self.settings.reporter:
            self._load_signer(genesis)
        registry = node.metrics.registry
        self.block_seconds = Histogram(
            "courtledger_inspection_block_seconds",
            "Time to feed one applied block to the inspection engine (re-evaluating the cases "
            "it touched)", registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.height_gauge = Gauge("courtledger_inspection_height",
                                  "Last block height fed to the inspection engine",
                                  registry=registry)
        self.reports_submitted = Gauge("courtledger_inspection_reports_submitted",
                                       "Report entries this node submitted", registry=registry)
        self._submitted = 0

    def _load_signer(self, genesis: Any) -> None:
        from ledger.crypto import Ed25519Signer

        assert self.settings.inspector_key is not None
        signer = Ed25519Signer.from_file(self.settings.inspector_key)
        pk = signer.public_key()
        ident = next((i for i in genesis.identities if i.public_key == pk), None)
        if ident is None or "inspector" not in ident.roles:
            raise ValueError(f"inspection.inspector_key {self.settings.inspector_key}: not the "
                             "key of an inspector identity of the genesis file")
        self._signer, self._court = signer, ident.court

    # ------------------------------------------------------------------ following blocks

    def on_applied(self, height: int) -> None:
        """Called after a block is applied: wake the worker (it reads the block itself)."""
        self._wake.set()

    async def run(self) -> None:
        """Feed applied blocks, tick the clock, submit reports; until cancelled."""
        next_tick = 0.0
        while True:
            try:
                if self.fed_height < self.chain.height:
                    await self._in_thread(self.feed, self.chain.height, FEED_BATCH)
                    continue  # catch up before anything else
                now = time.time()
                if now >= next_tick:
                    await self._in_thread(self.engine.advance_time, int(now * 1000))
                    next_tick = now + self.settings.tick_s
                if self.settings.reporter and now - self._last_report_at >= \
                        self.settings.report_interval_s:
                    self._last_report_at = now
                    await self.submit_report()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - derived data: log and keep the node serving
                log.exception("inspection worker step failed; retrying")
                await asyncio.sleep(1.0)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(0.5, self.settings.tick_s))
            except TimeoutError:
                pass

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` in a worker thread; if the node stops meanwhile, let the call finish
        (it stops after the block in hand) before the cancellation goes on, so the chain store
        is never closed under a read."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            self._stopping = True
            try:
                await fut
            except Exception:  # noqa: BLE001, S110 - stopping anyway
                pass
            raise

    def feed(self, upto: int, limit: int | None = None) -> int:
        """Feed blocks ``fed_height+1 … upto`` (at most ``limit``) to the engine, in order.

        Runs in a worker thread. Returns the number of blocks fed.
        """
        from ledger.crypto import hash_object
        from verifier import Record

        n = 0
        while self.fed_height < upto and (limit is None or n < limit) and not self._stopping:
            h = self.fed_height + 1
            block = self.chain.block(h)
            if block is None:
                break
            t0 = time.perf_counter()
            header = block["header"]
            btime = header["time"]
            records = []
            content = False
            for env in block.get("entries", []):
                payload = env["payload"]
                kind = payload.get("kind")
                if kind == "report":
                    eid = hash_object(self.chain.hash_alg, payload)
                    self.reports.append({"entry_id": eid.hex(), "height": h,
                                         "court": payload.get("court"),
                                         "body": dict(payload.get("body") or {})})
                    continue
                content = True
                records.append(Record(None, h, btime, payload, self.chain.hash_alg))
                self._note(payload)
            self.engine.ingest(records, now=btime)
            self.block_times[h] = btime
            if content:
                self._content_height = h
            self.fed_height = h
            self.height_gauge.set(h)
            self.block_seconds.observe(time.perf_counter() - t0)
            n += 1
        return n

    def _note(self, payload: Mapping[str, Any]) -> None:
        case = payload.get("case")
        if payload.get("kind") != "event" or not isinstance(case, str):
            return
        self._entries_seen[case] = self._entries_seen.get(case, 0) + 1
        body = payload.get("body") or {}
        etype = body.get("type")
        at = body.get("occurred_at")
        if isinstance(at, int) and (etype == "CASE_FILED" or case not in self._filed):
            self._filed[case] = at
        if etype in ("CASE_CLOSED", "EVENT_CORRECTED", "EVENT_VOIDED"):
            self._closing.add(case)

    # ------------------------------------------------------------------ reports

    def report_envelope(self) -> dict[str, Any] | None:
        """A signed ``report`` entry for the state after block ``fed_height``, or None when
        nothing changed since the last one (a report must not beget reports)."""
        from ledger.entries import make_payload, sign_entry

        if self._signer is None or self.fed_height == 0:
            return None
        now = int(time.time() * 1000)
        body = self.engine.report_body(self.fed_height, now)
        last = self._last_report
        if last is not None and last[0] >= self._content_height and \
                last[1] == body["findings"] and last[2] == body["count"]:
            return None
        self._last_report = (self.fed_height, body["findings"], body["count"])
        assert self._court is not None
        payload = make_payload("report", self._court, self._signer.public_key(), body, now)
        return sign_entry(self._signer, self.chain.chain_id, payload)

    async def submit_report(self) -> str | None:
        """Sign and submit one report through this node's admission path; its entry id."""
        env = await self._in_thread(self.report_envelope)
        if env is None:
            return None
        try:
            out = await self.node.service.submit([env], "none")
        except Exception as exc:  # noqa: BLE001 - retried next interval with a fresh report
            self._last_report = None
            log.warning("report not submitted: %s", exc)
            return None
        self._submitted += 1
        self.reports_submitted.set(self._submitted)
        eid = str(out[0]["entry_id"])
        log.info("inspection report %s submitted (height %d, %d findings)", eid,
                 env["payload"]["body"]["height"], env["payload"]["body"]["count"])
        return eid

    # ------------------------------------------------------------------ reads

    def _closed_by_zb(self, case: str) -> bool:
        """Whether the case's corrected view holds a CASE_CLOSED with mode 终本 (cached by the
        number of its entries seen)."""
        seen = self._entries_seen.get(case, 0)
        hit = self._closed_cache.get(case)
        if hit is not None and hit[0] == seen:
            return hit[1]
        # The engine's decoded-case cache is shared with the feeding thread: under its lock.
        with self.engine._lock:
            view = self.engine.view(case)
        closed = bool(view is not None and view.closed_by_zb() is not None)
        self._closed_cache[case] = (seen, closed)
        return closed

    def status(self) -> dict[str, Any]:
        """Where the inspection stands."""
        return {
            "height": self.fed_height, "applied_height": self.chain.height,
            "now": self.engine.now, "calendar": self.engine.calendar,
            "ruleset": self.config.ruleset_hash(self.chain.hash_alg).hex(),
            "cases": len(self.engine.cases),
            "reporter": self.settings.reporter, "reporter_court": self._court,
            "reports": list(self.reports)[-5:],
        }

    def findings(self, **filters: Any) -> list[dict[str, Any]]:
        """Current findings (events.md shape) with the month the case was filed."""
        out = []
        for f in self.engine.findings(**filters):
            j = f.to_json()
            filed = self._filed.get(f.case)
            if filed is not None:
                j["filed_at"] = filed
            out.append(j)
        return out

    def summary(self) -> dict[str, Any]:
        """Per court, per rule, per severity, and per filing month; each court's closed (终本)
        cases and the share of them closed with a violated condition (ZB-01 … ZB-23).

        Cached until the engine evaluates a case again or a block or report arrives: the
        dashboard asks on every refresh, and nothing in it changes in between."""
        key = (self.engine.evaluations, self.fed_height, len(self.reports))
        if self._summary is not None and self._summary[0] == key:
            return {**self._summary[1], **self.status()}
        out = self._compute_summary()
        self._summary = (key, out)
        return out

    def _month_of(self, case: str) -> str:
        m = self._months.get(case)
        if m is None:
            filed = self._filed.get(case)
            m = _month(filed) if filed is not None else "?"
            self._months[case] = m
        return m

    def _compute_summary(self) -> dict[str, Any]:
        courts = self.engine.summary_by_court()
        for s in courts.values():
            s.update(closed_zb=0, improper=0, share=0.0)
        improper: set[str] = set()
        rules: dict[str, dict[str, Any]] = {}
        severities: dict[str, dict[str, int]] = {}
        months: dict[str, dict[str, int]] = {}
        for f in self.engine.findings():
            r = rules.get(f.rule)
            if r is None:
                # The rule's own message: a finding's message is it, then "：" and the detail.
                r = rules[f.rule] = {"rule": f.rule, "citation": f.citation,
                                     "severity": f.severity, "violation": 0, "warning": 0,
                                     "message_zh": f.message_zh.split("：")[0],
                                     "message_en": f.message_en.split(": ")[0]}
            r[f.kind] += 1
            sv = severities.setdefault(f.severity, {"violation": 0, "warning": 0})
            sv[f.kind] += 1
            m = months.setdefault(self._month_of(f.case), {})
            m[f.severity] = m.get(f.severity, 0) + 1
            if f.kind == "violation" and CONDITION_RULE.match(f.rule):
                improper.add(f.case)
        cases = self.engine.cases
        for case in list(self._closing):
            court = cases.get(case)
            if court is None or court not in courts or not self._closed_by_zb(case):
                continue
            courts[court]["closed_zb"] += 1
            if case in improper:
                courts[court]["improper"] += 1
        for s in courts.values():
            if s["closed_zb"]:
                s["share"] = round(s["improper"] / s["closed_zb"], 4)
        return {**self.status(), "courts": courts,
                "rules": dict(sorted(rules.items())), "severities": severities,
                "months": dict(sorted(months.items()))}

    def deadlines(self, court: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Deadline warnings (kind ``warning`` with a due date), soonest first; lapsed ones
        come first since their due date is earliest."""
        warns = [f for f in self.engine.findings(court=court, kind="warning")
                 if f.due is not None]
        warns.sort(key=lambda f: (f.due or 0, f.case, f.rule))
        now = self.engine.now
        return [{**f.to_json(), "overdue": (f.due or 0) < now} for f in warns[:limit]]

    def case(self, case_no: str) -> dict[str, Any]:
        """One case for people: its timeline from the chain (documents, events, evidence, with
        block height, block time and proof status) and its findings."""
        rows = self.chain.case_entries(case_no)
        cosigned = self.chain.cosigned_height
        timeline = []
        refs: set[bytes] = set()
        for r in rows:
            p = r["envelope"]["payload"]
            body = p.get("body") or {}
            header_time = self.block_times.get(r["height"])
            if header_time is None:
                blk = self.chain.block(r["height"])
                header_time = blk["header"]["time"] if blk else None
            item: dict[str, Any] = {
                "entry_id": r["entry_id"].hex(), "kind": p.get("kind"), "height": r["height"],
                "leaf_index": r["leaf_index"], "block_time": header_time,
                "court": p.get("court"),
                "proof": "cosigned" if r["height"] <= cosigned else "committed",
            }
            if p.get("kind") == "event":
                item["type"] = body.get("type")
                item["occurred_at"] = body.get("occurred_at")
                refs.update(x for x in body.get("evidence_refs", []) if isinstance(x, bytes))
            elif p.get("kind") == "document":
                item.update(doc_type=body.get("doc_type"), doc_no=body.get("doc_no"))
            if isinstance(body.get("sha256"), bytes):
                item["sha256"] = body["sha256"].hex()
            if p.get("kind") == "evidence":
                item["media_type"] = body.get("media_type")
                item["occurred_at"] = body.get("captured_at")
            timeline.append(item)
        have = {t.get("sha256") for t in timeline}
        for sha in sorted(refs):
            rec = self.engine.evidence.get(sha)
            if rec is None or sha.hex() in have:
                continue
            height = rec.height or 0
            timeline.append({
                "entry_id": rec.entry_id.hex(), "kind": "evidence", "height": rec.height,
                "block_time": rec.recorded_at, "court": rec.payload.get("court"),
                "sha256": sha.hex(), "media_type": (rec.payload.get("body") or {}).get(
                    "media_type"),
                "occurred_at": (rec.payload.get("body") or {}).get("captured_at"),
                "proof": "cosigned" if height <= cosigned else "committed",
            })
        findings = self.findings(case=case_no)
        if not timeline and not findings:
            from api.service import NotFound

            raise NotFound(f"no entries of case {case_no}")
        court = self.engine.cases.get(case_no) or (timeline[0]["court"] if timeline else "")
        return {"case": case_no, "court": court, "height": self.fed_height,
                "cosigned_height": cosigned, "entries": timeline, "findings": findings}


class InspectionReads:
    """The inspection part of the node service (``/v1/inspection/*``), over ``self.node``'s
    :class:`InspectionWorker`; inherited by ``node.service.NodeServiceImpl``."""

    node: Any

    def _inspection(self) -> InspectionWorker:
        worker = getattr(self.node, "inspection", None)
        if worker is None:
            from api.service import Unavailable

            raise Unavailable("inspection is switched off on this node ([inspection] enabled)")
        return worker  # type: ignore[no-any-return]

    def inspection_findings(self, *, case: str | None = None, court: str | None = None,
                            rule: list[str] | None = None, severity: list[str] | None = None,
                            kind: str | None = None) -> list[dict[str, Any]]:
        """Findings (events.md shape) filtered by case, court, rules, severities, kind."""
        return self._inspection().findings(case=case, court=court, rule=rule or None,
                                           severity=severity or None, kind=kind)

    def inspection_summary(self) -> dict[str, Any]:
        """Counts per court, rule, severity and filing month, with the inspection status."""
        return self._inspection().summary()

    def inspection_deadlines(self, *, court: str | None = None,
                             limit: int = 200) -> list[dict[str, Any]]:
        """Deadline warnings sorted by due date."""
        return self._inspection().deadlines(court=court, limit=limit)

    def inspection_case(self, case_no: str) -> dict[str, Any]:
        """A case's timeline (with heights and proof status) and its findings."""
        return self._inspection().case(case_no)
