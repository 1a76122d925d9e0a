"""Blocks: header rules, proposer signatures, entries at their height, Merkle roots (DESIGN §2)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ledger.blocks import (
    block_hash,
    build_block,
    check_block,
    entry_leaf,
    examine_block,
    preview_root,
    sign_block,
)
from ledger.chain import ChainVerifier
from ledger.consortium import ConsortiumState
from ledger.crypto import H, sha256
from ledger.encoding import canonical
from ledger.entries import entry_id, sign_approval
from ledger.errors import ValidityError
from ledger.genesis import Params, pem_certificate_der
from ledger.merkle import MerkleLog, leaf_hash


class Chain:
    """A growing valid chain: state, last header, log and known ids, as a node keeps them."""

    def __init__(self, world: Any, h: SimpleNamespace) -> None:
        self.w, self.h = world, h
        self.state = ConsortiumState.from_genesis(world.genesis)
        self.header = world.genesis.header
        self.log = MerkleLog(world.alg)
        self.known: set[bytes] = set()

    def build(
        self,
        entries: list[dict[str, Any]],
        *,
        proposer: str = "node-a",
        time: int | None = None,
        term: int = 1,
    ) -> dict[str, Any]:
        return build_block(
            self.h.key(proposer),
            self.w.chain_id,
            self.header,
            entries,
            log=self.log,
            time=self.header["time"] + 1000 if time is None else time,
            proposer=proposer,
            term=term,
        )

    def check(self, block: dict[str, Any]) -> list[bytes]:
        return check_block(
            self.state,
            self.w.chain_id,
            self.header,
            block,
            log=self.log,
            is_known=self.known.__contains__,
        )

    def add(self, block: dict[str, Any]) -> list[bytes]:
        ids = self.check(block)
        self.known.update(ids)
        self.state = self.state.apply_block(block)
        self.header = block["header"]
        return ids

    def refused(self, block: dict[str, Any], needle: str) -> ValidityError:
        size = self.log.size
        with pytest.raises(ValidityError) as err:
            self.check(block)
        assert needle in err.value.detail, err.value.detail
        if "root" not in needle:
            assert self.log.size == size, "a refused block must leave the log untouched"
        return err.value

    def resign(self, block: dict[str, Any], by: str = "node-a", **header: Any):
        """The block with header fields changed and signed again by node ``by``'s key."""
        return sign_block(
            self.h.key(by), self.w.chain_id, {**block["header"], **header}, block["entries"]
        )


@pytest.fixture
def chain(world: Any, h: SimpleNamespace) -> Chain:
    return Chain(world, h)


def test_valid_blocks_and_roots(chain: Chain, world: Any) -> None:
    all_leaves = []
    for n in range(4):
        entries = [world.document(n=10 * n + i) for i in range(n + 1)]
        block = chain.build(entries)
        ids = chain.add(block)
        assert ids == [entry_id("sha256", e["payload"]) for e in entries]
        all_leaves += [leaf_hash(canonical(e), "sha256") for e in entries]
        assert block["header"]["tree_size"] == len(all_leaves) == chain.log.size
    ref = MerkleLog("sha256")
    for leaf in all_leaves:
        ref.append(leaf)
    assert chain.header["root"] == ref.root()
    assert chain.header["height"] == 4
    assert chain.header["prev"] != bytes(32)


def test_block_hash_links(chain: Chain, world: Any) -> None:
    b1 = chain.build([world.document()])
    assert b1["header"]["prev"] == world.chain_id == block_hash("sha256", world.genesis.header)
    chain.add(b1)
    b2 = chain.build([world.document(n=1)])
    assert b2["header"]["prev"] == block_hash("sha256", b1["header"])


def test_preview_root_leaves_log_alone(chain: Chain, world: Any) -> None:
    chain.add(chain.build([world.document()]))
    size, root = chain.log.size, chain.log.root()
    leaf = entry_leaf("sha256", world.document(n=5))
    preview = preview_root(chain.log, [leaf])
    assert (chain.log.size, chain.log.root()) == (size, root)
    chain.log.append(leaf)
    assert chain.log.root() == preview


# ------------------------------------------------------------------------------ header rules


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"height": 2}, "does not follow"),
        ({"prev": bytes(32)}, "hash link broken"),
        ({"time": 1}, "before the previous block"),
        ({"first_index": 1}, "first_index"),
        ({"count": 2}, "count 2 but 1 entries"),
        ({"tree_size": 2}, "tree_size is not"),
        ({"root": bytes(32)}, "root is not the Merkle root"),
        ({"v": 2}, "version"),
        ({"proposer": 5}, "proposer must be a string"),
        ({"height": -1}, "non-negative"),
    ],
)
def test_header_rules(chain: Chain, world: Any, change: dict[str, Any], needle: str) -> None:
    block = chain.build([world.document()])
    chain.refused(chain.resign(block, **change), needle)


