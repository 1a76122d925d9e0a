"""The page against a real court node: real receipts from the ledger, verified in Chromium.

A one-court consortium (``node.init``) runs a real node (store, builder, apply, cosign) in a
background event loop; its real public app (``api.public.create_public_app``, which mounts
this page) is served over HTTP on 127.0.0.1. A document is submitted through the internal API
with ``wait=receipt``; then the browser drops the file and must say Recorded, with every check
shown passed. Budget: < 15 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CASE = "（2025）最高法执监7号"


class LiveNode:
    """A real single-court node and its public app on 127.0.0.1, in a thread of its own."""

    def __init__(self, root: Path, hash_alg: str, contents: list[bytes]) -> None:
        self.root = root
        self.hash_alg = hash_alg
        self.contents = contents
        self.receipts: list[dict[str, Any]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.server: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        import httpx
        import uvicorn

        from api.codec import envelope_to_json
        from api.internal import create_internal_app
        from api.public import create_public_app
        from ledger.crypto import Ed25519Signer
        from ledger.entries import make_payload, sign_entry
        from node.config import load_config
        from node.init import init_consortium
        from node.process import Node

        out = self.root / "c"
        # Raft needs a port even for one court; take one the OS says is free.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        (cfg_path,) = init_consortium(out, 1, base_port=base, hash_alg=self.hash_alg)
        cfg = load_config(cfg_path, env={"COURTLEDGER_DATA_DIR": str(self.root / "data")})
        node = Node(cfg)
        await node.start()
        try:
            clerk = Ed25519Signer.from_file(next((out / "keys").glob("*clerk*.key")))
            court = node.genesis.identities[0].court
            internal = create_internal_app(node.service)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=internal),
                                         base_url="http://internal") as client:
                for content in self.contents:
                    body = {"doc_type": "执行裁定书", "doc_no": CASE + "之一",
                            "sha256": hashlib.sha256(content).digest(), "size": len(content),
                            "media_type": "application/pdf"}
                    payload = make_payload("document", court, clerk.public_key(), body,
                                           int(time.time() * 1000), case=CASE)
                    env = sign_entry(clerk, node.genesis.chain_id, payload)
                    r = await client.post("/v1/entries", params={"wait": "receipt"},
                                          json={"entries": [envelope_to_json(env)]})
                    assert r.status_code == 200, r.text
                    self.receipts.append(r.json()["entries"][0]["receipt"])
            public = create_public_app(node.service, genesis=node.genesis)
            self.server = uvicorn.Server(uvicorn.Config(public, log_level="warning",
                                                        lifespan="off"))
            self.loop = asyncio.get_running_loop()
            serve = asyncio.create_task(self.server.serve(sockets=[self.sock]))
            while not self.server.started:
                await asyncio.sleep(0.02)
            self.ready.set()
            await serve
        finally:
            await node.stop()

    def start(self) -> LiveNode:
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the node did not start within 60 s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture(scope="module", params=["sha256", "sm3"])
def live(request: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    pytest.importorskip("node.process")
    alg = request.param
    contents = [f"执行裁定书 {alg} {i}".encode() * 50 for i in range(3)]
    node = LiveNode(tmp_path_factory.mktemp(f"web-node-{alg}"), alg, contents).start()
    yield node
    node.stop()


def test_real_receipt_recorded_in_the_browser(page: Any, live: LiveNode, artifacts: Path) -> None:
    page.goto(live.url + "/")
    anchors = page.evaluate("() => JSON.parse(document.getElementById('consortium').textContent)")
    assert anchors["hash_alg"] == live.hash_alg
    content = live.contents[1]
    page.set_input_files("#file", files=[{"name": "裁定书.pdf", "mimeType": "application/pdf",
                                          "buffer": content}])
    el = page.wait_for_selector("[data-testid=outcome]", timeout=15_000)
    result = {li.get_attribute("data-check"): li.get_attribute("data-ok")
              for li in page.query_selector_all("[data-testid=checks] li")}
    assert el.get_attribute("data-outcome") == "recorded", page.inner_text("#result")
    assert set(result.values()) == {"true"} and len(result) == 8
    assert "由 1 家法院中的 1 家联署" in page.inner_text("[data-testid=match]")
    # The downloaded proof is the node's receipt, byte for byte what ledger/receipts.py verifies.
    with page.expect_download() as info:
        page.click("[data-testid=download]")
    import json

    saved = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert saved["entry_id"] == live.receipts[1]["entry_id"]
    page.screenshot(path=str(artifacts / f"node-recorded-{live.hash_alg}-zh.png"), full_page=True)

    page.set_input_files("#file", files=[{"name": "other.pdf", "mimeType": "application/pdf",
                                          "buffer": b"not anchored on this node"}])
    page.wait_for_selector("[data-outcome=notfound]", timeout=15_000)
