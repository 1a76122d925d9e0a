"""The generator's ground truth against the inspector: every rule hit, every clean case clean."""

from __future__ import annotations

import json
from pathlib import Path

from verifier.engine import Inspector
from verifier.periods import parse_now
from verifier.rules import RULES
from verifier.synth import DEFECTS, generate, main

NOW = parse_now("2026-06-01")
SEED = 7


def test_ground_truth_matches_and_every_rule_is_hit() -> None:
    # 2 × the number of defects: every other case takes the next defect in turn.
    cases = list(generate(2 * len(DEFECTS) + 10, seed=SEED, now=NOW, defect_rate=0.0))
    insp = Inspector()
    for sc in cases:
        insp.ingest(sc.records())
    insp.advance_time(NOW)
    mismatches = []
    for sc in cases:
        got = {(f.rule, f.kind) for f in insp.findings(case=sc.case)}
        if got != sc.expected:
            mismatches.append((sc.case, sc.flow, sc.defects, sorted(sc.expected), sorted(got)))
    assert not mismatches, f"seed {SEED}: {mismatches[:5]}"
    hit = {rule for sc in cases for rule, _ in sc.expected}
    assert hit == {r.id for r in RULES}
    clean = [sc for sc in cases if not sc.expected]
    assert len(clean) > 20 and all(insp.findings(case=sc.case) == [] for sc in clean)
    kinds = {kind for sc in cases for _, kind in sc.expected}
    assert kinds == {"violation", "warning"}


def test_cli_writes_events_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "w.jsonl"
    assert main(["--cases", "12", "--out", str(out), "--seed", "3"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines and all("recorded_at" in json.loads(x) for x in lines[:5])
    truth = json.loads((tmp_path / "w.truth.json").read_text(encoding="utf-8"))
    assert len(truth) >= 12 and all("expected" in v for v in truth.values())
    assert main(["--rate", "NOPE=0.5", "--out", str(out)]) == 2


def test_every_generated_event_passes_admission() -> None:
    # The workload must be admissible by a node: ledger.eventschema and ledger.caseno.
    from ledger.caseno import check_normalised
    from ledger.eventschema import check_event_body
    from verifier.synth import demo_items

    for sc in generate(40, seed=4, now=NOW):
        for rec in sc.records():
            if rec.payload["kind"] == "identity":
                continue  # KEY-01's revocation: a consortium entry, checked by validity
            check_normalised(rec.payload["case"])
            if rec.payload["kind"] == "event":
                check_event_body(rec.payload["body"])
    items = list(demo_items(["吉0102", "沪0115", "最高法"], 20, seed=4, now=NOW))
    assert {i["court"] for i in items} == {"吉0102", "沪0115"}
    assert not any(i["body"].get("type") == "EVENT_CORRECTED" for i in items)
    for i in items:
        if i["kind"] == "event":
            check_event_body(i["body"])
