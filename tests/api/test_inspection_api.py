"""``/v1/inspection/*`` and ``/dashboard/`` on the internal app, over a real node's inspection
worker (blocks of a generated workload written to its store, no network): bearer token
required, filters by case, court, rule, severity and kind, paging, per-court summary, deadline
warnings by due date, a case's timeline with proof status, and the dashboard's static files
(fixed list, strict CSP). Budget: < 10 s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.internal import create_internal_app
from node.config import load_config
from node.init import init_consortium
from node.process import Node
from node.workload import sign_items
from verifier.findings import SEVERITY_RANK
from verifier.synth import demo_items

COURT = "最高法"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Node, str]]:
    out = tmp_path_factory.mktemp("insp-api") / "c"
    init_consortium(out, 1, base_port=38500)
    node = Node(load_config(out / "spc.toml", env={}))
    items = [{**i, "court": COURT} for i in demo_items(["吉"], 10, seed=5)]
    envs = sign_items(items, node.genesis, out / "keys")
    for i in range(0, len(envs), 100):
        block, bhash = node.chain.build_block(envs[i:i + 100], 1)
        _, ids = node.chain.check(block)
        node.chain.append(block, bhash, ids, i + 1)
    assert node.inspection is not None
    node.inspection.feed(node.chain.height)
    token = (out / "keys" / "spc-inspector.token").read_text().strip()
    client = TestClient(create_internal_app(node.service))
    client.headers["authorization"] = f"Bearer {token}"
    try:
        yield client, node, token
    finally:
        node.chain.close()


def gravest(fs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first of the gravest violations (the workload's defects vary with its seed)."""
    return min((f for f in fs if f["kind"] == "violation"),
               key=lambda f: SEVERITY_RANK[f["severity"]])


def get(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path", ["/v1/inspection/findings", "/v1/inspection/summary",
                                  "/v1/inspection/deadlines", "/v1/inspection/courts/最高法",
                                  "/v1/inspection/cases/（2025）吉执1号"])
