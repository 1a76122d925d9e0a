"""``courtledger keygen`` and ``courtledger genesis build|show`` (DESIGN §4, issue 7).

In a real consortium each court makes its own secrets and hands only the public part to
whoever assembles the genesis file:

* ``keygen --node --id ID --court 代字 --raft-addr HOST:PORT --out DIR`` writes the node's
  signing key (``ID.node.key``), TLS key and certificate (``ID.tls.key``, ``ID.tls.crt``, valid
  for 10 years like ``init``'s, DESIGN §3) and the public part ``ID.node.toml`` (one
  ``[[nodes]]`` table);
* ``keygen --identity --id ID --court 代字 --roles admin,clerk --out DIR`` writes the identity
  key (``ID.key``), its bearer token (``ID.token``) and the public part ``ID.identity.toml``
  (one ``[[identities]]`` table and the token's SHA-256 for the nodes' ``tokens.toml``).
* ``genesis build PARTS… --out genesis.toml`` joins the public parts into a genesis file,
  validated exactly as a node will load it;
* ``genesis show GENESIS`` prints the chain id and every key's fingerprint, which the courts
  compare out of band (phone, letter) before anyone runs a node: whoever pins the chain id pins
  the genesis keys (DESIGN §2).

Secrets are written 0600 and never overwritten.
"""

from __future__ import annotations

import json
import secrets
import time
import tomllib
from pathlib import Path
from typing import Any

import click
import tomli_w

from ledger.crypto import Ed25519Signer, sha256
from ledger.errors import LedgerError
from ledger.genesis import (
    DEFAULT_PARAMS,
    DEFAULT_ROLES,
    Genesis,
    IdentitySpec,
    NodeSpec,
    dump_genesis,
    load_genesis,
    make_genesis,
    parse_identity,
    parse_node,
    pem_certificate_der,
)
from node.init import TLS_DAYS, token_digest

