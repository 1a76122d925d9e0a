"""A real HTTP server for the page's browser tests: the page plus canned public-API answers.

It mounts the page with :func:`api.web.mount_public_page` exactly as the public app does, and
answers ``GET /v1/verify/{sha256}`` and ``GET /v1/verify/receipts/{entry_id}`` (the node's
paths) from a
:class:`webchain.Chain` built with real keys. Run it by hand to look at the page::

    .venv/bin/python tests/web/webserver.py       # prints the address and demo hashes
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from webchain import GENESIS_TIME, Chain, new_node

from api.web import mount_public_page

#: A hash the canned API answers with 503, as a node far behind the ledger does (DESIGN §5).
BEHIND_HASH = "b" * 64
#: A hash committed but not yet cosigned: a match without a receipt_url, as the node answers.
PENDING_HASH = "c" * 64


def build_app(chain: Chain, docs: dict[str, list[str]]) -> FastAPI:
    """The public app for tests: ``docs`` maps a document SHA-256 (hex) to its entry ids."""
    app = FastAPI()

    @app.get("/v1/verify/{sha256}")
    async def verify(sha256: str) -> JSONResponse:
        if sha256 == BEHIND_HASH:
            return JSONResponse({"error": "behind", "detail": "node is catching up"}, 503)
        if sha256 == PENDING_HASH:
            match = {"entry_id": "d" * 64, "kind": "document", "court": "吉0102",
                     "doc_type": "执行通知书", "anchored_at": GENESIS_TIME, "height": 9,
                     "receipt_url": None}
            return JSONResponse({"anchored": True, "as_of": {"tree_size": 1, "time": 0},
                                 "matches": [match]})
        last = chain.blocks[-1] if chain.blocks else None
        as_of = {"tree_size": len(chain.leaves), "time": last.time if last else GENESIS_TIME}
        matches = []
        for entry_id in docs.get(sha256, []):
            receipt = chain.receipt(entry_id)
            matches.append({
                "entry_id": entry_id, "kind": "document", "court": "吉0102",
                "doc_type": "执行通知书", "anchored_at": receipt["checkpoint"]["time"],
                "height": receipt["checkpoint"]["height"],
                "receipt_url": f"/v1/verify/receipts/{entry_id}",
            })
        return JSONResponse({"anchored": bool(matches), "as_of": as_of, "matches": matches})

    @app.get("/v1/verify/receipts/{entry_id}")
    async def receipt(entry_id: str) -> JSONResponse:
        if entry_id not in chain.entry_index:
            return JSONResponse({"error": "not_found", "detail": "no such entry"}, 404)
        return JSONResponse(chain.receipt(entry_id))

    mount_public_page(app, genesis_summary=chain.summary())
    return app


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 in a thread, on a port the OS picks."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def demo_chain(hash_alg: str = "sha256") -> tuple[Chain, dict[str, Any]]:
    """A chain with documents before and after a membership change (a 4th court joins).

    Returns the chain and a dict with the documents' contents and entry ids.
    """
    chain = Chain(hash_alg=hash_alg)
    t0 = GENESIS_TIME + 86_400_000 * 10 + 3_600_000 * 2  # 2025-12-11 02:00 UTC (10:00 Beijing)
    early = b"%PDF-1.7\n" + "（2025）吉0102执1203号之一 执行通知书".encode() + b"\n" * 40
    filler = [f"filler document {i}".encode() for i in range(5)]
    envs = [chain.document(c, time=t0 + i, doc_no=f"（2025）吉0102执{1300 + i}号")
            for i, c in enumerate(filler)]
    early_env = chain.document(early, time=t0 + 10)
    chain.add_block([*envs[:3], early_env, *envs[3:]], time=t0 + 1_000)
    # A fourth court joins: learner, then voter. Receipts after this carry consortium proofs.
    joining = new_node("n-jl0203", "吉0203")
    chain.change_membership("add_learner", joining, time=t0 + 60_000)
    chain.change_membership("promote", joining, time=t0 + 120_000)
    late = b"%PDF-1.7\n" + "（2025）吉0102执1203号 终结本次执行程序裁定书".encode() + b"\n" * 40
    late_env = chain.document(late, time=t0 + 180_000, doc_type="终本裁定书",
                              doc_no="（2025）吉0102执1203号之二")
    more = [chain.document(f"late filler {i}".encode(), time=t0 + 180_001 + i) for i in range(3)]
    # Signed by three of the four voters now in force: the new court among them.
    chain.add_block([more[0], late_env, *more[1:]], time=t0 + 181_000,
                    signers=["n-jl0102", "n-jl", "n-jl0203"])
    event_env = chain.document(b"an event, not a document", time=t0 + 200_000, kind="event")
    chain.add_block([event_env], time=t0 + 201_000)
    info = {
        "early": early, "early_id": chain.entry_id_of(early_env),
        "late": late, "late_id": chain.entry_id_of(late_env),
        "event": b"an event, not a document", "event_id": chain.entry_id_of(event_env),
    }
    return chain, info


def demo_docs(info: dict[str, Any]) -> dict[str, list[str]]:
    """The verify index of the demo chain: document hash → entry ids."""
    return {
        hashlib.sha256(info["early"]).hexdigest(): [info["early_id"]],
        hashlib.sha256(info["late"]).hexdigest(): [info["late_id"]],
        # The canned API wrongly offers an event's receipt: the page must refuse it.
        hashlib.sha256(info["event"]).hexdigest(): [info["event_id"]],
    }


def main() -> None:
    """Serve the demo chain until interrupted."""
    chain, info = demo_chain()
    srv = ServerThread(build_app(chain, demo_docs(info))).start()
    print(f"page: {srv.url}/")
    for name in ("early", "late"):
        print(f"  {name}: {srv.url}/?h={hashlib.sha256(info[name]).hexdigest()}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
