"""Shared builders for the ledger tests: deterministic keys, a three-court consortium, chains.

Everything here is deterministic (keys derive from names), so a failing test reproduces exactly.
The fixtures hand out a :class:`World`, whose helpers sign entries and blocks the way a node
would, so that each test can break exactly one thing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ledger.crypto import Ed25519Signer, sha256
from ledger.genesis import (
    DEFAULT_PARAMS,
    DEFAULT_ROLES,
    Genesis,
    IdentitySpec,
    NodeSpec,
    Params,
    make_genesis,
    pem_certificate_der,
)

FIXTURES = Path(__file__).parent / "fixtures"

GENESIS_TIME = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COURTS = ("吉0102", "吉0103", "吉01")
NODE_NAMES = ("node-a", "node-b", "node-c")


def key(name: str) -> Ed25519Signer:
    """A deterministic test key for ``name``."""
    return Ed25519Signer(hashlib.sha256(b"courtledger test key " + name.encode()).digest())


def fake_pem(name: str) -> str:
    """A PEM armour around deterministic bytes (genesis checks only armour and fingerprint)."""
    import base64

    body = base64.b64encode(b"test certificate " + name.encode()).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def golden_pem(name: str) -> str:
    """One of the real self-signed certificates kept beside the golden genesis files."""
    return (FIXTURES / f"{name}.pem").read_text()


def node_spec(name: str, court: str, *, role: str = "voter", pem: str | None = None) -> NodeSpec:
    """A node with a deterministic key and certificate."""
    pem = pem if pem is not None else fake_pem(name)
    return NodeSpec(
        id=name,
        court=court,
        public_key=key(name).public_key(),
        tls_certificate=pem,
        tls_fingerprint=sha256(pem_certificate_der(pem)),
        role=role,
        raft_addr=f"127.0.0.1:{7000 + NODE_NAMES.index(name) if name in NODE_NAMES else 7999}",
    )


def identity_spec(name: str, court: str, roles: tuple[str, ...]) -> IdentitySpec:
    """An identity with a deterministic key."""
    return IdentitySpec(id=name, court=court, roles=roles, public_key=key(name).public_key())


def standard_identities() -> list[IdentitySpec]:
    """Per court: an admin, a clerk, an officer, a judge; one inspector at the first court."""
    out: list[IdentitySpec] = []
    for i, court in enumerate(COURTS):
        out.append(identity_spec(f"admin-{i}", court, ("admin",)))
        out.append(identity_spec(f"clerk-{i}", court, ("clerk",)))
        out.append(identity_spec(f"officer-{i}", court, ("officer",)))
        out.append(identity_spec(f"judge-{i}", court, ("judge",)))
    out.append(identity_spec("inspector-0", COURTS[0], ("inspector",)))
    return out


def make_test_genesis(
    hash_alg: str = "sha256", *, params: Params = DEFAULT_PARAMS, golden: bool = False
) -> Genesis:
    """The three-court test consortium (real certificates if ``golden``)."""
    nodes = [
        node_spec(n, c, pem=golden_pem(n) if golden else None)
        for n, c in zip(NODE_NAMES, COURTS, strict=True)
    ]
    return make_genesis(
        chain_name="courtledger-test",
        hash_alg=hash_alg,
        genesis_time=GENESIS_TIME,
        nodes=nodes,
        identities=standard_identities(),
        params=params,
        roles=DEFAULT_ROLES,
    )


class World:
    """A genesis plus helpers to sign entries and build blocks against it."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.alg = genesis.hash_alg
        self.chain_id = genesis.chain_id
        self._nonce = 0

    def nonce(self) -> bytes:
        """A deterministic, never repeated nonce."""
        self._nonce += 1
        return self._nonce.to_bytes(16, "big")

    def entry(
        self,
        who: str,
        kind: str,
        body: dict[str, Any],
        *,
        court: str | None = None,
        time: int | None = None,
        case: str | None = None,
        chain_id: bytes | None = None,
    ) -> dict[str, Any]:
        """A signed envelope by identity ``who`` (court defaults to the identity's court)."""
        from ledger.entries import make_payload, sign_entry

        signer = key(who)
        if court is None:
            court = self.court_of(who)
        payload = make_payload(
            kind,
            court,
            signer.public_key(),
            body,
            GENESIS_TIME + 1000 if time is None else time,
            case=case,
            nonce=self.nonce(),
        )
        return sign_entry(signer, self.chain_id if chain_id is None else chain_id, payload)

    def court_of(self, who: str) -> str:
        """The court of identity ``who`` (by its name's index)."""
        return COURTS[int(who.rsplit("-", 1)[1]) % len(COURTS)]

    def document(self, who: str = "clerk-0", n: int = 0, **kw: Any) -> dict[str, Any]:
        """A document entry anchoring a made-up file."""
        body = {
            "doc_type": "执行通知书",
            "doc_no": f"（2026）吉0102执{n + 1}号",
            "sha256": sha256(f"document {n}".encode()),
            "size": 1000 + n,
            "media_type": "application/pdf",
        }
        return self.entry(who, "document", body, case="（2026）吉0102执1号", **kw)


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The module's helpers (tests reach them through this fixture, not by importing conftest)."""
    return SimpleNamespace(
        COURTS=COURTS,
        FIXTURES=FIXTURES,
        GENESIS_TIME=GENESIS_TIME,
        NODE_NAMES=NODE_NAMES,
        World=World,
        fake_pem=fake_pem,
        golden_pem=golden_pem,
        identity_spec=identity_spec,
        key=key,
        make_test_genesis=make_test_genesis,
        node_spec=node_spec,
        standard_identities=standard_identities,
    )


@pytest.fixture
def world() -> World:
    """A fresh SHA-256 test consortium."""
    return World(make_test_genesis())


@pytest.fixture(scope="session")
def sm3_genesis() -> Genesis:
    """The same consortium on an SM3 chain."""
    return make_test_genesis("sm3")


@pytest.fixture
def sm3_world(sm3_genesis: Genesis) -> World:
    """A fresh SM3 world."""
    return World(sm3_genesis)


__all__ = [
    "COURTS",
    "FIXTURES",
    "GENESIS_TIME",
    "NODE_NAMES",
    "World",
    "fake_pem",
    "golden_pem",
    "identity_spec",
    "key",
    "make_test_genesis",
    "node_spec",
    "standard_identities",
]
