"""Node pipeline: verified apply stops on an invalid committed block, the builder re-queues a
truncated block without anchoring anything twice, cosigning catches equivocation and refuses a
skewed block. Real store, real keys; no network. Budget: < 10 s."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoints import make_checkpoint, sign_checkpoint
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical
from ledger.entries import entry_id, make_payload, sign_entry
from node.builder import InFlight
from node.config import load_config
from node.init import init_consortium
from node.process import Node

CASE = "（2025）最高法执监9号"


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one") / "c"
    init_consortium(out, 1, base_port=38100)
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("three") / "c"
    init_consortium(out, 3, base_port=38200)
    return out


def node_of(folder: Path, node_id: str, data: Path) -> Node:
    return Node(load_config(folder / f"{node_id}.toml", env={"COURTLEDGER_DATA_DIR": str(data)}))


def doc(folder: Path, node: Node, n: int, court_slug: str = "spc",
        court: str = "最高法") -> dict[str, Any]:
    s = Ed25519Signer.from_file(folder / "keys" / f"{court_slug}-clerk1.key")
    content = b"doc %d" % n
    body = {"doc_type": "执行裁定书", "doc_no": CASE, "sha256": hashlib.sha256(content).digest(),
            "size": len(content), "media_type": "text/plain"}
    return sign_entry(s, node.chain.chain_id,
                      make_payload("document", court, s.public_key(), body,
                                   int(time.time() * 1000), case=CASE))


def test_invalid_committed_block_stops_apply_and_cosign_and_fails_readyz(
    one: Path, tmp_path: Path
) -> None:
    async def main() -> None:
        node = node_of(one, "spc", tmp_path)
        await node.start()
        try:
            good, _ = node.chain.build_block([doc(one, node, 1)], 1)
            bad, _ = node.chain.build_block([doc(one, node, 2)], 1)
            bad["entries"][0]["sig"] = bytes(64)  # committed, yet invalid
            await node.replicator.propose(canonical(bad))
            await node.replicator.propose(canonical(good))
            await asyncio.sleep(0.3)
            assert node.chain.height == 0, "a block after the bad one must not be applied"
            ok, why = node.readiness()
            assert not ok and "height 1" in why and "entry 0" in why
            assert "invalid_block" in node.alarms
            assert node.cosigner.own == {}
            from api.service import Unavailable

            with pytest.raises(Unavailable):
                await node.service.submit([doc(one, node, 3)], "none")
        finally:
            await node.stop()

    asyncio.run(main())


def test_truncated_block_is_requeued_and_never_anchored_twice(one: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(one, "spc", tmp_path)
        a, b = doc(one, node, 10), doc(one, node, 11)
        ea, eb = (entry_id(node.chain.hash_alg, e["payload"]) for e in (a, b))
        builder = node.builder
        # Our block {a, b} was in flight at height 1 when another leader's block {b} took
        # height 1 (Raft truncated ours).
        builder.inflight = InFlight(1, b"\x00" * 32, 7, {ea: a, eb: b}, time.time())
        other, ohash = node.chain.build_block([b], 1)
        _, ids = node.chain.check(other)
        node.chain.append(other, ohash, ids, 1)
        builder.on_applied(1, ohash, ids)
        assert builder.inflight is None and list(builder.queue) == [ea]
        # A replay of b arriving now is answered from the chain, not queued again.
        builder.add(eb, b, len(canonical(b)))
        await node.start()
        try:
            for _ in range(50):
                if node.chain.height == 2 and not builder.queue:
                    break
                await asyncio.sleep(0.05)
            assert node.chain.height == 2
            assert node.chain.entry_location(ea) == (2, 1)
            assert node.chain.entry_location(eb) == (1, 0)
            assert node.chain.store.tree_size == 2
        finally:
            await node.stop()

    asyncio.run(main())


def _apply_one(node: Node, env: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    block, bhash = node.chain.build_block([env], 1)
    _, ids = node.chain.check(block)
    node.chain.append(block, bhash, ids, 1)
    return block["header"], bhash


def test_cosigner_detects_equivocation_and_keeps_evidence(three: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(three, "spc", tmp_path)
        try:
            header, bhash = _apply_one(node, doc(three, node, 20))
            await node.cosigner.on_applied(header, bhash, caught_up=False)
            chain_id = node.chain.chain_id
            cp = make_checkpoint(chain_id, 1, bhash, header["tree_size"], header["root"],
                                 header["time"])
            ji01 = Ed25519Signer.from_file(three / "keys" / "ji01.node.key")
            await node.cosigner.on_frame("ji01", canonical(
                {"cp": cp, "node": "ji01", "sig": sign_checkpoint(ji01, chain_id, cp)}))
            assert node.chain.cosigned(1), "spc + ji01 are a majority of 3"
            # A forged signature counts for nothing and proves nothing.
            other = dict(cp, block=b"\x01" * 32)
            await node.cosigner.on_frame("ji", canonical(
                {"cp": other, "node": "ji", "sig": sign_checkpoint(ji01, chain_id, other)}))
            assert node.cosigner.stopped is None
            ji = Ed25519Signer.from_file(three / "keys" / "ji.node.key")
            await node.cosigner.on_frame("ji", canonical(
                {"cp": other, "node": "ji", "sig": sign_checkpoint(ji, chain_id, other)}))
            assert node.cosigner.stopped and "equivocation" in node.alarms
            (ev,) = node.cosigner.evidence
            assert ev["format"] == "courtledger-equivocation/1"
            assert ev["second"]["checkpoint"]["block"] == "01" * 32
            assert ev["first"]["checkpoint"]["block"] == bhash.hex()
            assert list((tmp_path / "evidence").glob("equivocation-1-ji.json"))
            assert not node.readiness()[0]
            # After equivocation the node cosigns nothing more.
            header2, bhash2 = _apply_one(node, doc(three, node, 21))
            await node.cosigner.on_applied(header2, bhash2, caught_up=False)
            assert "spc" not in node.cosigner.sigs.get(2, {})
        finally:
            node.chain.close()

    asyncio.run(main())


def test_caught_up_voter_refuses_to_cosign_a_skewed_block(three: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(three, "spc", tmp_path)
        try:
            header, bhash = _apply_one(node, doc(three, node, 30))
            skewed = dict(header, time=header["time"] - 10 * 60 * 1000)
            await node.cosigner.on_applied(skewed, bhash, caught_up=True)
            assert "clock_skew" in node.alarms
            assert "spc" not in node.cosigner.sigs.get(1, {})
        finally:
            node.chain.close()

    asyncio.run(main())


def test_reopened_chain_resumes_at_its_head_with_the_state_in_force(
    one: Path, tmp_path: Path
) -> None:
    node = node_of(one, "spc", tmp_path)
    for i in range(3):
        _apply_one(node, doc(one, node, 40 + i))
    head = node.chain.store.head()
    node.chain.close()
    again = node_of(one, "spc", tmp_path)
    try:
        assert again.chain.store.head() == head
        assert again.chain.state.height == 3, "the state judges block 4 next"
        assert again.chain.applied_index == 1
    finally:
        again.chain.close()


def test_a_signature_admitted_here_is_not_verified_again_on_apply(
    one: Path, tmp_path: Path
) -> None:
    """The leader verifies a submission's signature at admission; applying the block that
    holds it reuses that result (node.chain.verified), and a block carrying the same entry
    with another signature is still refused on apply."""
    from node.admission import admit_batch

    node = node_of(one, "spc", tmp_path)
    try:
        env = doc(one, node, 40)
        eid = entry_id(node.chain.hash_alg, env["payload"])
        assert [a[0] for a in admit_batch(node.chain, [(0, eid, env)])] == [eid]
        assert node.chain.verified.hits == 0
        forged = dict(env, sig=bytes(64))
        bad, _ = node.chain.build_block([forged], 1)
        with pytest.raises(Exception, match="entry signature"):
            node.chain.check(bad)
        block, _ = node.chain.build_block([env], 1)
        _, ids = node.chain.check(block)
        assert ids == [eid] and node.chain.verified.hits == 1
    finally:
        node.chain.close()
