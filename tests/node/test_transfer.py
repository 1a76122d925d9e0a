"""Verified block transfer (DESIGN §3: a far-behind or new node catches up from stored blocks).

Two real nodes' replicators (real stores, keys, checks) with their peer link replaced by a
direct call, since only the network is not under test here. Budget: < 10 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from consensus.types import ConfState, SnapshotMeta
from ledger.checkpoints import sign_checkpoint
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical, decode
from ledger.entries import make_payload, sign_entry
from ledger.errors import ValidityError
from node.config import load_config
from node.init import init_consortium
from node.process import Node


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xfer") / "c"
    init_consortium(out, 3, base_port=38300)
    return out


def make_node(folder: Path, node_id: str, data: Path) -> Node:
    return Node(load_config(folder / f"{node_id}.toml", env={"COURTLEDGER_DATA_DIR": str(data)}))


def fill(folder: Path, node: Node, blocks: int) -> None:
    """Append ``blocks`` blocks to ``node``'s chain, each with a quorum checkpoint."""
    clerk = Ed25519Signer.from_file(folder / "keys" / "ji01-clerk1.key")
    keys = {n: Ed25519Signer.from_file(folder / "keys" / f"{n}.node.key")
            for n in ("spc", "ji", "ji01")}
    for i in range(blocks):
        content = b"transfer %d" % i
        body = {"doc_type": "执行裁定书", "doc_no": "（2025）吉01执3号",
                "sha256": hashlib.sha256(content).digest(), "size": len(content),
                "media_type": "text/plain"}
        env = sign_entry(clerk, node.chain.chain_id, make_payload(
            "document", "吉01", clerk.public_key(), body, int(time.time() * 1000),
            case="（2025）吉01执3号"))
        block, bhash = node.chain.build_block([env], 1)
        _, ids = node.chain.check(block)
        node.chain.append(block, bhash, ids, 10 + i)
        cp = node.chain.checkpoint_body(block["header"]["height"])
        assert cp is not None
        sigs = [{"node": n, "sig": sign_checkpoint(k, node.chain.chain_id, cp)}
                for n, k in keys.items() if n != "spc"]
        node.chain.put_checkpoint(cp, sigs)


def link(a: Node, b: Node, tamper: Any = None) -> None:
    """Deliver a's app frames to b and b's to a, directly (the wire is not under test)."""

    def sender(src: Node, dst: Node) -> Any:
        async def send_app(peer: str, channel: str, data: bytes) -> None:
            if peer != dst.config.node_id:
                raise KeyError(peer)
            if tamper is not None and src is a:
                data = tamper(channel, data)
            asyncio.get_running_loop().create_task(
                dst.replicator.on_app(src.config.node_id, channel, data))
        return send_app

    a.replicator.transport.send_app = sender(a, b)  # type: ignore[method-assign]
    b.replicator.transport.send_app = sender(b, a)  # type: ignore[method-assign]


def test_a_behind_node_catches_up_block_by_block_with_checkpoints(
    three: Path, tmp_path: Path
) -> None:
    async def main() -> None:
        server = make_node(three, "spc", tmp_path / "spc")
        client = make_node(three, "ji", tmp_path / "ji")
        try:
            fill(three, server, 6)
            link(server, client)
            meta = SnapshotMeta(15, 1, ConfState(["ji", "ji01", "spc"], []))
            await asyncio.wait_for(client.replicator._install(meta), 20)
            assert client.chain.height == 6
            assert client.chain.store.head()[2] == server.chain.store.head()[2]
            assert client.chain.applied_index >= 15
            assert client.chain.cosigned(6), "the last batch's quorum checkpoint is adopted"
            assert client.replicator.snapshots_installed == 1
            # The log re-delivering a transferred block is recognised, not re-applied.
            assert client.chain.already_holds(server.chain.block(3))
        finally:
            for n in (server, client):
                n.replicator.logstore.close()
                n.chain.close()

    asyncio.run(main())


def test_a_tampered_transfer_is_refused_and_nothing_is_stored(
    three: Path, tmp_path: Path
) -> None:
    def tamper(channel: str, data: bytes) -> bytes:
        if channel != "xfer_r":
            return data
        msg = decode(data)
        if msg.get("blocks"):
            block = decode(msg["blocks"][1])
            block["entries"][0]["sig"] = bytes(64)  # a rogue peer's forged entry
            msg["blocks"][1] = canonical(block)
        return canonical(msg)

    async def main() -> None:
        server = make_node(three, "spc", tmp_path / "spc")
        client = make_node(three, "ji", tmp_path / "ji")
        try:
            fill(three, server, 3)
            link(server, client, tamper)
            with pytest.raises(ValidityError):
                await asyncio.wait_for(client.replicator._transfer_from("spc"), 20)
            assert client.chain.height == 1, "only the block before the forged one is kept"
            assert client.chain.healthy(), "a bad transfer is the peer's fault, not a fork"
        finally:
            for n in (server, client):
                n.replicator.logstore.close()
                n.chain.close()

    asyncio.run(main())