def test_every_inspection_read_needs_a_token(setup: Any, path: str) -> None:
    client = TestClient(setup[0].app)
    assert client.get(path).status_code == 401
    r = client.get(path, headers={"authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_findings_filters_and_paging(setup: Any) -> None:
    client, node, _ = setup
    everything = get(client, "/v1/inspection/findings", limit=10_000)
    fs = everything["findings"]
    assert everything["total"] == len(fs) == len(node.inspection.engine.findings()) > 0
    f0 = gravest(fs)
    for key in ("case", "rule", "kind", "severity", "message_zh", "message_en", "citation",
                "entries"):
        assert key in f0
    assert all("height" in e and len(e["id"]) == 64 for e in f0["entries"])
    by_case = get(client, "/v1/inspection/findings", case=f0["case"])["findings"]
    assert by_case and {f["case"] for f in by_case} == {f0["case"]}
    by_rule = get(client, "/v1/inspection/findings", rule=[f0["rule"], "ND-01"])["findings"]
    assert {f["rule"] for f in by_rule} <= {f0["rule"], "ND-01"} and f0 in by_rule
    sev = get(client, "/v1/inspection/findings", severity=f0["severity"])
    assert sev["total"] == sum(1 for f in fs if f["severity"] == f0["severity"])
    # The filtered findings over time: every match counted once, by its case's filing month.
    assert sum(sum(m.values()) for m in sev["months"].values()) == sev["total"]
    assert {k for m in sev["months"].values() for k in m} == {f0["severity"]}
    court = get(client, "/v1/inspection/findings", court=COURT)
    assert court["total"] == len(fs)
    assert get(client, "/v1/inspection/findings", court="沪")["total"] == 0
    warns = get(client, "/v1/inspection/findings", kind="warning")["findings"]
    assert all(f["kind"] == "warning" for f in warns)
    page = get(client, "/v1/inspection/findings", limit=3, offset=2)
    assert page["findings"] == fs[2:5] and page["total"] == len(fs)
    graver = get(client, "/v1/inspection/findings", order="severity", limit=10_000)["findings"]
    assert [SEVERITY_RANK[f["severity"]] for f in graver] == sorted(
        SEVERITY_RANK[f["severity"]] for f in fs)
    assert client.get("/v1/inspection/findings", params={"severity": "LOW"}).status_code == 400


def test_summary_per_court_and_rule(setup: Any) -> None:
    client, node, _ = setup
    s = get(client, "/v1/inspection/summary")
    assert s["height"] == node.chain.height and s["cases"] == 10
    assert s["calendar"].startswith("chinese_calendar==") and len(s["ruleset"]) == 64
    c = s["courts"][COURT]
    assert c["cases"] == 10 and 0 <= c["improper"] <= c["closed_zb"] <= 10
    assert c["closed_zb"] > 0, "the workload closes cases by 终本"
    assert c["share"] == round(c["improper"] / c["closed_zb"], 4)
    total = get(client, "/v1/inspection/findings", limit=1)["total"]
    assert sum(r["violation"] + r["warning"] for r in s["rules"].values()) == total
    assert sum(v["violation"] + v["warning"] for v in s["severities"].values()) == total
    assert sum(sum(m.values()) for m in s["months"].values()) == total
    one = get(client, f"/v1/inspection/courts/{COURT}")
    assert one["cases"] == 10 and sum(one["rules"].values()) == total
    assert client.get("/v1/inspection/courts/沪").status_code == 404


def test_deadlines_sorted_by_due_date(setup: Any) -> None:
    client, _, _ = setup
    warns = get(client, "/v1/inspection/deadlines")["warnings"]
    assert all(w["kind"] == "warning" and isinstance(w["due"], int) for w in warns)
    assert [w["due"] for w in warns] == sorted(w["due"] for w in warns)
    assert get(client, "/v1/inspection/deadlines", court="沪")["warnings"] == []


def test_case_page_has_timeline_with_proof_status_and_findings(setup: Any) -> None:
    client, node, _ = setup
    f0 = get(client, "/v1/inspection/findings", order="severity", limit=1)["findings"][0]
    c = get(client, f"/v1/inspection/cases/{f0['case']}")
    assert c["case"] == f0["case"] and c["court"] == COURT
    assert c["findings"] and all(f["case"] == f0["case"] for f in c["findings"])
    ids = {e["entry_id"] for e in c["entries"]}
    for f in c["findings"]:
        for e in f["entries"]:
            if f["rule"] != "EV-01":
                assert e["id"] in ids, f"{f['rule']} cites an entry outside the timeline"
    kinds = {e["kind"] for e in c["entries"]}
    assert "event" in kinds
    ev = next(e for e in c["entries"] if e["kind"] == "event")
    assert ev["type"] and isinstance(ev["occurred_at"], int) and ev["height"] >= 1
    # Nothing is cosigned on this node without peers: proof says committed, honestly.
    assert {e["proof"] for e in c["entries"]} == {"committed"}
    assert client.get("/v1/inspection/cases/（2025）沪执404号").status_code == 404


def test_dashboard_is_served_with_a_strict_policy(setup: Any) -> None:
    client = TestClient(setup[0].app)  # no token: the files carry no case data
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "终本智能巡查" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    for name in ("dashboard.js", "dashboard.css", "web.css"):
        assert client.get(f"/dashboard/static/{name}").status_code == 200
    for name in ("__init__.py", "..%2F..%2Fnode%2Fconfig.py", "index.html"):
        assert client.get(f"/dashboard/static/{name}").status_code == 404
    js = client.get("/dashboard/static/dashboard.js").text
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in js


def test_inspection_off_answers_503(setup: Any) -> None:
    _, node, token = setup
    saved = node.inspection
    node.inspection = None
    try:
        client = TestClient(create_internal_app(node.service))
        r = client.get("/v1/inspection/summary", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 503 and "switched off" in r.json()["detail"]
    finally:
        node.inspection = saved
