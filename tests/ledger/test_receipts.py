"""Receipts and consistency proofs, built from the store and verified offline.

Budget: under 3 s. The chain is checked with ``ledger.blocks.check_block`` before each append,
as a node would, so the membership changes here are valid ones (approved by a majority).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.blocks import check_block
from ledger.consortium import ConsortiumState
from ledger.crypto import sha256
from ledger.entries import entry_id, sign_approval
from ledger.errors import ReceiptError
from ledger.genesis import pem_certificate_der
from ledger.receipts import (
    build_consistency,
    verify_consistency_proof,
    verify_receipt,
    voters_after,
)
from ledger.store import LedgerStore
from tests.ledger.test_store import ChainBuilder


class Node:
    """A store fed the way a node feeds it: check validity, append, cosign."""

    def __init__(self, path: Path, world: Any) -> None:
        self.world = world
        self.chain = ChainBuilder(world)
        self.store = LedgerStore.open(path, world.genesis, create=True)
        self.state = ConsortiumState.from_genesis(world.genesis)
        self.states = {0: self.state}

    def block(self, entries: list[dict[str, Any]], cosigners: list[str] | None = None) -> int:
        block = self.chain.add(entries)
        check_block(
            self.state,
            self.world.chain_id,
            self.store.head()[1],
            block,
            log=self.store.shadow_log(),
            is_known=lambda eid: self.store.location(eid) is not None,
        )
        height = block["header"]["height"]
        self.store.append_block(block, raft_index=height)
        # Voters sign with the state in force AT this height, i.e. before this block's changes.
        voters = [n.id for n in self.state.voters()] if cosigners is None else cosigners
        cp = self.chain.checkpoint(height)
        self.store.put_checkpoint(cp, self.chain.sigs(cp, voters))
        self.state = self.state.apply_block(block)
        self.states[height] = self.state
        return height

    def membership(self, body: dict[str, Any]) -> dict[str, Any]:
        approvals = [
            sign_approval(
                self.chain.world_key(f"admin-{i}"), f"admin-{i}", self.world.chain_id, body
            )
            for i in (0, 1)
        ]
        return self.world.entry("admin-0", "membership", {**body, "approvals": approvals})


@pytest.fixture
def node(tmp_path: Path, world: Any) -> Node:
    n = Node(tmp_path / "db", world)
    yield n
    n.store.close()


def _pem(name: str) -> str:
    body = base64.b64encode(b"test certificate " + name.encode()).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(obj))
    return result


def test_receipt_verifies_and_says_what_it_proves(node: Node, world: Any) -> None:
    docs = node.chain.documents(3)
    node.block(docs)
    node.block(node.chain.documents(2))
    eid = entry_id(world.alg, docs[1]["payload"])
    receipt = _roundtrip(node.store.receipt(eid))
    assert receipt["format"] == "courtledger-receipt/1" and receipt["consortium"] == []
    facts = verify_receipt(receipt, world.genesis)
    assert facts.entry_id == eid and facts.kind == "document" and facts.court == "吉0102"
    assert facts.height == 1 and facts.leaf_index == 1 and facts.tree_size == 3
    assert facts.cosigners == ("node-a", "node-b", "node-c")
    assert facts.checkpoint_time == node.store.header(1)["time"]
    assert facts.envelope == docs[1]


def test_every_tampered_field_is_refused_and_named(node: Node, world: Any) -> None:
    docs = node.chain.documents(5)
    node.block(docs)
    good = _roundtrip(node.store.receipt(entry_id(world.alg, docs[2]["payload"])))
    verify_receipt(good, world.genesis)
    other_doc = base64.b64encode(
        base64.b64decode(
            _roundtrip(node.store.receipt(entry_id(world.alg, docs[3]["payload"])))["entry"]
        )
    ).decode()

    def flip_hex(h: str) -> str:
        return ("0" if h[0] != "0" else "1") + h[1:]

    cases: dict[str, tuple[str, Any]] = {
        "format": ("format", lambda r: r.update(format="courtledger-receipt/2")),
        "hash_alg": ("hash_alg", lambda r: r.update(hash_alg="sm3")),
        "extra key": ("receipt", lambda r: r.update(note="x")),
        "missing consortium": ("receipt", lambda r: r.pop("consortium")),
        "another entry": ("entry_id", lambda r: r.update(entry=other_doc)),
        "entry not base64": ("entry", lambda r: r.update(entry="!!" + r["entry"])),
        "entry id": ("entry_id", lambda r: r.update(entry_id=flip_hex(r["entry_id"]))),
        "leaf index + 1": ("inclusion_path", lambda r: r.update(leaf_index=3)),
        "leaf index - 1": ("inclusion_path", lambda r: r.update(leaf_index=1)),
        "negative leaf": ("leaf_index", lambda r: r.update(leaf_index=-1)),
        "path element": (
            "inclusion_path",
            lambda r: r["inclusion_path"].__setitem__(0, flip_hex(r["inclusion_path"][0])),
        ),
        "path dropped": ("inclusion_path", lambda r: r["inclusion_path"].pop()),
        "root": (
            "inclusion_path",
            lambda r: r["checkpoint"].update(root=flip_hex(r["checkpoint"]["root"])),
        ),
        "tree size": ("inclusion_path", lambda r: r["checkpoint"].update(tree_size=10)),
        "time": ("signatures", lambda r: r["checkpoint"].update(time=r["checkpoint"]["time"] + 1)),
        "other chain": ("checkpoint.chain", lambda r: r["checkpoint"].update(chain="ab" * 32)),
        "no signatures": ("signatures", lambda r: r.update(signatures=[])),
        "one signature": ("signatures", lambda r: r.update(signatures=r["signatures"][:1])),
        "bad signature": (
            "signatures",
            lambda r: [s.update(sig="00" * 64) for s in r["signatures"][1:]],
        ),
    }
    for name, (field, mutate) in cases.items():
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(ReceiptError) as info:
            verify_receipt(bad, world.genesis)
            pytest.fail(f"{name} verified")
        assert info.value.field is not None and info.value.field.startswith(field), (
            name,
            info.value.diagnostics(),
        )


def test_duplicates_and_non_voters_do_not_reach_a_quorum(node: Node, world: Any) -> None:
    docs = node.chain.documents(1)
    node.block(docs, cosigners=["node-a"])
    receipt = _roundtrip(node.store.receipt(entry_id(world.alg, docs[0]["payload"])))
    one = receipt["signatures"][0]
    # node-a five times plus a correct signature by a key that is not a voter's.
    cp = node.chain.checkpoint(1)
    outsider = node.chain.sigs(cp, ["node-z"])[0]
    receipt["signatures"] = [one] * 5 + [
        {"node": "node-z", "sig": outsider["sig"].hex()},
        {"node": "node-b", "sig": outsider["sig"].hex()},
    ]
    with pytest.raises(ReceiptError, match="1 valid signatures") as info:
        verify_receipt(receipt, world.genesis)
    assert info.value.field == "signatures"
    # node-b's own signature is what makes the quorum.
    receipt["signatures"].append(
        {"node": "node-b", "sig": node.chain.sigs(cp, ["node-b"])[0]["sig"].hex()}
    )
    assert verify_receipt(receipt, world.genesis).cosigners == ("node-a", "node-b")


def test_receipt_past_membership_changes_needs_its_consortium_proofs(
    node: Node, world: Any
) -> None:
    pem = _pem("node-d")
    pk = node.chain.world_key("node-d").public_key()
    add = {
        "op": "add_learner",
        "id": "node-d",
        "court": "吉0103",
        "public_key": pk,
        "tls_certificate": pem,
        "tls_fingerprint": sha256(pem_certificate_der(pem)),
        "raft_addr": "127.0.0.1:7003",
    }
    h1 = node.block([node.membership(add)])
    h2 = node.block([node.membership({"op": "promote", "id": "node-d", "court": "吉0103"})])
    h3 = node.block([node.membership({"op": "remove", "id": "node-a", "court": "吉0102"})])
    assert [n.id for n in node.state.voters()] == ["node-b", "node-c", "node-d"]
    node.chain.proposer = "node-b"  # node-a is no longer a member
    docs = node.chain.documents(2)
    # Only the new voters sign: under the genesis voters that is 2 of 3 minus node-d = 1.
    h4 = node.block(docs, cosigners=["node-c", "node-d"])
    assert (h1, h2, h3, h4) == (1, 2, 3, 4)
    assert node.store.state_change_entries() == [(1, 0), (2, 1), (3, 2)]
    assert node.store.membership_entries(below_height=3) == [(1, 0), (2, 1)]
    eid = entry_id(world.alg, docs[0]["payload"])
    receipt = _roundtrip(node.store.receipt(eid))
    assert len(receipt["consortium"]) == 3
    facts = verify_receipt(receipt, world.genesis)
    assert facts.cosigners == ("node-c", "node-d")
    assert facts.voters == ("node-b", "node-c", "node-d")
    assert voters_after(world.genesis, receipt["consortium"], 4).voters() == node.state.voters()

    without = _roundtrip(node.store.receipt(eid, consortium_proofs=False))
    with pytest.raises(ReceiptError) as info:
        verify_receipt(without, world.genesis)
    assert info.value.field == "signatures"

    def variant(mutate: Any) -> dict[str, Any]:
        r = copy.deepcopy(receipt)
        mutate(r)
        return r

    broken = {
        "dropped promote": (variant(lambda r: r["consortium"].pop(1)), "signatures"),
        "reordered": (variant(lambda r: r["consortium"].reverse()), "consortium[1].checkpoint"),
        "element signed by one": (
            variant(
                lambda r: r["consortium"][1].update(signatures=r["consortium"][1]["signatures"][:1])
            ),
            "consortium[1].signatures",
        ),
        "element path": (
            variant(lambda r: r["consortium"][0]["checkpoint"].update(tree_size=2)),
            "consortium[0]",
        ),
        "a document as a change": (
            variant(lambda r: r["consortium"][2].update(entry=r["entry"])),
            "consortium[2].entry",
        ),
    }
    for name, (bad, field) in broken.items():
        with pytest.raises(ReceiptError) as info:
            verify_receipt(bad, world.genesis)
            pytest.fail(f"{name} verified")
        assert info.value.field is not None and info.value.field.startswith(field), (
            name,
            info.value.diagnostics(),
        )


def test_receipt_is_checked_against_the_pinned_genesis_only(node: Node, world: Any, h: Any) -> None:
    docs = node.chain.documents(1)
    node.block(docs)
    receipt = _roundtrip(node.store.receipt(entry_id(world.alg, docs[0]["payload"])))
    other = h.make_test_genesis("sm3")
    with pytest.raises(ReceiptError) as info:
        verify_receipt(receipt, other)
    assert info.value.field == "hash_alg"
    import dataclasses

    renamed = dataclasses.replace(world.genesis, chain_name="courtledger-other")
    with pytest.raises(ReceiptError) as info:
        verify_receipt(receipt, renamed)
    assert info.value.field == "entry"  # signed for another chain id


def test_no_receipt_before_a_checkpoint(tmp_path: Path, world: Any) -> None:
    chain = ChainBuilder(world)
    with LedgerStore.open(tmp_path / "db", world.genesis, create=True) as store:
        docs = chain.documents(1)
        store.append_block(chain.add(docs), raft_index=1)
        with pytest.raises(ReceiptError, match="no checkpoint"):
            store.receipt(entry_id(world.alg, docs[0]["payload"]))
        with pytest.raises(ReceiptError, match="no entry"):
            store.receipt(b"\x00" * 32)


def test_consistency_proof_file(node: Node, world: Any) -> None:
    for n in (3, 1, 4, 2, 5):
        node.block(node.chain.documents(n))
    proof = _roundtrip(build_consistency(node.store, 2, 5))
    facts = verify_consistency_proof(proof, world.genesis)
    assert (facts.first_size, facts.second_size) == (4, 15)
    bad = copy.deepcopy(proof)
    bad["path"][0] = "00" * 32
    with pytest.raises(ReceiptError) as info:
        verify_consistency_proof(bad, world.genesis)
    assert info.value.field == "path"
    swapped = {**proof, "first": proof["second"], "second": proof["first"]}
    with pytest.raises(ReceiptError):
        verify_consistency_proof(swapped, world.genesis)
    unsigned = copy.deepcopy(proof)
    unsigned["second"]["signatures"] = []
    with pytest.raises(ReceiptError) as info:
        verify_consistency_proof(unsigned, world.genesis)
    assert info.value.field == "second.signatures"


def _mutations(obj: Any, rng: Any) -> Any:
    """A copy of a JSON value with one randomly chosen node replaced by something else."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            paths.append((node, k))
            if isinstance(v, dict | list):
                walk(v)

    out = copy.deepcopy(obj)
    walk(out)
    parent, k = rng.choice(paths)
    parent[k] = rng.choice(
        [
            None,
            0,
            -1,
            2**70,
            1.5,
            True,
            "",
            "zz",
            "00" * 32,
            [],
            {},
            [1],
            {"a": 1},
            str(parent[k])[::-1],
            "AAAA",
        ]
    )
    return out


def test_hostile_receipts_only_raise_receipt_errors(node: Node, world: Any) -> None:
    import random

    pem = _pem("node-d")
    pk = node.chain.world_key("node-d").public_key()
    add = {
        "op": "add_learner",
        "id": "node-d",
        "court": "吉0103",
        "public_key": pk,
        "tls_certificate": pem,
        "tls_fingerprint": sha256(pem_certificate_der(pem)),
        "raft_addr": "127.0.0.1:7003",
    }
    node.block([node.membership(add)])
    docs = node.chain.documents(2)
    node.block(docs)
    good = _roundtrip(node.store.receipt(entry_id(world.alg, docs[0]["payload"])))
    verify_receipt(good, world.genesis)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(400):
        bad = _mutations(good, rng)
        try:
            verify_receipt(bad, world.genesis)
        except ReceiptError:
            continue
        except Exception as exc:  # the point of the test: nothing else escapes
            pytest.fail(f"seed {seed}: {type(exc).__name__} escaped for {bad!r}")
