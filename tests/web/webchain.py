"""A small, really signed consortium chain for the page's tests, built per DESIGN §2.

Keys are real Ed25519 (``ledger.crypto``), bytes are canonical (``ledger.encoding``), the log is
an RFC 9162 Merkle tree computed here by the naive recursive definition (an independent
reference, so the page is not checked against the code it is meant to cross-check), and
checkpoints are signed by the node keys exactly as voters sign them. Receipts come out as
``courtledger-receipt/1`` JSON, with ``consortium`` proofs for every membership change.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ledger.crypto import (
    TAG_CHECKPOINT,
    TAG_ENTRY,
    TAG_MEMBERSHIP,
    Ed25519Signer,
    H,
    hash_object,
    sign_object,
)
from ledger.encoding import canonical, decode
from ledger.genesis import IdentitySpec, NodeSpec, Params, make_genesis

GENESIS_TIME = 1_764_547_200_000  # 2025-12-01 00:00:00 UTC


def _seed(label: str) -> bytes:
    """A deterministic key seed, so fixtures (and screenshots) are the same every run."""
    return hashlib.sha256(b"courtledger-web-test:" + label.encode()).digest()


def mth(alg: str, leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 Merkle Tree Hash over leaf *data* (not leaf hashes)."""
    n = len(leaves)
    if n == 0:
        return H(alg, b"")
    if n == 1:
        return H(alg, b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return H(alg, b"\x01" + mth(alg, leaves[:k]) + mth(alg, leaves[k:]))


def inclusion_path(alg: str, m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), leaf to root."""
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return inclusion_path(alg, m, leaves[:k]) + [mth(alg, leaves[k:])]
    return inclusion_path(alg, m - k, leaves[k:]) + [mth(alg, leaves[:k])]


def _pem(node_id: str) -> str:
    """A stand-in certificate, unique per node (the page never looks inside it)."""
    body = base64.b64encode(node_id.encode()).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _node_spec(node_id: str, court: str, public_key: bytes, role: str) -> NodeSpec:
    return NodeSpec(id=node_id, court=court, public_key=public_key, tls_certificate=_pem(node_id),
                    tls_fingerprint=hashlib.sha256(node_id.encode()).digest(), role=role,
                    raft_addr="127.0.0.1:7000")


@dataclass
class Node:
    """A court's node: id, court code (法院代字), role and its real signing key."""

    id: str
    court: str
    role: str
    signer: Ed25519Signer

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key()


@dataclass
class Block:
    height: int
    first_index: int
    count: int
    time: int
    checkpoint: dict[str, Any]
    signatures: list[dict[str, str]]


@dataclass
class Chain:
    """A chain being built: genesis, entries in log order, blocks with signed checkpoints."""

    hash_alg: str = "sha256"
    receipt_quorum: str = "majority"
    courts: tuple[tuple[str, str], ...] = (
        ("n-jl0102", "吉0102"),
        ("n-jl01", "吉01"),
        ("n-jl", "吉"),
    )
    chain_name: str = "吉林法院执行存证链（测试）"
    nodes: dict[str, Node] = field(default_factory=dict)
    leaves: list[bytes] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    membership_log: list[tuple[int, int]] = field(default_factory=list)  # (leaf index, height)
    entry_index: dict[str, int] = field(default_factory=dict)  # entry_id hex → leaf index
    genesis_nodes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for node_id, court in self.courts:
            self.nodes[node_id] = Node(node_id, court, "voter", Ed25519Signer(_seed(node_id)))
        self.clerk = Ed25519Signer(_seed("clerk-" + self.hash_alg))
        self.admin = Ed25519Signer(_seed("admin-" + self.hash_alg))
        self.genesis_nodes = [
            {"id": n.id, "court": n.court, "public_key": n.public_key, "role": n.role}
            for n in self.nodes.values()
        ]
        # A real genesis (ledger.genesis), so that the Python auditor (ledger.receipts) can
        # verify every receipt made here: the page and the auditor are checked on the same data.
        self.genesis = make_genesis(
            chain_name=self.chain_name,
            hash_alg=self.hash_alg,
            genesis_time=GENESIS_TIME,
            params=Params(receipt_quorum=self.receipt_quorum),
            nodes=[_node_spec(n.id, n.court, n.public_key, "voter") for n in self.nodes.values()],
            identities=[
                IdentitySpec("jl0102-clerk", "吉0102", ("clerk",), self.clerk.public_key()),
                IdentitySpec("jl-admin", "吉", ("admin",), self.admin.public_key()),
            ],
        )
        self.chain_id = self.genesis.chain_id
        self.prev = self.chain_id

    # ---------------------------------------------------------------- what the page pins

    def summary(self) -> dict[str, Any]:
        """The genesis summary ``mount_public_page`` takes, made as the public app makes it."""
        from api.web import summarize_genesis

        return summarize_genesis(self.genesis)

    # ---------------------------------------------------------------- entries

    def _envelope(self, payload: dict[str, Any], signer: Ed25519Signer) -> bytes:
        sig = sign_object(signer, TAG_ENTRY, self.chain_id, payload)
        return canonical({"payload": payload, "sig": sig})

    def document(self, content: bytes, *, time: int, doc_type: str = "执行通知书",
                 doc_no: str = "（2025）吉0102执1203号之一", case: str = "（2025）吉0102执1203号",
                 court: str = "吉0102", kind: str = "document") -> bytes:
        """A signed ``document`` envelope for ``content`` (its SHA-256 in ``body.sha256``)."""
        body: dict[str, Any] = {
            "doc_type": doc_type, "doc_no": doc_no, "sha256": hashlib.sha256(content).digest(),
            "size": len(content), "media_type": "application/pdf",
        }
        payload = {
            "v": 1, "kind": kind, "court": court, "case": case, "time": time,
            "nonce": hashlib.sha256(content + b"nonce").digest()[:16],
            "signer": self.clerk.public_key(), "body": body,
        }
        return self._envelope(payload, self.clerk)

    def membership(self, op: str, node: Node, *, time: int) -> bytes:
        """A signed ``membership`` envelope with an admin approval (DESIGN §2)."""
        change = {
            "op": op, "id": node.id, "court": node.court, "public_key": node.public_key,
            "tls_certificate": _pem(node.id),
            "tls_fingerprint": hashlib.sha256(node.id.encode()).digest(),
            "raft_addr": "127.0.0.1:7000",
        }
        approval = sign_object(self.admin, TAG_MEMBERSHIP, self.chain_id, change)
        body = {**change, "approvals": [{"identity": "jl-admin", "sig": approval}]}
        payload = {
            "v": 1, "kind": "membership", "court": "吉", "time": time,
            "nonce": hashlib.sha256(f"{op}{node.id}{time}".encode()).digest()[:16],
            "signer": self.admin.public_key(), "body": body,
        }
        return self._envelope(payload, self.admin)

    # ---------------------------------------------------------------- blocks

    def voters(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "voter"]

    def add_block(self, envelopes: list[bytes], *, time: int,
                  signers: list[str] | None = None) -> Block:
        """Append a block of envelopes and sign its checkpoint (by all voters unless named)."""
        height = len(self.blocks) + 1
        first = len(self.leaves)
        for env in envelopes:
            payload = decode(env)["payload"]
            self.entry_index[hash_object(self.hash_alg, payload).hex()] = len(self.leaves)
            self.leaves.append(env)
        root = mth(self.hash_alg, self.leaves)
        header = {
            "v": 1, "height": height, "prev": self.prev, "time": time, "first_index": first,
            "count": len(envelopes), "tree_size": len(self.leaves), "root": root,
            "proposer": next(iter(self.nodes)), "term": 1,
        }
        block_hash = hash_object(self.hash_alg, header)
        self.prev = block_hash
        checkpoint = {
            "v": 1, "chain": self.chain_id, "height": height, "block": block_hash,
            "tree_size": len(self.leaves), "root": root, "time": time,
        }
        names = signers if signers is not None else [n.id for n in self.voters()]
        sigs = [
            {"node": name, "sig": sign_object(self.nodes[name].signer, TAG_CHECKPOINT,
                                              self.chain_id, checkpoint).hex()}
            for name in names
        ]
        block = Block(height, first, len(envelopes), time, checkpoint, sigs)
        self.blocks.append(block)
        return block

    def change_membership(self, op: str, node: Node, *, time: int) -> Block:
        """A block holding one membership change, applied from the next block on."""
        env = self.membership(op, node, time=time)
        index = len(self.leaves)
        block = self.add_block([env], time=time)
        self.membership_log.append((index, block.height))
        if op == "add_learner":
            self.nodes[node.id] = Node(node.id, node.court, "learner", node.signer)
        elif op == "promote":
            self.nodes[node.id].role = "voter"
        elif op == "remove":
            del self.nodes[node.id]
        return block

    # ---------------------------------------------------------------- receipts

    def _block_of(self, index: int) -> Block:
        for b in self.blocks:
            if b.first_index <= index < b.first_index + b.count:
                return b
        raise KeyError(index)

    def _proof(self, index: int) -> dict[str, Any]:
        block = self._block_of(index)
        leaves = self.leaves[: block.checkpoint["tree_size"]]
        cp = block.checkpoint
        return {
            "entry": base64.b64encode(self.leaves[index]).decode(),
            "leaf_index": index,
            "inclusion_path": [p.hex() for p in inclusion_path(self.hash_alg, index, leaves)],
            "checkpoint": {
                "v": 1, "chain": cp["chain"].hex(), "height": cp["height"],
                "block": cp["block"].hex(), "tree_size": cp["tree_size"], "root": cp["root"].hex(),
                "time": cp["time"],
            },
            "signatures": list(block.signatures),
        }

    def receipt(self, entry_id: str) -> dict[str, Any]:
        """The ``courtledger-receipt/1`` of an entry, under its own block's checkpoint."""
        index = self.entry_index[entry_id]
        proof = self._proof(index)
        height = proof["checkpoint"]["height"]
        return {
            "format": "courtledger-receipt/1",
            "hash_alg": self.hash_alg,
            "entry": proof["entry"],
            "entry_id": entry_id,
            "leaf_index": index,
            "inclusion_path": proof["inclusion_path"],
            "checkpoint": proof["checkpoint"],
            "signatures": proof["signatures"],
            "consortium": [self._proof(i) for i, h in self.membership_log if h < height],
        }

    def entry_id_of(self, envelope: bytes) -> str:
        return hash_object(self.hash_alg, decode(envelope)["payload"]).hex()


def new_node(node_id: str, court: str) -> Node:
    """A node outside the consortium (to be added by a membership change)."""
    return Node(node_id, court, "learner", Ed25519Signer(_seed(node_id)))
