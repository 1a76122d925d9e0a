"""A realistic chain built with the real ledger code, for the auditor's tests.

Three voting courts (吉0102, 吉0103, 吉01) with admins, clerks, officers, judges and an
inspector; a synthetic enforcement workload (``verifier.synth.demo_items``: documents, flow
events, on-site evidence) signed by each court's officer; an identity revocation; a
membership change that adds a fourth court's node as a voter (add_learner with its admin,
then promote) and later removes a voter, each approved by admins of a majority of the voting
courts (DESIGN §2). Every block is cosigned by all voters in force at its height. The chain is
written both as a chain bundle and as a LevelDB data dir through ``LedgerStore``.

Keys derive from names, so everything is deterministic; the chain is built once per session.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.blocks import build_block, entry_leaf
from ledger.bundle import BundleWriter
from ledger.checkpoints import make_checkpoint, sign_checkpoint
from ledger.consortium import ConsortiumState
from ledger.crypto import Ed25519Signer, hash_object, sha256
from ledger.entries import make_payload, sign_approval, sign_entry
from ledger.genesis import (
    DEFAULT_PARAMS,
    DEFAULT_ROLES,
    Genesis,
    IdentitySpec,
    NodeSpec,
    dump_genesis,
    make_genesis,
    pem_certificate_der,
)
from ledger.merkle import MerkleLog
from ledger.store import LedgerStore

GENESIS_TIME = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COURTS = ("吉0102", "吉0103", "吉01")
NODES = ("node-a", "node-b", "node-c")
NEW_COURT = "沪01"


def key(name: str) -> Ed25519Signer:
    """A deterministic key for ``name``."""
    return Ed25519Signer(hashlib.sha256(b"courtledger audit test " + name.encode()).digest())


def fake_pem(name: str) -> str:
    """PEM armour around deterministic bytes (genesis checks only armour and fingerprint)."""
    body = base64.b64encode(b"audit test certificate " + name.encode()).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def node_spec(name: str, court: str, port: int) -> NodeSpec:
    pem = fake_pem(name)
    return NodeSpec(id=name, court=court, public_key=key(name).public_key(),
                    tls_certificate=pem, tls_fingerprint=sha256(pem_certificate_der(pem)),
                    role="voter", raft_addr=f"127.0.0.1:{port}")


def make_test_genesis(chain_name: str = "courtledger-audit-test") -> Genesis:
    """The three-court consortium."""
    identities = []
    for i, court in enumerate(COURTS):
        for role in ("admin", "clerk", "officer", "judge"):
            identities.append(IdentitySpec(id=f"{role}-{i}", court=court, roles=(role,),
                                           public_key=key(f"{role}-{i}").public_key()))
    identities.append(IdentitySpec(id="inspector-0", court=COURTS[0], roles=("inspector",),
                                   public_key=key("inspector-0").public_key()))
    return make_genesis(
        chain_name=chain_name, hash_alg="sha256", genesis_time=GENESIS_TIME,
        nodes=[node_spec(n, c, 7000 + i) for i, (n, c) in enumerate(zip(NODES, COURTS,
                                                                           strict=True))],
        identities=identities, params=DEFAULT_PARAMS, roles=DEFAULT_ROLES,
    )


@dataclass
class Chain:
    """A built chain: blocks, checkpoints with signatures, and facts the tests ask about."""

    genesis: Genesis
    blocks: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    heights: dict[str, int] = field(default_factory=dict)  # named events → height
    entry_ids: list[bytes] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    bundle: Path | None = None
    data: Path | None = None
    genesis_file: Path | None = None


class Builder:
    """Builds blocks the way a leader would (``ledger.blocks.build_block``), no checks."""

    def __init__(self, genesis: Genesis) -> None:
        self.g = genesis
        self.chain = Chain(genesis)
        self.log = MerkleLog(genesis.hash_alg)
        self.prev = genesis.header
        self.state = ConsortiumState.from_genesis(genesis)
        self.n = 0
        self.proposer = "node-a"

    def nonce(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(16, "big")

    def entry(self, who: str, court: str, kind: str, body: dict[str, Any], *,
              case: str | None = None) -> dict[str, Any]:
        payload = make_payload(kind, court, key(who).public_key(), body,
                               self.prev["time"] + 500, case=case, nonce=self.nonce())
        return sign_entry(key(who), self.g.chain_id, payload)

    def block(self, entries: list[dict[str, Any]], name: str | None = None) -> int:
        time = self.prev["time"] + 1000
        block = build_block(key(self.proposer), self.g.chain_id, self.prev, entries,
                            log=self.log, time=time, proposer=self.proposer, term=1)
        for env in entries:
            self.log.append(entry_leaf(self.g.hash_alg, env))
            self.chain.entry_ids.append(hash_object(self.g.hash_alg, env["payload"]))
        height = block["header"]["height"]
        # Cosigned by every voter in force AT this height (the state after block h − 1).
        voters = [n.id for n in self.state.voters()]
        header = block["header"]
        cp = make_checkpoint(self.g.chain_id, height, hash_object(self.g.hash_alg, header),
                             header["tree_size"], header["root"], header["time"])
        sigs = [{"node": v, "sig": sign_checkpoint(key(v), self.g.chain_id, cp)} for v in voters]
        self.chain.blocks.append(block)
        self.chain.checkpoints.append((cp, sigs))
        self.state = self.state.apply_block(block)
        self.prev = header
        if name:
            self.chain.heights[name] = height
        return height

    def approvals(self, body: dict[str, Any], admins: list[str]) -> list[dict[str, Any]]:
        return [sign_approval(key(a), a, self.g.chain_id, body) for a in admins]

    def membership(self, body: dict[str, Any], admins: list[str]) -> dict[str, Any]:
        return self.entry("admin-0", COURTS[0], "membership",
                          {**body, "approvals": self.approvals(body, admins)})


def build_chain(genesis: Genesis, *, inject_revoked: bool = False) -> Chain:
    """The realistic chain (see the module doc); ``inject_revoked`` makes a rogue leader put
    an entry by the revoked officer into the block after the revocation took effect."""
    from verifier.synth import demo_items

    b = Builder(genesis)
    court_index = {c: i for i, c in enumerate(COURTS)}
    items = list(demo_items(list(COURTS), 6, seed=11, now=GENESIS_TIME + 3_600_000))
    for it in items:
        if it["case"] not in b.chain.cases:
            b.chain.cases.append(it["case"])

    def signed(it: dict[str, Any]) -> dict[str, Any]:
        who = f"officer-{court_index[it['court']]}"
        return b.entry(who, it["court"], it["kind"], it["body"], case=it["case"])

    chunks = [items[i : i + 6] for i in range(0, len(items), 6)]
    third = max(1, len(chunks) // 3)
    for chunk in chunks[:third]:
        b.block([signed(it) for it in chunk])
    # An identity revocation: officer-1 of 吉0103 leaves (by its court's admin).
    revoke = b.entry("admin-1", COURTS[1], "identity", {
        "op": "revoke", "id": "officer-1", "court": COURTS[1],
        "public_key": key("officer-1").public_key()})
    b.block([revoke], name="revoke")
    if inject_revoked:
        bad = b.entry("officer-1", COURTS[1], "document", {
            "doc_type": "执行通知书", "doc_no": "（2026）吉0103执99号",
            "sha256": sha256(b"forged"), "size": 6, "media_type": "application/pdf"},
            case="（2026）吉0103执99号")
        b.block([b.entry("clerk-0", COURTS[0], "document", _doc(0)), bad], name="injected")
    # Officer-1's court carries on with its judge (officers of other courts sign their items).
    def after_revoke(it: dict[str, Any]) -> dict[str, Any]:
        i = court_index[it["court"]]
        who = "judge-1" if i == 1 and it["kind"] != "evidence" else f"officer-{i}"
        if i == 1 and it["kind"] == "evidence":
            who = "officer-0"
            return b.entry(who, COURTS[0], it["kind"], it["body"], case=it["case"])
        return b.entry(who, it["court"], it["kind"], it["body"], case=it["case"])

    for chunk in chunks[third : 2 * third]:
        b.block([after_revoke(it) for it in chunk])
    # A fourth court joins: its node as a learner with its first admin, then as a voter.
    pem = fake_pem("node-d")
    add = {"op": "add_learner", "id": "node-d", "court": NEW_COURT,
           "public_key": key("node-d").public_key(), "tls_certificate": pem,
           "tls_fingerprint": sha256(pem_certificate_der(pem)), "raft_addr": "127.0.0.1:7003",
           "admin": {"id": "admin-hu", "roles": ["admin"],
                     "public_key": key("admin-hu").public_key()}}
    b.block([b.membership(add, ["admin-0", "admin-1"])], name="add_learner")
    b.block([b.membership({"op": "promote", "id": "node-d", "court": NEW_COURT},
                          ["admin-0", "admin-2"])], name="promote")
    b.block([b.entry("clerk-0", COURTS[0], "document", _doc(1))], name="after_add")
    # A voter leaves: node-c, approved by admins of 3 of the 4 voting courts.
    b.block([b.membership({"op": "remove", "id": "node-c", "court": COURTS[2]},
                          ["admin-0", "admin-1", "admin-hu"])], name="remove")
    b.block([b.entry("clerk-0", COURTS[0], "document", _doc(2))], name="after_remove")
    for chunk in chunks[2 * third :]:
        b.block([after_revoke(it) for it in chunk])
    b.block([b.entry("clerk-2", COURTS[2], "document", _doc(3))], name="last")
    return b.chain


def _doc(n: int) -> dict[str, Any]:
    return {"doc_type": "执行裁定书", "doc_no": f"（2026）吉0102执{n + 100}号",
            "sha256": sha256(f"document {n}".encode()), "size": 1000 + n,
            "media_type": "application/pdf"}


def write_bundle(chain: Chain, path: Path) -> Path:
    """The chain as a bundle (``ledger.bundle.BundleWriter``)."""
    with path.open("wb") as fh:
        w = BundleWriter(fh)
        w.genesis(chain.genesis.block, chain.genesis.consortium)
        for block in chain.blocks:
            w.block(block)
        for cp, sigs in chain.checkpoints:
            w.checkpoint(cp, sigs)
    return path


def write_store(chain: Chain, path: Path) -> Path:
    """The chain as a node's LevelDB data dir (``LedgerStore``)."""
    store = LedgerStore.open(path, chain.genesis, create=True)
    try:
        for i, block in enumerate(chain.blocks, 1):
            store.append_block(block, raft_index=i)
        for cp, sigs in chain.checkpoints:
            store.put_checkpoint(cp, sigs)
    finally:
        store.close()
    return path


def materialise(chain: Chain, root: Path) -> Chain:
    root.mkdir(parents=True, exist_ok=True)
    chain.bundle = write_bundle(chain, root / "chain.bundle")
    chain.data = write_store(chain, root / "data")
    chain.genesis_file = root / "genesis.toml"
    chain.genesis_file.write_text(dump_genesis(chain.genesis), encoding="utf-8")
    return chain


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The untouched realistic chain, as a bundle, a data dir and a genesis file."""
    return materialise(build_chain(make_test_genesis()), tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="session")
def revoked_chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The same consortium with an entry by the revoked officer after its revocation."""
    return materialise(build_chain(make_test_genesis(), inject_revoked=True),
                       tmp_path_factory.mktemp("revoked"))


@pytest.fixture(scope="session")
def other_chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """Another chain (another genesis) with the same courts and keys."""
    return materialise(build_chain(make_test_genesis("another-chain")),
                       tmp_path_factory.mktemp("other"))


@pytest.fixture
def data_copy(chain: Chain, tmp_path: Path) -> Path:
    """A private copy of the chain's data dir, to tamper with."""
    assert chain.data is not None
    dst = tmp_path / "data"
    shutil.copytree(chain.data, dst)
    return dst
