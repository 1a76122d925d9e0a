"""Chain verification from genesis: every bad height and entry reported, checkpoints counted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ledger.blocks import block_hash, build_block, sign_block
from ledger.chain import ChainVerifier, verify_chain
from ledger.checkpoints import make_checkpoint, sign_checkpoint
from ledger.consortium import ConsortiumState
from ledger.crypto import H, sha256
from ledger.entries import sign_approval
from ledger.genesis import pem_certificate_der
from ledger.merkle import MerkleLog


class Builder:
    """Builds blocks the way an honest (or, when told, a careless) leader would."""

    def __init__(self, world: Any, h: SimpleNamespace) -> None:
        self.w, self.h = world, h
        self.header = world.genesis.header
        self.log = MerkleLog(world.alg)
        self.blocks: list[dict[str, Any]] = []
        self.state = ConsortiumState.from_genesis(world.genesis)

    def block(self, entries: list[dict[str, Any]], proposer: str = "node-a") -> dict[str, Any]:
        b = build_block(
            self.h.key(proposer),
            self.w.chain_id,
            self.header,
            entries,
            log=self.log,
            time=self.header["time"] + 1000,
            proposer=proposer,
            term=1,
        )
        for e in entries:
            from ledger.blocks import entry_leaf

            self.log.append(entry_leaf(self.w.alg, e))
        self.header = b["header"]
        self.blocks.append(b)
        return b

    def checkpoint(self, height: int, *signers: str) -> tuple[dict[str, Any], list[Any]]:
        hdr = self.w.genesis.header if height == 0 else self.blocks[height - 1]["header"]
        cp = make_checkpoint(
            self.w.chain_id,
            height,
            block_hash(self.w.alg, hdr),
            hdr["tree_size"],
            hdr["root"],
            hdr["time"],
        )
        sigs = [
            {"node": s, "sig": sign_checkpoint(self.h.key(s), self.w.chain_id, cp)} for s in signers
        ]
        return cp, sigs


@pytest.fixture
def b(world: Any, h: SimpleNamespace) -> Builder:
    return Builder(world, h)


def test_valid_chain(b: Builder, world: Any) -> None:
    for n in range(5):
        b.block([world.document(n=10 * n + i) for i in range(3)])
    cps = [b.checkpoint(3, "node-a", "node-b"), b.checkpoint(5, "node-a", "node-b", "node-c")]
    report = verify_chain(world.genesis, b.blocks, cps, pinned_chain_id=world.chain_id)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.height, report.blocks, report.entries, report.tree_size) == (5, 5, 15, 15)
    assert report.root == b.header["root"] == b.log.root()
    assert report.checkpoints == 2 and report.last_checkpoint is not None
    assert report.last_checkpoint["height"] == 5


def test_pinned_chain_id_mismatch(b: Builder, world: Any) -> None:
    b.block([world.document()])
    report = verify_chain(world.genesis, b.blocks, pinned_chain_id=H("sha256", b"other"))
    assert [p.height for p in report.problems] == [0]
    assert "not the pinned" in report.problems[0].what
    assert not ChainVerifier(world.genesis).pinned


def test_every_bad_entry_reported_and_chain_followed(b: Builder, world: Any) -> None:
    b.block([world.document(n=0)])
    # A careless leader puts invalid entries in blocks 2 and 4 (its header and root are honest).
    b.block([world.document(n=1), world.entry("clerk-0", "event", {"type": "X"})])
    b.block([world.document(n=2)])
    foreign = world.document(n=3, chain_id=H("sha256", b"other"))
    b.block([world.document(n=4), world.document(n=5), foreign])
    b.block([world.document(n=6)])
    v = ChainVerifier(world.genesis, pinned_chain_id=world.chain_id)
    per_block = [v.add_block(block) for block in b.blocks]
    assert [len(p) for p in per_block] == [0, 1, 0, 1, 0]
    report = v.report()
    assert [(p.height, p.index) for p in report.problems] == [(2, 1), (4, 2)]
    assert "may not sign event" in report.problems[0].what
    assert "entry signature" in report.problems[1].what
    assert report.height == 5 and report.tree_size == 8
    assert "height 2, entry 1" in str(report.problems[0])


def test_tampered_header_and_entry(b: Builder, world: Any, h: SimpleNamespace) -> None:
    for n in range(4):
        b.block([world.document(n=n)])
    blocks = [dict(x) for x in b.blocks]
    # Height 2: an entry's signature flipped in storage (its leaf, so the root, changes too).
    env = dict(blocks[1]["entries"][0])
    env["sig"] = bytes(64)
    blocks[1] = {**blocks[1], "entries": [env]}
    report = verify_chain(world.genesis, blocks)
    heights = [p.height for p in report.problems]
    assert (2, 0) in [(p.height, p.index) for p in report.problems]
    assert min(heights) == 2
    # Later roots were computed over the original leaf: each later block's root is reported.
    assert all("root" in p.what for p in report.problems if p.index is None)
    # Height 3 re-signed with a different time: its hash changes, so height 4's link breaks.
    blocks = [dict(x) for x in b.blocks]
    hdr = {**blocks[2]["header"], "time": blocks[2]["header"]["time"] + 1}
    blocks[2] = sign_block(h.key("node-a"), world.chain_id, hdr, blocks[2]["entries"])
    report = verify_chain(world.genesis, blocks)
    assert [(p.height, "hash link" in p.what) for p in report.problems] == [(4, True)]


def test_malformed_block_reported(b: Builder, world: Any) -> None:
    b.block([world.document()])
    v = ChainVerifier(world.genesis)
    assert v.add_block({"nonsense": 1})
    assert v.add_block(b.blocks[0]) == []
    assert v.report().height == 1


def test_checkpoint_quorums(b: Builder, world: Any, h: SimpleNamespace) -> None:
    for n in range(3):
        b.block([world.document(n=n)])
    v = ChainVerifier(world.genesis)
    for block in b.blocks:
        v.add_block(block)
    assert v.add_checkpoint(*b.checkpoint(2, "node-a", "node-c")) == []
    assert v.add_checkpoint(*b.checkpoint(0, "node-b", "node-c")) == []
    one = v.add_checkpoint(*b.checkpoint(3, "node-a"))
    assert one and "1 valid voter signatures" in one[0].what and one[0].height == 3
    cp, sigs = b.checkpoint(3, "node-a")
    assert v.add_checkpoint(cp, sigs + sigs)  # duplicates by one node count once
    cp, sigs = b.checkpoint(3, "node-a")
    stranger = {"node": "node-x", "sig": sign_checkpoint(h.key("node-x"), world.chain_id, cp)}
    assert v.add_checkpoint(cp, [*sigs, stranger])  # a non-voter counts for nothing
    cp, sigs = b.checkpoint(3, "node-a", "node-b")
    bad = {**cp, "root": bytes(32)}
    assert "root differ" in v.add_checkpoint(bad, sigs)[0].what
    assert "beyond" in v.add_checkpoint({**cp, "height": 9, "tree_size": 9}, sigs)[0].what
    assert "names chain" in v.add_checkpoint({**cp, "chain": bytes(32)}, sigs)[0].what
    assert "fields wrong" in v.add_checkpoint({"v": 1}, sigs)[0].what
    assert v.report().checkpoints == 2


def _member(world: Any, h: SimpleNamespace, body: dict[str, Any]) -> dict[str, Any]:
    approvals = [sign_approval(h.key(a), a, world.chain_id, body) for a in ("admin-0", "admin-1")]
    return world.entry("admin-0", "membership", {**body, "approvals": approvals})


def test_membership_history_and_voters_over_time(
    b: Builder, world: Any, h: SimpleNamespace
) -> None:
    pem = h.fake_pem("node-d")
    add = {
        "op": "add_learner",
        "id": "node-d",
        "court": "沪01",
        "public_key": h.key("node-d").public_key(),
        "tls_certificate": pem,
        "tls_fingerprint": sha256(pem_certificate_der(pem)),
        "raft_addr": "127.0.0.1:7003",
    }
    b.block([world.document(n=0)])
    b.block([_member(world, h, add)])  # height 2
    b.block([_member(world, h, {"op": "promote", "id": "node-d", "court": "沪01"})])  # height 3
    b.block([world.document(n=1)], proposer="node-d")  # height 4: node-d now proposes
    v = ChainVerifier(world.genesis)
    for block in b.blocks:
        assert v.add_block(block) == []
    assert [(m.height, m.op, m.node) for m in v.membership] == [
        (2, "add_learner", "node-d"),
        (3, "promote", "node-d"),
    ]
    assert [n for n, _ in v.voters_at(3)] == ["node-a", "node-b", "node-c"]
    assert [n for n, _ in v.voters_at(4)] == ["node-a", "node-b", "node-c", "node-d"]
    # At height 3, 2 of 3 voters suffice; at height 4, a majority of 4 is 3.
    assert v.add_checkpoint(*b.checkpoint(3, "node-a", "node-b")) == []
    assert v.add_checkpoint(*b.checkpoint(4, "node-a", "node-d"))
    assert v.add_checkpoint(*b.checkpoint(4, "node-a", "node-b", "node-d")) == []
    # node-d's signature counts nothing before it was a voter.
    assert v.add_checkpoint(*b.checkpoint(3, "node-a", "node-d"))


def test_invalid_membership_is_not_applied(b: Builder, world: Any, h: SimpleNamespace) -> None:
    body = {"op": "promote", "id": "node-a", "court": h.COURTS[0]}
    b.block([_member(world, h, body)])  # node-a already votes: invalid, and ignored
    report = verify_chain(world.genesis, b.blocks)
    assert [(p.height, p.index) for p in report.problems] == [(1, 0)]
    assert report.membership == []


def test_compromised_key_warning(b: Builder, world: Any, h: SimpleNamespace) -> None:
    b.block([world.document("clerk-0", n=0)])  # timed GENESIS + 1000
    since = world.genesis.genesis_time + 1500
    b.block([world.document("clerk-0", n=1)])  # GENESIS + 2000: after compromised_since
    b.block(
        [
            world.entry(
                "admin-0",
                "identity",
                {
                    "op": "revoke",
                    "id": "clerk-0",
                    "court": h.COURTS[0],
                    "public_key": h.key("clerk-0").public_key(),
                    "compromised_since": since,
                },
            )
        ]
    )
    report = verify_chain(world.genesis, b.blocks)
    assert report.ok
    assert [(w.height, w.index) for w in report.warnings] == [(3, 0)]
    assert "clerk-0's key" in report.warnings[0].what
    assert "blocks 2..3" in report.warnings[0].what


def test_bundle_start(world: Any) -> None:
    v = ChainVerifier.from_bundle_start(
        world.genesis.block, world.genesis.consortium, pinned_chain_id=world.chain_id
    )
    assert v.problems == []
    tampered = {**world.genesis.block, "sig": b"x"}
    v = ChainVerifier.from_bundle_start(tampered, world.genesis.consortium)
    assert v.problems and v.problems[0].height == 0


def test_sm3_chain(sm3_world: Any, h: SimpleNamespace) -> None:
    b = Builder(sm3_world, h)
    for n in range(3):
        b.block([sm3_world.document(n=n)])
    cp = b.checkpoint(3, "node-a", "node-b")
    report = verify_chain(sm3_world.genesis, b.blocks, [cp], pinned_chain_id=sm3_world.chain_id)
    assert report.ok and report.checkpoints == 1 and report.hash_alg == "sm3"
