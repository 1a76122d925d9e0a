"""``courtledger follow --once`` catches up to the head the source had when it started, and
returns, even while the source keeps growing (a chain that grows as fast as one copy verifies
it would otherwise keep it pulling for ever). Real stores and keys; the source's HTTP answers
come from a real node chain through httpx's mock transport. Budget: < 5 s."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical
from ledger.entries import make_payload, sign_entry
from ledger.genesis import load_genesis
from node.config import load_config
from node.follow import Follower
from node.init import init_consortium
from node.process import Node

CASE = "（2025）最高法执监9号"


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("follow") / "c"
    init_consortium(out, 1, base_port=38300)
    return out


def test_once_stops_at_the_head_it_saw_first_while_the_source_grows(
    one: Path, tmp_path: Path
) -> None:
    source = Node(load_config(one / "spc.toml",
                              env={"COURTLEDGER_DATA_DIR": str(tmp_path / "src")}))
    clerk = Ed25519Signer.from_file(one / "keys" / "spc-clerk1.key")
    chain = source.chain

    def grow() -> None:
        content = b"doc %d" % chain.height
        body = {"doc_type": "执行裁定书", "doc_no": CASE,
                "sha256": hashlib.sha256(content).digest(), "size": len(content),
                "media_type": "text/plain"}
        env = sign_entry(clerk, chain.chain_id,
                         make_payload("document", "最高法", clerk.public_key(), body,
                                      int(time.time() * 1000), case=CASE))
        block, bhash = chain.build_block([env], 1)
        _, ids = chain.check(block)
        chain.append(block, bhash, ids, chain.height + 1)

    for _ in range(3):
        grow()

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/head":
            # Every look at the head finds the source one block further on.
            grow()
            return httpx.Response(200, json={"height": chain.height})
        if path.startswith("/v1/blocks/"):
            block: Any = chain.block(int(path.rsplit("/", 1)[1]))
            if block is None:
                return httpx.Response(404)
            return httpx.Response(200, content=canonical(block))
        return httpx.Response(404)  # no checkpoints: a single node cosigns nothing here

    follower = Follower("http://source", "token", tmp_path / "copy",
                        load_genesis(one / "genesis.toml"))
    follower.client = httpx.Client(transport=httpx.MockTransport(answer))
    try:
        target = follower.remote_height()
        assert target == 4
        pulls = 0
        while follower.step(until=target) > 0:
            pulls += 1
            assert pulls < 10, "follow --once kept pulling past the head it started from"
        assert follower.failure is None
        assert follower.chain.height == target and chain.height > target
        # Without a bound it would have stored what it found each time.
        assert follower.step() > 0 and follower.chain.height > target
    finally:
        follower.close()
        chain.close()