__all__ = ["genesis_group", "keygen_command", "make_identity_keys", "make_node_keys",
           "key_fingerprint"]


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` 0600 with ``text``; refuse to overwrite (a secret is never replaced)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def _fresh(paths: list[Path]) -> None:
    for p in paths:
        if p.exists():
            raise click.ClickException(f"{p} exists; keys are never overwritten")


def key_fingerprint(public_key: bytes) -> str:
    """A short, comparable fingerprint of a public key: hex SHA-256, in groups of four."""
    h = sha256(public_key).hex()[:32]
    return " ".join(h[i:i + 4] for i in range(0, len(h), 4))


def make_node_keys(out: Path, node_id: str, court: str, raft_addr: str,
                   role: str = "voter") -> NodeSpec:
    """Write a node's secrets and public part under ``out``; return its :class:`NodeSpec`."""
    from consensus.tls import generate_node_certificate

    out.mkdir(parents=True, exist_ok=True)
    names = [out / f"{node_id}.{s}" for s in ("node.key", "tls.key", "tls.crt", "node.toml")]
    _fresh(names)
    signer = Ed25519Signer.generate()
    # Each certificate gets its own subject (the node id and a random suffix): a running
    # peer's OpenSSL trust store only grows (consensus/tls.py), and two anchors with one
    # subject make it check a renewed certificate against the one it replaces. The pin is
    # the fingerprint, never the name (DESIGN §3).
    cert_pem, key_pem = generate_node_certificate(f"{node_id[:55]}-{secrets.token_hex(4)}",
                                                  TLS_DAYS)
    cert = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    tls_key = key_pem.decode() if isinstance(key_pem, bytes) else key_pem
    signer.save(names[0])
    _write_private(names[1], tls_key)
    names[2].write_text(cert, encoding="ascii")
    spec = NodeSpec(id=node_id, court=court, public_key=signer.public_key(),
                    tls_certificate=cert, tls_fingerprint=sha256(pem_certificate_der(cert)),
                    role=role, raft_addr=raft_addr)
    # Validate as the genesis file will (ids, addresses): a bad part fails here, not later.
    parse_node(_node_table(spec), f"node {node_id}", from_map=False)
    names[3].write_text(
        f"# public part of node {node_id} (court {court}); give this file, never the keys\n"
        + tomli_w.dumps({"nodes": [_node_table(spec)]}, multiline_strings=True),
        encoding="utf-8")
    return spec


def make_identity_keys(out: Path, ident: str, court: str, roles: list[str]) -> IdentitySpec:
    """Write an identity's key, bearer token and public part under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    names = [out / f"{ident}.{s}" for s in ("key", "token", "identity.toml")]
    _fresh(names)
    signer = Ed25519Signer.generate()
    signer.save(names[0])
    token = secrets.token_hex(32)
    _write_private(names[1], token + "\n")
    spec = IdentitySpec(id=ident, court=court, roles=tuple(roles),
                        public_key=signer.public_key())
    table = {**spec.to_map(), "public_key": spec.public_key.hex()}
    parse_identity(table, f"identity {ident}", DEFAULT_ROLES, from_map=False)
    names[2].write_text(
        f"# public part of identity {ident} (court {court})\n"
        + tomli_w.dumps({"identities": [table], "token_sha256": token_digest(token)}),
        encoding="utf-8")
    return spec


def _node_table(spec: NodeSpec) -> dict[str, Any]:
    return {**spec.to_map(), "public_key": spec.public_key.hex(),
            "tls_fingerprint": spec.tls_fingerprint.hex()}


@click.command("keygen")
@click.option("--node", "kind", flag_value="node", help="Make a node's keys and certificate.")
@click.option("--identity", "kind", flag_value="identity", help="Make an identity's key.")
@click.option("--id", "ident", required=True, help="The node or identity id.")
@click.option("--court", required=True, help="The court's 法院代字, e.g. 吉01.")
@click.option("--raft-addr", default=None, help="--node: the host:port peers dial.")
@click.option("--role", default="voter", type=click.Choice(["voter", "learner"]),
              help="--node: the node's role in a genesis file.")
@click.option("--roles", default="admin", show_default=True,
              help="--identity: comma-separated roles.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Folder for the files (secrets 0600, never overwritten).")
def keygen_command(kind: str | None, ident: str, court: str, raft_addr: str | None, role: str,
                   roles: str, out: Path) -> None:
    """Make a court's own keys; print the public part's fingerprint."""
    try:
        if kind == "node":
            if not raft_addr:
                raise click.UsageError("--node needs --raft-addr HOST:PORT")
            spec = make_node_keys(out, ident, court, raft_addr, role)
            click.echo(f"node {ident}: key {key_fingerprint(spec.public_key)}")
            click.echo(f"  tls sha256 {spec.tls_fingerprint.hex()}")
            click.echo(f"  public part {out / (ident + '.node.toml')}")
        elif kind == "identity":
            ispec = make_identity_keys(out, ident, court,
                                       [r.strip() for r in roles.split(",") if r.strip()])
            click.echo(f"identity {ident}: key {key_fingerprint(ispec.public_key)}")
            click.echo(f"  public part {out / (ident + '.identity.toml')}")
        else:
            raise click.UsageError("say --node or --identity")
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write under {out}: {exc.strerror}") from None


@click.group("genesis")
def genesis_group() -> None:
    """Assemble and show a genesis file."""


def load_parts(paths: list[Path]) -> tuple[list[NodeSpec], list[IdentitySpec], dict[str, str]]:
    """The nodes, identities and token digests of the public parts, in the order given."""
    nodes: list[NodeSpec] = []
    idents: list[IdentitySpec] = []
    tokens: dict[str, str] = {}
    for p in paths:
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read part {p}: {exc}") from None
        unknown = set(doc) - {"nodes", "identities", "token_sha256"}
        if unknown:
            raise click.ClickException(f"part {p}: unknown keys {sorted(unknown)}")
        try:
            for i, n in enumerate(doc.get("nodes", [])):
                nodes.append(parse_node(n, f"{p} nodes[{i}]", from_map=False))
            for i, n in enumerate(doc.get("identities", [])):
                idents.append(parse_identity(n, f"{p} identities[{i}]", DEFAULT_ROLES,
                                             from_map=False))
        except LedgerError as exc:
            raise click.ClickException(exc.detail) from None
        if "token_sha256" in doc and doc.get("identities"):
            tokens[str(doc["token_sha256"])] = idents[-1].id
    return nodes, idents, tokens


@genesis_group.command("build")
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The genesis file to write (not overwritten).")
@click.option("--chain-name", default="courtledger", show_default=True)
@click.option("--hash-alg", default="sha256", show_default=True,
              type=click.Choice(["sha256", "sm3"]))
@click.option("--genesis-time", default=None, type=int, help="ms since the epoch (default: now).")
@click.option("--tokens-out", default=None, type=click.Path(path_type=Path),
              help="Also write the nodes' tokens.toml from the identities' token digests.")
def genesis_build(parts: tuple[Path, ...], out: Path, chain_name: str, hash_alg: str,
                  genesis_time: int | None, tokens_out: Path | None) -> None:
    """Join the courts' public parts (keygen's *.node.toml / *.identity.toml) into a genesis."""
    if out.exists():
        raise click.ClickException(f"{out} exists; a genesis file is never overwritten")
    nodes, idents, tokens = load_parts(list(parts))
    try:
        g = make_genesis(chain_name=chain_name, hash_alg=hash_alg,
                         genesis_time=genesis_time or int(time.time() * 1000),
                         nodes=nodes, identities=idents, params=DEFAULT_PARAMS)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None
    out.write_text(dump_genesis(g), encoding="utf-8")
    if tokens_out is not None:
        tokens_out.write_text(tomli_w.dumps({"tokens": tokens}), encoding="utf-8")
    click.echo(f"wrote {out}")
    click.echo(f"chain id {g.chain_id.hex()}")


def describe(g: Genesis) -> dict[str, Any]:
    """What ``genesis show`` prints: the chain id and each key's fingerprint."""
    return {
        "chain_name": g.chain_name,
        "chain_id": g.chain_id.hex(),
        "hash_alg": g.hash_alg,
        "nodes": [{"id": n.id, "court": n.court, "role": n.role,
                   "key": key_fingerprint(n.public_key), "tls_sha256": n.tls_fingerprint.hex()}
                  for n in g.nodes],
        "identities": [{"id": i.id, "court": i.court, "roles": list(i.roles),
                        "key": key_fingerprint(i.public_key)} for i in g.identities],
    }


@genesis_group.command("show")
@click.argument("genesis", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def genesis_show(genesis: Path, as_json: bool) -> None:
    """Print the chain id and every key's fingerprint, to compare out of band."""
    try:
        g = load_genesis(genesis)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None
    d = describe(g)
    if as_json:
        click.echo(json.dumps(d, ensure_ascii=False, indent=2))
        return
    click.echo(f"chain     {d['chain_name']} ({d['hash_alg']})")
    click.echo(f"chain id  {d['chain_id']}")
    for n in d["nodes"]:
        click.echo(f"node      {n['id']:<12} {n['court']:<6} {n['role']:<7} key {n['key']}")
        click.echo(f"          tls sha256 {n['tls_sha256']}")
    for i in d["identities"]:
        click.echo(f"identity  {i['id']:<20} {i['court']:<6} {','.join(i['roles']):<16} "
                   f"key {i['key']}")
