"""The inspection dashboard on a real three-court cluster (issue 10): node processes on loopback,
a generated enforcement workload with defects, one node configured as the inspection reporter.

Checks: the inspection API needs a bearer token; every node's worker follows the chain to the
same findings; the reporter's signed `report` entry lands on chain and `courtledger inspect
--node … --reproduce` re-derives it; in Debian's Chromium the dashboard asks for the token,
then shows the findings, the per-court share chart, deadline warnings sorted by due date, and a
case page with its chain timeline and findings. Screenshots at desktop and phone width in both
languages go to artifacts/web/. Budget: ≤ 90 s (most of it the cluster's start).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cluster import free_base_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

CASES = 24
READER = "ji01-inspector"  # a court staff identity of another court than the reporter's


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 3-court cluster, its first node the reporter, loaded with a generated workload."""
    from node.demo import Cluster, submit_all
    from node.init import init_consortium
    from node.workload import load_items, sign_items

    folder = tmp_path_factory.mktemp("dash-cluster") / "c"
    init_consortium(folder, 3, base_port=free_base_port())
    c = Cluster(folder)
    reporter = c.ids[0]
    fast = {"COURTLEDGER_INSPECTION__TICK_S": "1"}
    for i in c.ids:
        env = dict(fast)
        if i == reporter:
            env.update({"COURTLEDGER_INSPECTION__REPORTER": "true",
                        "COURTLEDGER_INSPECTION__INSPECTOR_KEY":
                            str(folder / "keys" / f"{i}-inspector.key"),
                        "COURTLEDGER_INSPECTION__REPORT_INTERVAL_S": "2"})
        c.start(i, env=env)
    try:
        c.wait_ready(timeout=120)
        items = load_items([n.court for n in c.genesis.nodes], CASES, seed=7)
        envs = sign_items(items, c.genesis, folder / "keys")
        submit_all(c.internal(c.ids[1]), envs, chunk=200)
        yield c
    finally:
        c.stop_all()


def _token(c: Any, ident: str = READER) -> str:
    return (c.folder / "keys" / f"{ident}.token").read_text().strip()


def _get(c: Any, node: str, path: str, **params: Any) -> Any:
    r = httpx.get(c.internal(node) + path, params=params, timeout=10,
                  headers={"authorization": "Bearer " + _token(c)})
    assert r.status_code == 200, r.text
    return r.json()


def _settled(c: Any, timeout: float = 60) -> dict[str, Any]:
    """Wait until every node inspected its whole chain and the reporter's report is on it."""
    deadline = time.monotonic() + timeout
    while True:
        sums = {i: _get(c, i, "/v1/inspection/summary") for i in c.ids}
        heights = {s["height"] for s in sums.values()} | {s["applied_height"]
                                                          for s in sums.values()}
        if len(heights) == 1 and all(s["reports"] for s in sums.values()):
            return sums
        if time.monotonic() > deadline:
            where = {i: (s["height"], s["applied_height"], len(s["reports"]))
                     for i, s in sums.items()}
            raise AssertionError(f"inspection did not settle: {where}")
        time.sleep(0.5)


def test_inspection_api_and_report_on_a_cluster(inspected: Any) -> None:
    c = inspected
    node = c.ids[2]
    assert httpx.get(c.internal(node) + "/v1/inspection/summary").status_code == 401
    assert httpx.get(c.internal(node) + "/v1/inspection/findings",
                     headers={"authorization": "Bearer nope"}).status_code == 401
    sums = _settled(c)
    digests = {i: {(f["case"], f["rule"], f["kind"]) for f in
                   _get(c, i, "/v1/inspection/findings", limit=10_000)["findings"]}
               for i in c.ids}
    assert digests[c.ids[0]] and len({frozenset(d) for d in digests.values()}) == 1
    s = sums[node]
    assert sum(x["cases"] for x in s["courts"].values()) >= CASES
    assert any(x["closed_zb"] for x in s["courts"].values())
    crit = _get(c, node, "/v1/inspection/findings", severity="CRIT")
    assert crit["total"] and {f["severity"] for f in crit["findings"]} == {"CRIT"}
    rule = crit["findings"][0]["rule"]
    assert {f["rule"] for f in _get(c, node, "/v1/inspection/findings",
                                    rule=rule)["findings"]} == {rule}
    court = crit["findings"][0]["court"]
    one = _get(c, node, f"/v1/inspection/courts/{court}")
    assert one["cases"] == s["courts"][court]["cases"]
    warns = _get(c, node, "/v1/inspection/deadlines")["warnings"]
    assert warns and [w["due"] for w in warns] == sorted(w["due"] for w in warns)

    # The report on chain re-derives from the chain (courtledger inspect --reproduce).
    report = s["reports"][-1]
    assert report["court"] == c.genesis.nodes[0].court
    tok = c.folder / "keys" / f"{READER}.token"
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "inspect", "--node", c.internal(node),
         "--token", str(tok), "--consortium", str(c.folder / "genesis.toml"),
         "--reproduce", report["entry_id"], "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _wait_loaded(page: Any, what: str) -> None:
    page.wait_for_selector(f"body[data-loaded={what}]", timeout=30_000)


