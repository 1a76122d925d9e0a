"""The incremental engine: the same findings as a full re-run after every block."""

from __future__ import annotations

import random

from casebook import NOW, compliant

from verifier.config import InspectConfig
from verifier.engine import Inspector, inspect_records, stream_inspect
from verifier.findings import findings_digest, sort_findings
from verifier.periods import DAY_MS, parse_now
from verifier.records import Record
from verifier.report import build_report_body, reproduce
from verifier.synth import generate

GEN_NOW = parse_now("2026-06-01")


def workload(n: int, seed: int) -> list[Record]:
    recs = [r for sc in generate(n, seed=seed, now=GEN_NOW) for r in sc.records()]
    return sorted(recs, key=lambda r: r.recorded_at)


def blocks_of(records: list[Record], n_blocks: int) -> list[list[Record]]:
    # Chain order: a block holds entries recorded up to its time; heights count up.
    size = max(1, len(records) // n_blocks)
    out = []
    for h, i in enumerate(range(0, len(records), size), 1):
        out.append([Record(r.entry_id, h, r.recorded_at, r.payload) for r in records[i:i + size]])
    return out


def test_incremental_equals_full_rerun_after_every_block() -> None:
    seed = 11
    recs = workload(36, seed)
    blocks = blocks_of(recs, 30)
    inc = Inspector()
    seen: list[Record] = []
    rng = random.Random(seed)
    times = [max(r.recorded_at for r in blk) for blk in blocks] + [GEN_NOW]
    for i, blk in enumerate(blocks):
        now = times[i]
        inc.ingest(blk, now=now)
        seen += blk
        full = inspect_records(seen, now)
        assert inc.findings() == full.findings(), f"seed {seed}, height {blk[0].height}"
        # time passing before the next block: only the cases that fell due are looked at again
        later = now + rng.randint(0, max(0, times[i + 1] - now))
        before = inc.evaluations
        due = inc.advance_time(later)
        assert inc.evaluations - before == len(due)
        assert inc.findings() == inspect_records(seen, later).findings(), f"seed {seed}"
    assert inc.findings(kind="violation")


def test_streaming_equals_full() -> None:
    cases = list(generate(40, seed=5, now=GEN_NOW))
    grouped = [r for sc in cases for r in sc.records()]
    streamed = sort_findings(stream_inspect(grouped, GEN_NOW))
    assert streamed == inspect_records(grouped, GEN_NOW).findings()


def test_report_body_and_reproduction() -> None:
    recs = [Record(r.entry_id, 1, r.recorded_at, r.payload) for r in compliant().records()]
    insp = inspect_records(recs, NOW + 400 * DAY_MS)
    body = insp.report_body(1)
    assert set(body) == {"height", "now", "ruleset", "calendar", "findings", "count"}
    assert body["calendar"].startswith("chinese_calendar==")
    assert body["count"] == len(insp.findings()) > 0
    assert body["findings"] == findings_digest(insp.findings()).hex()
    assert body == build_report_body(insp.findings(), height=1, now=NOW + 400 * DAY_MS,
                                     config=InspectConfig())
    report = Record.of({"v": 1, "kind": "report", "court": "最高法", "time": body["now"],
                        "nonce": b"\x00" * 16, "signer": b"\x02" * 32, "body": body},
                       body["now"], height=2)
    rep = reproduce(recs + [report], report.entry_id, InspectConfig())
    assert rep.matches and rep.differences() == []
    other = reproduce(recs[:-3] + [report], report.entry_id, InspectConfig())
    assert not other.matches and any("findings" in d for d in other.differences())
    # A different rule configuration is a different ruleset hash.
    assert InspectConfig(payout_days=20).ruleset_hash() != InspectConfig().ruleset_hash()


def test_filters_and_summary() -> None:
    insp = inspect_records(compliant().records(), NOW + 400 * DAY_MS)
    assert insp.findings(rule="ZB-31") == insp.findings()
    assert insp.findings(court="沪0115") == []
    assert insp.findings(severity="HIGH") == insp.findings()
    assert insp.findings(severity="CRIT") == []
    summary = insp.summary_by_court()["吉0102"]
    assert summary["cases"] == 1 and summary["violations"] == {"HIGH": len(insp.findings())}


def test_derived_store_on_disk_with_a_tiny_cache_gives_the_same_findings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Cases evicted from the decoded cache are rebuilt from the store: same findings.
    from verifier.store import LevelDBCaseStore

    recs = workload(25, 3)
    expected = inspect_records(recs, GEN_NOW).findings()
    store = LevelDBCaseStore(tmp_path / "cases")
    try:
        insp = Inspector(store=store, cache_cases=2)
        for blk in blocks_of(recs, 10):
            insp.ingest(blk, now=max(r.recorded_at for r in blk))
        insp.advance_time(GEN_NOW)
        got = insp.findings()
    finally:
        store.close()
    strip = [(f.case, f.rule, f.kind, f.due, [i for i, _ in f.entries]) for f in got]
    assert strip == [(f.case, f.rule, f.kind, f.due, [i for i, _ in f.entries])
                     for f in expected]


def test_settings_from_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    path = tmp_path / "inspect.toml"
    path.write_text('[inspect]\npayout_days = 20\ndisabled_rules = ["ZB-23"]\n')
    cfg = InspectConfig.from_toml(path)
    assert cfg.payout_days == 20 and not cfg.enabled("ZB-23")
    assert cfg.ruleset_hash() != InspectConfig().ruleset_hash()
    assert all(r.id != "ZB-23" for r in Inspector(cfg).rules)
    path.write_text("[inspect]\npayout_dayz = 20\n")
    with pytest.raises(ValueError, match="payout_dayz"):
        InspectConfig.from_toml(path)
