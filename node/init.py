"""``courtledger init``: a ready local consortium on loopback (DESIGN §4).

Writes, under ``DIR``::

    genesis.toml                  the consortium (chain hash, params, roles, nodes, identities)
    <node id>.toml                one config per node, 127.0.0.1 ports
    tokens.toml                   SHA-256 of each identity's bearer token → identity id
    keys/<identity id>.key        identity signing keys (hex seed, 0600)
    keys/<identity id>.token      the identity's bearer token for reads of case data (0600)
    keys/<node id>.node.key       node key: signs blocks and checkpoints (0600)
    keys/<node id>.tls.key|.crt   the node's TLS key (0600) and self-signed certificate (10 years)
    data/<node id>/               the node's LevelDB store (created when the node starts)

The courts are the demo consortium of domain/rulebook.md §6 (最高法, 吉, 吉01, 吉0102, …), so
that what a user sees is real; each gets a node, an admin, two clerks, two enforcement officers,
a judge and an inspector. For a real consortium each court makes its own keys and the genesis
file is assembled from the public parts (issue 7: ``keygen`` / ``genesis build``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from ledger.crypto import Ed25519Signer, sha256
from ledger.genesis import (
    DEFAULT_PARAMS,
    IdentitySpec,
    NodeSpec,
    Params,
    dump_genesis,
    make_genesis,
    pem_certificate_der,
)


@dataclass(frozen=True)
class Court:
    """A court of the demo consortium: its 法院代字, an ASCII id for files, its full name."""

    code: str
    slug: str
    name: str


#: domain/rulebook.md §6, in the order ``init --courts N`` takes them.
DEMO_COURTS: tuple[Court, ...] = (
    Court("最高法", "spc", "最高人民法院"),
    Court("吉", "ji", "吉林省高级人民法院"),
    Court("吉01", "ji01", "吉林省长春市中级人民法院"),
    Court("吉0102", "ji0102", "长春市南关区人民法院"),
    Court("吉0104", "ji0104", "长春市朝阳区人民法院"),
    Court("吉0103", "ji0103", "长春市宽城区人民法院"),
    Court("吉02", "ji02", "吉林省吉林市中级人民法院"),
    Court("沪", "hu", "上海市高级人民法院"),
    Court("沪01", "hu01", "上海市第一中级人民法院"),
    Court("沪0115", "hu0115", "上海市浦东新区人民法院"),
)

#: Identities per court: (id suffix, roles).
STAFF: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("admin", ("admin",)),
    ("clerk1", ("clerk",)),
    ("clerk2", ("clerk",)),
    ("officer1", ("officer",)),
    ("officer2", ("officer",)),
    ("judge1", ("judge",)),
    ("inspector", ("inspector",)),
)

#: DESIGN §3: ``init`` issues TLS certificates valid for 10 years.
TLS_DAYS = 3650

CHAIN_NAME = "courtledger-demo"


def court_by_code(code: str) -> Court:
    """The demo court with 法院代字 ``code``."""
    for c in DEMO_COURTS:
        if c.code == code:
            return c
    raise KeyError(code)


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable only by its owner (0600); never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def token_digest(token: str) -> str:
    """How the node stores a bearer token: hex SHA-256 (the token itself never sits on a node)."""
    return hashlib.sha256(token.strip().encode("ascii")).hexdigest()


def ports(base_port: int, index: int) -> tuple[int, int, int]:
    """(raft, internal, public) ports of the ``index``-th node."""
    return base_port + index, base_port + 100 + index, base_port + 200 + index


def init_consortium(
    out: Path,
    courts: int = 3,
    *,
    base_port: int = 7100,
    hash_alg: str = "sha256",
    params: Params = DEFAULT_PARAMS,
    genesis_time: int | None = None,
    host: str = "127.0.0.1",
) -> list[Path]:
    """Write a local consortium of ``courts`` courts under ``out``; return the node configs.

    ``out`` must not exist or be empty: keys are never overwritten.
    """
    from consensus.tls import generate_node_certificate

    if not 1 <= courts <= len(DEMO_COURTS):
        raise ValueError(f"--courts must be 1…{len(DEMO_COURTS)}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    keys = out / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    nodes: list[NodeSpec] = []
    identities: list[IdentitySpec] = []
    tokens: dict[str, str] = {}
    for i, court in enumerate(DEMO_COURTS[:courts]):
        node_id = court.slug
        signer = Ed25519Signer.generate()
        signer.save(keys / f"{node_id}.node.key")
        cert_pem, key_pem = generate_node_certificate(node_id, TLS_DAYS)
        key_text = key_pem.decode() if isinstance(key_pem, bytes) else key_pem
        cert_text = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
        _write_private(keys / f"{node_id}.tls.key", key_text)
        (keys / f"{node_id}.tls.crt").write_text(cert_text, encoding="ascii")
        raft_port, _, _ = ports(base_port, i)
        nodes.append(
            NodeSpec(
                id=node_id,
                court=court.code,
                public_key=signer.public_key(),
                tls_certificate=cert_text,
                tls_fingerprint=sha256(pem_certificate_der(cert_text)),
                role="voter",
                raft_addr=f"{host}:{raft_port}",
            )
        )
        for suffix, roles in STAFF:
            ident = f"{court.slug}-{suffix}"
            isigner = Ed25519Signer.generate()
            isigner.save(keys / f"{ident}.key")
            token = secrets.token_hex(32)
            _write_private(keys / f"{ident}.token", token + "\n")
            tokens[token_digest(token)] = ident
            identities.append(
                IdentitySpec(id=ident, court=court.code, roles=roles,
                             public_key=isigner.public_key())
            )
    genesis = make_genesis(
        chain_name=CHAIN_NAME,
        hash_alg=hash_alg,
        genesis_time=genesis_time if genesis_time is not None else int(time.time() * 1000),
        nodes=nodes,
        identities=identities,
        params=params,
    )
    (out / "genesis.toml").write_text(dump_genesis(genesis), encoding="utf-8")
    (out / "tokens.toml").write_text(
        "# SHA-256 of each bearer token -> identity id (the tokens are in keys/*.token)\n"
        + tomli_w.dumps({"tokens": tokens}),
        encoding="utf-8",
    )
    configs = []
    for i, node in enumerate(nodes):
        raft_port, internal_port, public_port = ports(base_port, i)
        cfg = {
            "node_id": node.id,
            "genesis": "genesis.toml",
            "data_dir": f"data/{node.id}",
            "node_key": f"keys/{node.id}.node.key",
            "tls_key": f"keys/{node.id}.tls.key",
            "tls_cert": f"keys/{node.id}.tls.crt",
            "tokens": "tokens.toml",
            "listen": {
                "raft": f"{host}:{raft_port}",
                "internal": f"{host}:{internal_port}",
                "public": f"{host}:{public_port}",
            },
        }
        path = out / f"{node.id}.toml"
        path.write_text(
            f"# courtledger node {node.id} ({DEMO_COURTS[i].name}, {DEMO_COURTS[i].code})\n"
            "# Relative paths resolve against this file's folder (DESIGN §4).\n"
            + tomli_w.dumps(cfg),
            encoding="utf-8",
        )
        configs.append(path)
    return configs
