"""The page on a real three-court cluster (issue 10's acceptance): node processes on loopback.

A document is submitted to one court's node with ``wait=receipt``; the page served by another
court's public listener must say Recorded (cosigned by a quorum of the three courts) with every
check passed, Not found for an unknown file, refuse a tampered receipt (request intercepted),
and open a deep link on the third node. Budget: ≤ 40 s (most of it the cluster's start).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_cluster import free_base_port

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    demo = pytest.importorskip("node.demo")
    from node.init import init_consortium

    folder = tmp_path_factory.mktemp("web-cluster") / "c"
    init_consortium(folder, 3, base_port=free_base_port())
    c = demo.Cluster(folder)
    c.start_all()
    try:
        c.wait_ready(timeout=120)
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="module")
def anchored(cluster: Any) -> dict[str, Any]:
    """One document submitted to the first court's node, with its receipt."""
    from api.codec import envelope_to_json
    from ledger.crypto import Ed25519Signer
    from ledger.entries import make_payload, sign_entry

    clerk = next(p for p in sorted((cluster.folder / "keys").glob("*-clerk*.key")))
    s = Ed25519Signer.from_file(clerk)
    court = next(i.court for i in cluster.genesis.identities if i.public_key == s.public_key())
    case = f"（2025）{court}执5号"
    content = f"{case} 执行通知书 {time.time()}".encode() * 20
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(content).digest(), "size": len(content),
            "media_type": "application/pdf"}
    env = sign_entry(s, cluster.genesis.chain_id,
                     make_payload("document", court, s.public_key(), body,
                                  int(time.time() * 1000), case=case))
    first = cluster.ids[0]
    deadline = time.monotonic() + 60
    while True:
        r = httpx.post(cluster.internal(first) + "/v1/entries", params={"wait": "receipt"},
                       json={"entries": [envelope_to_json(env)]}, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # e.g. 503 while leadership settles: retry the same envelope
    assert r.status_code == 200, r.text
    item = r.json()["entries"][0]
    assert item.get("receipt"), item
    return {"content": content, "hash": hashlib.sha256(content).hexdigest(), "item": item}


def _outcome(page: Any) -> str:
    el = page.wait_for_selector("[data-testid=outcome]", timeout=30_000)
    return str(el.get_attribute("data-outcome"))


def _public_has(cluster: Any, node: str, h: str) -> None:
    """Wait until a follower's public listener has caught up with the document."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(cluster.public(node) + f"/v1/verify/{h}", timeout=5)
        if r.status_code == 200 and r.json()["anchored"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"{node} never reported {h} anchored")


def test_drop_anchored_file_on_another_court(page: Any, cluster: Any, anchored: dict[str, Any],
                                             artifacts: Path) -> None:
    other = cluster.ids[1]
    _public_has(cluster, other, anchored["hash"])
    page.goto(cluster.public(other) + "/")
    page.set_input_files("#file", files=[{"name": "执行通知书.pdf", "mimeType": "application/pdf",
                                          "buffer": anchored["content"]}])
    assert _outcome(page) == "recorded", page.inner_text("#result")
    marks = [li.get_attribute("data-ok")
             for li in page.query_selector_all("[data-testid=checks] li")]
    assert marks == ["true"] * 8
    text = page.inner_text("[data-testid=match]")
    assert "家法院中的" in text and "由 3 家法院中的" in text
    page.screenshot(path=str(artifacts / "cluster-recorded-zh.png"), full_page=True)

    page.set_input_files("#file", files=[{"name": "unknown.pdf", "mimeType": "application/pdf",
                                          "buffer": b"never anchored anywhere"}])
    page.wait_for_selector("[data-outcome=notfound]", timeout=30_000)
    page.screenshot(path=str(artifacts / "cluster-notfound-zh.png"), full_page=True)


def test_tampered_cluster_receipt_is_refused(page: Any, cluster: Any,
                                             anchored: dict[str, Any], artifacts: Path) -> None:
    seen: list[str] = []

    def handle(route: Any) -> None:
        seen.append(route.request.url)
        response = route.fetch()
        receipt = copy.deepcopy(response.json())
        for s in receipt["signatures"]:
            sig = bytearray(bytes.fromhex(s["sig"]))
            sig[0] ^= 0x80
            s["sig"] = bytes(sig).hex()
        route.fulfill(response=response, body=json.dumps(receipt),
                      headers={**response.headers, "content-type": "application/json"})

    node = cluster.ids[2]
    _public_has(cluster, node, anchored["hash"])
    page.route("**/v1/verify/receipts/**", handle)
    page.goto(cluster.public(node) + "/?lang=en&h=" + anchored["hash"])
    assert _outcome(page) == "error"
    assert seen, "the receipt request was not intercepted"
    assert page.get_attribute("[data-check=signatures]", "data-ok") == "false"
    page.screenshot(path=str(artifacts / "cluster-tampered-en.png"), full_page=True)


def test_deep_link_on_the_third_court(page: Any, cluster: Any, anchored: dict[str, Any]) -> None:
    node = cluster.ids[2]
    _public_has(cluster, node, anchored["hash"])
    page.goto(cluster.public(node) + "/?h=" + anchored["hash"])
    assert _outcome(page) == "recorded"
    assert page.input_value("#hash") == anchored["hash"]