def test_term_never_decreases(chain: Chain, world: Any) -> None:
    chain.add(chain.build([world.document()], term=3))
    chain.refused(chain.build([world.document(n=1)], term=2), "term 2 is below")


def test_header_unknown_key(chain: Chain, world: Any) -> None:
    block = chain.build([world.document()])
    chain.refused(chain.resign(block, extra=1), "header keys must be exactly")


def test_empty_block_refused(chain: Chain) -> None:
    chain.refused(chain.build([]), "at least 1")


def test_block_shape(chain: Chain, world: Any) -> None:
    block = chain.build([world.document()])
    chain.refused({**block, "x": 1}, "exactly header, sig, entries")
    chain.refused({**block, "entries": {}}, "entries must be a list")


# ---------------------------------------------------------------------------- the proposer


def test_wrong_block_signature(chain: Chain, world: Any) -> None:
    block = chain.build([world.document()])
    block["sig"] = bytes(64)
    chain.refused(block, "block signature")


def test_block_signed_for_another_chain(chain: Chain, world: Any, h: SimpleNamespace) -> None:
    block = chain.build([world.document()])
    other = sign_block(h.key("node-a"), H("sha256", b"other"), block["header"], block["entries"])
    chain.refused(other, "block signature")


def test_proposer_must_be_a_voter(chain: Chain, world: Any, h: SimpleNamespace) -> None:
    block = chain.build([world.document()])
    chain.refused(chain.resign(block, proposer="node-b"), "block signature")  # key of node-a
    chain.refused(chain.build([world.document()], proposer="node-x"), "not a voting node")
    # An identity's key is no node's key.
    chain.refused(chain.build([world.document()], proposer="admin-0"), "not a voting node")


# ------------------------------------------------------------------------------- entry rules


def test_invalid_entry_names_height_and_index(chain: Chain, world: Any) -> None:
    chain.add(chain.build([world.document()]))
    bad = world.document(n=2)
    bad["sig"] = bytes(64)
    err = chain.refused(
        chain.build([world.document(n=1), world.document(n=3), bad]), "entry signature"
    )
    assert (err.height, err.index) == (2, 2)


def test_duplicate_entries(chain: Chain, world: Any) -> None:
    doc = world.document()
    chain.refused(chain.build([doc, doc]), "already in the chain")
    chain.add(chain.build([doc]))
    chain.refused(chain.build([doc]), "already in the chain")


def test_block_limits(h: SimpleNamespace) -> None:
    w = h.World(h.make_test_genesis(params=Params(max_block_entries=2, max_block_bytes=2048)))
    c = Chain(w, h)
    c.refused(c.build([w.document(n=i) for i in range(3)]), "exceed max_block_entries 2")
    big = w.entry("clerk-0", "document", {"title": "x" * 1200})
    big2 = w.entry("clerk-0", "document", {"title": "y" * 1200})
    c.refused(c.build([big, big2]), "exceeds max_block_bytes 2048")
    c.add(c.build([big]))


def test_admission_refusals_never_make_a_block_invalid(chain: Chain, world: Any) -> None:
    # A half-width, spaced 案号 and a document body missing every field admission wants.
    odd = world.entry(
        "clerk-0", "document", {"doc_no": "(2026) 吉0102执1号"}, case="(2026)吉0102执1号"
    )
    event = world.entry("officer-0", "event", {"type": "NO_SUCH_TYPE", "fields": {"x": b"y"}})
    chain.add(chain.build([odd, event]))


def _learner(world: Any, h: SimpleNamespace, node_id: str) -> dict[str, Any]:
    pem = h.fake_pem(node_id)
    body = {
        "op": "add_learner",
        "id": node_id,
        "court": "沪01",
        "public_key": h.key(node_id).public_key(),
        "tls_certificate": pem,
        "tls_fingerprint": sha256(pem_certificate_der(pem)),
        "raft_addr": "127.0.0.1:7009",
    }
    approvals = [sign_approval(h.key(a), a, world.chain_id, body) for a in ("admin-0", "admin-1")]
    return world.entry("admin-0", "membership", {**body, "approvals": approvals})


def test_at_most_one_membership_entry(chain: Chain, world: Any, h: SimpleNamespace) -> None:
    chain.refused(
        chain.build([_learner(world, h, "node-d"), _learner(world, h, "node-e")]),
        "second membership entry",
    )
    chain.add(chain.build([_learner(world, h, "node-d")]))
    node = chain.state.node("node-d")
    assert node is not None and node.role == "learner"
    # A learner cannot propose.
    chain.refused(chain.build([world.document()], proposer="node-d"), "not a voting node")


