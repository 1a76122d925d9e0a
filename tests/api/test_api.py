"""The internal and public apps over a real single-node service (real LevelDB store, real
builder/apply/cosign path; no mocks of our code). DESIGN §5 and §6. Budget: < 20 s."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from api.internal import create_internal_app
from api.openapi import documents, render
from api.public import create_public_app
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical
from ledger.entries import make_payload, sign_entry
from ledger.genesis import Genesis, load_genesis
from ledger.receipts import verify_receipt
from node.config import load_config
from node.init import init_consortium
from node.process import Node

CASE = "（2025）最高法执监7号"


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api") / "c"
    init_consortium(out, 1, base_port=37100)
    return out


Client = httpx.AsyncClient
Body = Callable[[Node, Client, Client, Genesis], Awaitable[None]]


def run(consortium: Path, tmp_path: Path, body: Body, *, rate: float = 1000.0) -> None:
    """Start a fresh single-node node on ``tmp_path`` and run ``body`` against both apps."""

    async def main() -> None:
        cfg = load_config(consortium / "spc.toml", env={"COURTLEDGER_DATA_DIR": str(tmp_path)})
        node = Node(cfg)
        await node.start()
        internal = create_internal_app(node.service, max_body_bytes=256 * 1024)
        public = create_public_app(node.service, max_upload_bytes=1024, rate_per_second=rate,
                                   rate_burst=int(rate))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=internal),
                                         base_url="http://internal") as i, \
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=public),
                                      base_url="http://public") as p:
                await body(node, i, p, node.genesis)
        finally:
            await node.stop()

    asyncio.run(main())


def signer(consortium: Path, ident: str) -> Ed25519Signer:
    return Ed25519Signer.from_file(consortium / "keys" / f"{ident}.key")


def document(s: Ed25519Signer, g: Genesis, content: bytes, *, court: str = "最高法",
             case: str = CASE, time: int | None = None,
             chain_id: bytes | None = None) -> dict[str, Any]:
    body = {"doc_type": "执行裁定书", "doc_no": case, "sha256": hashlib.sha256(content).digest(),
            "size": len(content), "media_type": "application/pdf"}
    import time as _t

    payload = make_payload("document", court, s.public_key(), body,
                           time if time is not None else int(_t.time() * 1000), case=case)
    return sign_entry(s, chain_id or g.chain_id, payload)


def event(s: Ed25519Signer, g: Genesis) -> dict[str, Any]:
    import time as _t

    now = int(_t.time() * 1000)
    body = {"type": "HANDLER_ASSIGNED", "occurred_at": now,
            "actor": {"officer_id": "spc-officer1", "role": "officer"},
            "fields": {"handler": "spc-officer1", "team": "一组"}}
    return sign_entry(s, g.chain_id, make_payload("event", "最高法", s.public_key(), body, now,
                                                  case=CASE))


def as_json(*envs: dict[str, Any]) -> dict[str, Any]:
    return {"entries": [envelope_to_json(e) for e in envs]}


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code is not None:
        assert body["error"] == code, body


# --------------------------------------------------------------------------- submissions


def test_json_submit_wait_receipt_gives_an_offline_verifiable_receipt(
    consortium: Path, tmp_path: Path
) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        env = document(signer(consortium, "spc-clerk1"), g, b"ruling one")
        r = await i.post("/v1/entries", params={"wait": "receipt"}, json=as_json(env))
        assert r.status_code == 200, r.text
        (item,) = r.json()["entries"]
        assert item["status"] == "committed" and item["height"] == 1 and item["leaf_index"] == 0
        facts = verify_receipt(item["receipt"], load_genesis(consortium / "genesis.toml"))
        assert facts is not None
        # Replay once committed: 200 duplicate, same location, nothing stored twice.
        r2 = await i.post("/v1/entries", json=as_json(env))
        (dup,) = r2.json()["entries"]
        assert dup["status"] == "duplicate"
        assert (dup["height"], dup["leaf_index"]) == (1, 0)
        assert (await i.get("/v1/head")).json()["tree_size"] == 1

    run(consortium, tmp_path, body)


def test_msgpack_batch_commits_and_is_all_or_nothing(consortium: Path, tmp_path: Path) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        clerk = signer(consortium, "spc-clerk1")
        a, b = document(clerk, g, b"a"), event(signer(consortium, "spc-officer1"), g)
        r = await i.post("/v1/entries", params={"wait": "commit"}, content=canonical([a, b]),
                         headers={"content-type": "application/msgpack"})
        assert r.status_code == 200, r.text
        assert [e["status"] for e in r.json()["entries"]] == ["committed", "committed"]
        # A batch with one bad signature is refused whole, naming the index.
        good = document(clerk, g, b"c")
        bad = document(clerk, g, b"d")
        bad["sig"] = bytes(64)
        r = await i.post("/v1/entries", params={"wait": "commit"}, json=as_json(good, bad))
        assert_error(r, 422)
        assert "entries[1]" in r.json()["detail"]
        await asyncio.sleep(0.05)
        assert (await i.get("/v1/head")).json()["tree_size"] == 2

    run(consortium, tmp_path, body)


def test_bad_input_is_refused_with_4xx_and_nothing_is_stored(
    consortium: Path, tmp_path: Path
) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        clerk = signer(consortium, "spc-clerk1")
        import time as _t

        now = int(_t.time() * 1000)
        other_chain = document(clerk, g, b"x", chain_id=bytes(32))
        stranger = document(Ed25519Signer.generate(), g, b"y")
        no_role = document(signer(consortium, "spc-inspector"), g, b"z")
        other_court = document(clerk, g, b"w", court="吉")
        not_normal = document(clerk, g, b"v", case="(2025)最高法执监7号")
        future = document(clerk, g, b"u", time=now + 3_600_000)
        cases = [
            (other_chain, 422), (stranger, 422), (no_role, 422), (other_court, 422),
            (not_normal, 422), (future, 422),
        ]
        for env, status in cases:
            r = await i.post("/v1/entries", json=as_json(env))
            assert_error(r, status)
        assert_error(await i.post("/v1/entries", json=as_json(not_normal)), 422,
                     "case_not_normalised")
        # Non-canonical msgpack (a map with unsorted keys), malformed JSON, wrong type.
        raw = b"\x82\xa3sig\xc4\x00\xa7payload\x80"
        assert_error(await i.post("/v1/entries", content=raw,
                                  headers={"content-type": "application/msgpack"}), 400,
                     "non_canonical")
        assert_error(await i.post("/v1/entries", content=b"{", headers={
            "content-type": "application/json"}), 400)
        assert_error(await i.post("/v1/entries", content=b"x",
                                  headers={"content-type": "text/plain"}), 400)
        nulls = as_json(document(clerk, g, b"t"))
        nulls["entries"][0]["payload"]["case"] = None
        r = await i.post("/v1/entries", json=nulls)
        assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "detail"}
        # Oversize body: 413 before it is parsed.
        assert_error(await i.post("/v1/entries", content=b"0" * (300 * 1024),
                                  headers={"content-type": "application/json"}), 413)
        await asyncio.sleep(0.05)
        assert (await i.get("/v1/head")).json()["height"] == 0

    run(consortium, tmp_path, body)


# --------------------------------------------------------------------------- reads


def test_reads_need_a_bearer_token_and_serve_blocks_checkpoints_proofs(
    consortium: Path, tmp_path: Path
) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        clerk = signer(consortium, "spc-clerk1")
        ids = []
        for k in range(3):
            r = await i.post("/v1/entries", params={"wait": "receipt"},
                             json=as_json(document(clerk, g, b"doc %d" % k)))
            ids.append(r.json()["entries"][0]["entry_id"])
        token = (consortium / "keys" / "spc-inspector.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        assert_error(await i.get(f"/v1/entries/{ids[0]}"), 401)
        assert_error(await i.get(f"/v1/entries/{ids[0]}",
                                 headers={"Authorization": "Bearer nope"}), 401)
        r = await i.get(f"/v1/entries/{ids[0]}", headers=auth)
        assert r.status_code == 200 and r.json()["height"] == 1
        assert (await i.get(f"/v1/receipts/{ids[2]}", headers=auth)).json()["entry_id"] == ids[2]
        assert_error(await i.get(f"/v1/entries/{'0' * 64}", headers=auth), 404)
        assert_error(await i.get("/v1/entries/xyz", headers=auth), 422)
        case = (await i.get(f"/v1/cases/{CASE}", headers=auth)).json()
        assert [e["entry_id"] for e in case["entries"]] == ids
        blk = await i.get("/v1/blocks/2", headers=auth)
        assert blk.json()["header"]["height"] == 2
        raw = await i.get("/v1/blocks/2", headers={**auth, "accept": "application/msgpack"})
        assert raw.headers["content-type"] == "application/msgpack"
        latest = (await i.get("/v1/checkpoints/latest")).json()
        assert latest["format"] == "courtledger-checkpoint/1"
        assert latest["checkpoint"]["tree_size"] == 3
        assert (await i.get("/v1/checkpoints/1")).json()["checkpoint"]["height"] == 1
        proof = (await i.get("/v1/consistency", params={"first": 1, "second": 3})).json()
        assert proof["format"] == "courtledger-consistency/1" and proof["path"]
        from ledger.receipts import verify_consistency_proof

        verify_consistency_proof(proof, load_genesis(consortium / "genesis.toml"))
        cl = (await i.get("/v1/cluster")).json()
        assert cl["node"] == "spc" and cl["leader"] == "spc" and cl["members"]
        assert (await i.get("/readyz")).status_code == 200
        metrics = (await i.get("/metrics")).text
        assert "courtledger_blocks_applied_total 3.0" in metrics

    run(consortium, tmp_path, body)


# --------------------------------------------------------------------------- public


def test_public_listener_verifies_documents_only_and_never_writes(
    consortium: Path, tmp_path: Path
) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        content = b"a court ruling"
        doc = document(signer(consortium, "spc-clerk1"), g, content)
        ev = event(signer(consortium, "spc-officer1"), g)
        r = await i.post("/v1/entries", params={"wait": "receipt"}, json=as_json(doc, ev))
        doc_id, ev_id = (e["entry_id"] for e in r.json()["entries"])
        digest = hashlib.sha256(content).hexdigest()
        got = (await p.get(f"/v1/verify/{digest}")).json()
        assert got["anchored"] is True and got["as_of"]["tree_size"] == 2
        (m,) = got["matches"]
        assert m["entry_id"] == doc_id and m["court"] == "最高法" and m["doc_type"] == "执行裁定书"
        rec = (await p.get(m["receipt_url"])).json()
        verify_receipt(rec, load_genesis(consortium / "genesis.toml"))
        assert (await p.get(f"/v1/verify/{'ab' * 32}")).json()["anchored"] is False
        up = await p.post("/v1/verify", content=content,
                          headers={"content-type": "application/octet-stream"})
        assert up.json()["anchored"] is True
        assert_error(await p.post("/v1/verify", content=b"x" * 2048), 413)
        # Events and evidence are never served publicly.
        assert_error(await p.get(f"/v1/verify/receipts/{ev_id}"), 404)
        for method, path in [
            ("POST", "/v1/entries"), ("GET", "/v1/cluster"), ("GET", "/v1/head"),
            ("GET", "/v1/blocks/1"), ("GET", f"/v1/entries/{doc_id}"),
            ("GET", f"/v1/receipts/{doc_id}"), ("GET", "/v1/checkpoints/latest"),
            ("GET", "/metrics"), ("GET", f"/v1/cases/{CASE}"), ("GET", "/readyz"),
        ]:
            r = await p.request(method, path, json=as_json(doc) if method == "POST" else None)
            assert r.status_code in (404, 405), (method, path, r.status_code)
            assert set(r.json()) == {"error", "detail"}
        page = await p.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    run(consortium, tmp_path, body)


def test_public_listener_rate_limits(consortium: Path, tmp_path: Path) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        codes = [(await p.get(f"/v1/verify/{'cd' * 32}")).status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
        r = [c for c in codes if c == 429]
        assert r

    run(consortium, tmp_path, body, rate=5.0)


def test_committed_openapi_documents_are_current() -> None:
    root = Path(__file__).resolve().parents[2] / "docs"
    for name, doc in documents().items():
        assert (root / name).read_text(encoding="utf-8") == render(doc), (
            f"docs/{name} is stale: run `python -m api.openapi docs`"
        )
    internal = json.loads((root / "openapi-internal.json").read_text(encoding="utf-8"))
    assert "/v1/entries" in internal["paths"] and "/v1/cluster" in internal["paths"]
