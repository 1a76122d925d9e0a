"""The Python side of the page: anchors validation, routes, headers (no browser needed)."""

from __future__ import annotations

import copy
import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tampers import TAMPERS
from webchain import Chain
from webserver import demo_chain

from api.web import CSP, consortium_document, mount_public_page, summarize_genesis
from ledger.errors import GenesisError, LedgerError
from ledger.receipts import verify_receipt


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


@pytest.fixture(scope="module")
def client(chain: Chain) -> TestClient:
    app = FastAPI()
    mount_public_page(app, genesis_summary=chain.summary())
    return TestClient(app)


def test_consortium_json_is_the_pinned_anchors(client: TestClient, chain: Chain) -> None:
    doc = client.get("/consortium.json").json()
    assert doc["format"] == "courtledger-consortium/1"
    assert doc["chain_id"] == chain.chain_id.hex()
    assert doc["hash_alg"] == "sha256" and doc["receipt_quorum"] == "majority"
    assert [n["id"] for n in doc["nodes"]] == [n for n, _ in chain.courts]
    assert all(re.fullmatch(r"[0-9a-f]{64}", n["public_key"]) for n in doc["nodes"])


def test_page_embeds_the_same_anchors_as_inert_json(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    m = re.search(r'<script type="application/json" id="consortium">(.*?)</script>', r.text)
    assert m, "anchors are embedded in the page"
    assert json.loads(m.group(1)) == client.get("/consortium.json").json()
    # Nothing from outside: every src/href is this origin's.
    for url in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert url.startswith("/"), url


def test_security_headers_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    js = client.get("/static/verify.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    # Only the listed files: the Python source next to them is never served.
    assert client.get("/static/__init__.py").status_code == 404
    assert client.get("/static/..%2F__init__.py").status_code == 404


def test_embedding_cannot_close_the_script_element(chain: Chain) -> None:
    app = FastAPI()
    mount_public_page(app, genesis_summary={**chain.summary(), "chain_name": "</script><b>x"})
    text = TestClient(app).get("/").text
    assert "</script><b>x" not in text
    m = re.search(r'<script type="application/json" id="consortium">(.*?)</script>', text)
    assert m and json.loads(m.group(1))["chain_name"] == "</script><b>x"


def test_summary_accepts_a_consortium_map_with_chain_id(chain: Chain) -> None:
    summary = chain.summary()
    as_map = {
        "chain_name": summary["chain_name"], "hash_alg": "sm3",
        "params": {"sig_alg": "ed25519", "receipt_quorum": "two_thirds"},
        "nodes": [{**n, "tls_certificate": "", "raft_addr": "x"} for n in summary["nodes"]],
        "chain_id": summary["chain_id"].hex(),
    }
    doc = consortium_document(as_map)
    assert doc["hash_alg"] == "sm3" and doc["receipt_quorum"] == "two_thirds"
    assert set(doc["nodes"][0]) == {"id", "court", "role", "public_key"}


def test_summarize_genesis_reads_attributes(chain: Chain) -> None:
    class Params:
        receipt_quorum = "majority"
        sig_alg = "ed25519"

    class NodeSpec:
        def __init__(self, n: dict[str, object]) -> None:
            self.__dict__.update(n)

    class Genesis:
        chain_id = chain.chain_id
        chain_name = "x"
        hash_alg = "sha256"
        params = Params()
        nodes = [NodeSpec(n) for n in chain.summary()["nodes"]]

    doc = consortium_document(summarize_genesis(Genesis()))
    assert doc["chain_id"] == chain.chain_id.hex() and len(doc["nodes"]) == 3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hash_alg": "md5"}, "hash_alg"),
        ({"receipt_quorum": "all"}, "receipt_quorum"),
        ({"sig_alg": "sm2"}, "sig_alg"),
        ({"chain_id": b"\x00" * 31}, "chain_id"),
        ({"nodes": []}, "no voter"),
        ({"nodes": [{"id": "a", "court": "c", "role": "voter", "public_key": "zz"}]}, "hex"),
        ({"nodes": [{"id": "a", "court": "c", "role": "boss", "public_key": b"\x01" * 32}]},
         "role"),
    ],
)
def test_bad_summaries_are_refused(chain: Chain, change: dict[str, object], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        consortium_document({**chain.summary(), **change})


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_the_auditor_agrees_with_the_page_on_fixtures_and_tampers(alg: str) -> None:
    """ledger.receipts (what `courtledger audit receipt` runs) accepts every receipt the page's
    tests accept, and refuses every tamper the page must refuse."""
    chain, info = demo_chain(alg)
    for key in ("early_id", "late_id"):
        facts = verify_receipt(chain.receipt(info[key]), chain.genesis)
        assert facts.kind == "document"
    late = verify_receipt(chain.receipt(info["late_id"]), chain.genesis)
    assert "n-jl0203" in late.voters and len(late.cosigners) == 3
    for name, (tamper, _check) in TAMPERS.items():
        receipt = copy.deepcopy(chain.receipt(info["early_id"]))
        tamper(receipt)
        with pytest.raises(LedgerError):
            verify_receipt(receipt, chain.genesis)
            pytest.fail(f"the auditor accepted the {name!r} tamper")