def test_dashboard_shows_findings_and_a_case_page(inspected: Any, browser: Any,
                                                  artifacts: Path) -> None:
    c = inspected
    _settled(c)
    url = c.internal(c.ids[1]) + "/dashboard/"
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        # No token, no data: the sign-in form; a wrong token is refused.
        page.wait_for_selector("#signin:not([hidden])")
        page.fill("#token", "not-a-token")
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#signin-error:not([hidden])")
        assert "401" in page.inner_text("#signin-error")
        page.screenshot(path=str(artifacts / "dashboard-signin-zh.png"))
        page.fill("#token", _token(c))
        page.click("#signin-form button[type=submit]")
        _wait_loaded(page, "overview")

        rows = page.query_selector_all("#findings tbody tr")
        assert rows, "the findings of the workload are listed"
        assert len(page.query_selector_all("#share-chart svg rect")) >= 3
        assert page.query_selector_all("#time-chart svg rect")
        assert "ZB-" in page.inner_text("#rules")
        dues = page.query_selector_all("#deadlines tbody tr")
        assert dues, "deadline warnings are listed"
        dates = [r.query_selector("td").inner_text() for r in dues]
        assert dates == sorted(dates)
        assert "巡查" in page.inner_text("h1")
        page.screenshot(path=str(artifacts / "dashboard-overview-zh.png"), full_page=True)

        # Filter by severity through its card.
        page.click(".card.CRIT")
        _wait_loaded(page, "overview")
        # (a selector, not wait_for_function: the page's CSP forbids the eval it needs)
        page.wait_for_selector("#f-severity option[value=CRIT][selected]", state="attached",
                               timeout=10_000)
        sevs = {e.inner_text() for e in page.query_selector_all("#findings tbody .sev")}
        assert sevs == {"严重"}, sevs
        page.click(".card.CRIT")  # off again

        page.click("#lang")
        _wait_loaded(page, "overview")
        assert "inspection" in page.inner_text("h1")
        page.screenshot(path=str(artifacts / "dashboard-overview-en.png"), full_page=True)

        # A case page: timeline with heights and proof status, findings with citations.
        case_no = page.query_selector("#findings tbody tr td a").inner_text()
        page.click("#findings tbody tr td a")
        _wait_loaded(page, "case")
        assert page.inner_text("#case-title") == case_no
        timeline = page.query_selector_all("#case-timeline tbody tr")
        assert timeline
        assert page.query_selector_all("#case-timeline .tag.cosigned, "
                                       "#case-timeline .tag.committed")
        assert page.query_selector_all("#case-findings .finding")
        assert page.query_selector_all("#case-timeline tr.cited")
        page.screenshot(path=str(artifacts / "dashboard-case-en.png"), full_page=True)
        page.click("#lang")
        _wait_loaded(page, "case")
        assert "依据" in page.inner_text("#case-findings")
        page.screenshot(path=str(artifacts / "dashboard-case-zh.png"), full_page=True)

        # Phone width, both pages.
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(artifacts / "dashboard-case-phone-zh.png"), full_page=True)
        page.click("a.back")
        _wait_loaded(page, "overview")
        page.screenshot(path=str(artifacts / "dashboard-overview-phone-zh.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"the overview scrolls sideways on a phone ({width} px)"
    finally:
        ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"