def test_one_claim_per_block(chain: Chain, world: Any, h: SimpleNamespace) -> None:
    def add(ident: str, key: str) -> dict[str, Any]:
        return world.entry(
            "admin-0",
            "identity",
            {
                "op": "add",
                "id": ident,
                "court": h.COURTS[0],
                "roles": ["clerk"],
                "public_key": h.key(key).public_key(),
            },
        )

    chain.refused(chain.build([add("c-1", "k-1"), add("c-1", "k-2")]), "id also claimed")
    chain.refused(chain.build([add("c-1", "k-1"), add("c-2", "k-1")]), "key also claimed")
    chain.add(chain.build([add("c-1", "k-1"), add("c-2", "k-2")]))


def test_revocation_takes_effect_from_the_next_block(
    chain: Chain, world: Any, h: SimpleNamespace
) -> None:
    revoke = world.entry(
        "admin-0",
        "identity",
        {
            "op": "revoke",
            "id": "clerk-0",
            "court": h.COURTS[0],
            "public_key": h.key("clerk-0").public_key(),
        },
    )
    chain.add(chain.build([revoke, world.document("clerk-0", n=1)]))  # same block: still valid
    err = chain.refused(chain.build([world.document("clerk-0", n=2)]), "revoked key")
    assert (err.height, err.index) == (2, 0)


def test_sm3_chain(sm3_world: Any, h: SimpleNamespace) -> None:
    c = Chain(sm3_world, h)
    for n in range(3):
        c.add(c.build([sm3_world.document(n=n), sm3_world.document(n=n + 100)]))
    ref = MerkleLog("sm3")
    assert c.header["root"] != ref.root()
    assert c.log.root() == c.header["root"]
    # A SHA-256 leaf would not give this root.
    wrong = MerkleLog("sha256")
    assert wrong.root() != ref.root()


# --------------------------------------------------------------------------- examine_block


def test_examine_block_collects_every_problem(chain: Chain, world: Any) -> None:
    bad1, bad2 = world.document(n=1), world.document(n=2)
    bad1["sig"] = bytes(64)
    bad2["payload"]["court"] = "沪01"
    block = chain.build([world.document(n=0), bad1, bad2])
    block = chain.resign(block, time=chain.header["time"] - 1)
    result = examine_block(
        chain.state,
        world.chain_id,
        chain.header,
        block,
        log=chain.log,
        is_known=chain.known.__contains__,
    )
    where = [(p.index, p.detail.split(" ")[0]) for p in result.problems]
    assert (None, "time") in where
    assert {p.index for p in result.problems} >= {1, 2}
    assert result.valid == [True, False, False]
    assert result.appended and chain.log.size == 3  # auditors keep following the log
    assert all(p.height == 1 for p in result.problems)


# ------------------------------------------------------------------------------------ fuzzing

_JUNK: list[Any] = [True, -1, 2**64 - 1, "", "x", b"", b"x" * 32, [], [1], {}, {"a": 1}]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    if isinstance(obj, dict):
        return {**obj, path[0]: _replace(obj[path[0]], path[1:], value)}
    copy = list(obj)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)
    return copy


def test_junk_anywhere_in_a_block_is_a_validity_problem(chain: Chain, world: Any) -> None:
    # Header fields are re-signed so the checks behind the proposer signature see the junk.
    block = chain.build([world.document(n=0), world.document(n=1)])
    chain.check(block)  # the unmutated block is valid
    fresh = Chain(world, chain.h)
    for path in _paths(block):
        if path[:1] == ("entries",) and len(path) > 3:
            continue  # entry internals: tests/ledger/test_entries.py replaces every field
        for junk in _JUNK:
            mutated = _replace(block, path, junk)
            if path[:1] == ("header",) and len(path) == 2:
                mutated = fresh.resign(mutated)
            log = MerkleLog(world.alg)
            result = examine_block(
                fresh.state,
                world.chain_id,
                fresh.header,
                mutated,
                log=log,
                is_known=lambda _e: False,
            )
            assert all(isinstance(p, ValidityError) for p in result.problems)
            try:  # some junk is valid: a block timed far ahead is a liveness alarm only
                check_block(
                    fresh.state,
                    world.chain_id,
                    fresh.header,
                    mutated,
                    log=MerkleLog(world.alg),
                    is_known=lambda _e: False,
                )
            except ValidityError:
                pass
            verifier = ChainVerifier(world.genesis)
            verifier.add_block(mutated)  # reports, never raises
            verifier.add_block(block)
