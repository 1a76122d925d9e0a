"""``courtledger member add-learner|promote|remove|update-keys|approve|submit`` (issue 7).

A membership change is a ``membership`` entry (DESIGN §2) whose body carries ``approvals`` by
admins of a majority of the voting courts at that height. The work is split so each admin
signs on their own machine with their own key:

1. ``member add-learner|promote|remove|update-keys … --out change.json`` builds the change
   (the body without ``approvals``) and writes a **change file**;
2. ``member approve change.json --key ADMIN.key --identity ADMIN`` verifies nothing is
   already wrong with the file, signs ``courtledger:membership:v1\\x00 + chain_id +
   canonical(change)`` and appends the approval (each admin in turn; the file travels);
3. ``member submit change.json --key ADMIN.key --node URL`` signs the ``membership`` entry and
   submits it. The node refuses it (4xx) unless the approvals make a majority.

Once the entry is committed the node turns it into Raft's membership change: ``add_learner``,
``promote`` and ``remove`` travel as a ``conf_change`` Raft entry carrying the block with the
one membership entry (DESIGN §3); ``update_keys`` travels in a normal entry, and every node
then trusts the new TLS certificate and no longer the old one.

The change file is JSON: ``{"format": "courtledger-change/1", "chain_id", "kind"
("membership" | "identity"), "change" (base64 of canonical(change), so every signer signs the
very same bytes), "summary" (readable, not signed), "approvals": [{"identity", "sig" (hex)}]}``.
The same file and ``approve`` serve identity changes that need approvals (a court's first admin,
or rotating or revoking an admin: DESIGN §2).
"""

from __future__ import annotations

import base64
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from ledger.crypto import TAG_MEMBERSHIP, Ed25519Signer, verify_object
from ledger.encoding import canonical, decode
from ledger.entries import sign_approval
from ledger.errors import LedgerError, SignatureError
from ledger.genesis import Genesis, load_genesis

CHANGE_FORMAT = "courtledger-change/1"

__all__ = ["member_group", "write_change", "read_change", "approve_change", "change_envelope",
           "submit_change"]


# --------------------------------------------------------------------------- change files


def _summary(change: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in change.items():
        if isinstance(v, bytes):
            out[k] = v.hex()
        elif isinstance(v, dict):
            out[k] = _summary(v)
        elif k == "tls_certificate":
            out[k] = f"(PEM, {len(v)} chars)"
        else:
            out[k] = v
    return out


def write_change(path: Path, genesis: Genesis, kind: str, change: dict[str, Any]) -> None:
    """Write a fresh change file (no approvals yet); refuse to overwrite one."""
    if path.exists():
        raise click.ClickException(f"{path} exists; approvals collected there would be lost")
    doc = {"format": CHANGE_FORMAT, "chain_id": genesis.chain_id.hex(), "kind": kind,
           "change": base64.b64encode(canonical(change)).decode("ascii"),
           "summary": _summary(change), "approvals": []}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_change(path: Path, genesis: Genesis) -> tuple[dict[str, Any], dict[str, Any]]:
    """The change file's document and its decoded change; one-line errors."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read change file {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != CHANGE_FORMAT:
        raise click.ClickException(f"{path} is not a {CHANGE_FORMAT} file")
    if doc.get("chain_id") != genesis.chain_id.hex():
        raise click.ClickException(f"{path} is for chain {doc.get('chain_id')}, not this one")
    if doc.get("kind") not in ("membership", "identity"):
        raise click.ClickException(f"{path}: kind must be membership or identity")
    try:
        change = decode(base64.b64decode(doc["change"], validate=True))
    except (KeyError, ValueError, LedgerError) as exc:
        raise click.ClickException(f"{path}: change is not canonical base64: {exc}") from None
    if not isinstance(change, dict) or "approvals" in change:
        raise click.ClickException(f"{path}: change must be a map without approvals")
    if not isinstance(doc.get("approvals"), list):
        raise click.ClickException(f"{path}: approvals must be a list")
    return doc, change


def approvals_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The file's approvals as body values (``sig`` as bytes)."""
    out = []
    for a in doc["approvals"]:
        try:
            out.append({"identity": str(a["identity"]), "sig": bytes.fromhex(a["sig"])})
        except (KeyError, TypeError, ValueError):
            raise click.ClickException(f"bad approval in change file: {a!r}") from None
    return out


def approve_change(path: Path, genesis: Genesis, signer: Ed25519Signer, identity: str) -> int:
    """Sign the change in ``path`` as ``identity`` and append the approval; return the count.

    Earlier approvals are checked against their own signature bytes only (the node checks who
    they are): a file whose earlier approvals do not sign this change is refused, so a bad
    copy is noticed by the next admin rather than by the node.
    """
    doc, change = read_change(path, genesis)
    if any(a.get("identity") == identity for a in doc["approvals"]):
        raise click.ClickException(f"{identity} already approved this change")
    approval = sign_approval(signer, identity, genesis.chain_id, change)
    # Self-check: our own signature verifies over exactly these bytes.
    try:
        verify_object(signer.public_key(), TAG_MEMBERSHIP, genesis.chain_id, change,
                      approval["sig"])
    except SignatureError as exc:  # pragma: no cover - a broken signer
        raise click.ClickException(exc.detail) from None
    doc["approvals"].append({"identity": identity, "sig": approval["sig"].hex()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(doc["approvals"])


def _court_of(genesis: Genesis, signer: Ed25519Signer, court: str | None) -> str:
    if court:
        return court
    for i in genesis.identities:
        if i.public_key == signer.public_key():
            return i.court
    raise click.ClickException("the key is not a genesis identity; pass --court")


def change_envelope(genesis: Genesis, doc: dict[str, Any], change: dict[str, Any],
                    signer: Ed25519Signer, court: str | None) -> dict[str, Any]:
    """The signed entry of a change file (its approvals in the body, if any)."""
    from node.submit import sign_payload

    body = dict(change)
    approvals = approvals_of(doc)
    if approvals:
        body["approvals"] = approvals
    return sign_payload(genesis, signer, doc["kind"], body,
                        court=_court_of(genesis, signer, court))


def submit_change(node: str, env: dict[str, Any], wait: bool) -> None:
    """Submit one change entry and print the node's answer (exit 2 on a refusal)."""
    from node.submit import _finish, post_entries

    _finish(post_entries(node, [env], "commit" if wait else None, timeout=60), False)


# --------------------------------------------------------------------------- CLI


def load_genesis_or_fail(path: Path) -> Genesis:
    """The genesis file, or a one-line usage error."""
    try:
        return load_genesis(path)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None


def load_key(path: Path) -> Ed25519Signer:
    """An identity key file, or a one-line usage error."""
    try:
        return Ed25519Signer.from_file(path)
    except (LedgerError, OSError) as exc:
        raise click.ClickException(f"cannot load key {path}: {exc}") from None


def _genesis_opt(f: Any) -> Any:
    return click.option("--genesis", "genesis_path", envvar="COURTLEDGER_GENESIS", required=True,
                        type=click.Path(path_type=Path), help="The consortium's genesis.toml.")(f)


def _node_part(path: Path) -> dict[str, Any]:
    """The one ``[[nodes]]`` table of a keygen public part, as body fields."""
    from node.keygen import load_parts

    nodes, _, _ = load_parts([path])
    if len(nodes) != 1:
        raise click.ClickException(f"{path} must hold exactly one node")
    n = nodes[0]
    return {"public_key": n.public_key, "tls_certificate": n.tls_certificate,
            "tls_fingerprint": n.tls_fingerprint, "raft_addr": n.raft_addr, "id": n.id,
            "court": n.court}


@click.group("member")
def member_group() -> None:
    """Change the consortium's nodes: build, approve (majority of voting courts), submit."""


@member_group.command("add-learner")
@_genesis_opt
@click.option("--node-part", required=True, type=click.Path(path_type=Path),
              help="The new node's public part (keygen --node … → ID.node.toml).")
@click.option("--admin-part", default=None, type=click.Path(path_type=Path),
              help="For a new court: its first admin's public part (ID.identity.toml).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Change file.")
def add_learner(genesis_path: Path, node_part: Path, admin_part: Path | None, out: Path) -> None:
    """Build the change adding a node as a Raft learner (it catches up, votes only once
    promoted)."""
    g = load_genesis_or_fail(genesis_path)
    part = _node_part(node_part)
    change: dict[str, Any] = {"op": "add_learner", **part}
    if admin_part is not None:
        from node.keygen import load_parts

        _, idents, _ = load_parts([admin_part])
        if len(idents) != 1:
            raise click.ClickException(f"{admin_part} must hold exactly one identity")
        a = idents[0]
        change["admin"] = {"id": a.id, "roles": list(a.roles), "public_key": a.public_key}
    write_change(out, g, "membership", change)
    click.echo(f"wrote {out}: add_learner {part['id']} ({part['court']}); now collect approvals")


def _simple(op: str) -> Any:
    @_genesis_opt
    @click.option("--id", "node_id", required=True, help="The member node's id.")
    @click.option("--court", required=True, help="The node's court (法院代字).")
    @click.option("--out", required=True, type=click.Path(path_type=Path), help="Change file.")
    def cmd(genesis_path: Path, node_id: str, court: str, out: Path) -> None:
        g = load_genesis_or_fail(genesis_path)
        write_change(out, g, "membership", {"op": op, "id": node_id, "court": court})
        click.echo(f"wrote {out}: {op} {node_id}; now collect approvals")

    cmd.__doc__ = {"promote": "Build the change promoting a caught-up learner to voter.",
                   "remove": "Build the change removing a node from the consortium."}[op]
    return cmd


member_group.command("promote")(_simple("promote"))
member_group.command("remove")(_simple("remove"))


@member_group.command("update-keys")
@_genesis_opt
@click.option("--node-part", required=True, type=click.Path(path_type=Path),
              help="The node's NEW public part (keygen --node with the same id, new folder).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Change file.")
def update_keys(genesis_path: Path, node_part: Path, out: Path) -> None:
    """Build the change replacing a node's signing key and TLS certificate (and address)."""
    g = load_genesis_or_fail(genesis_path)
    part = _node_part(node_part)
    write_change(out, g, "membership", {"op": "update_keys", **part})
    click.echo(f"wrote {out}: update_keys {part['id']}; now collect approvals")


@member_group.command("approve")
@click.argument("change_file", type=click.Path(path_type=Path))
@_genesis_opt
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="This admin's identity key.")
@click.option("--identity", required=True, help="This admin's identity id.")
def approve(change_file: Path, genesis_path: Path, key_path: Path, identity: str) -> None:
    """Sign a change file as an admin and append the approval."""
    g = load_genesis_or_fail(genesis_path)
    n = approve_change(change_file, g, load_key(key_path), identity)
    click.echo(f"{identity} approved; {n} approval(s) in {change_file}")


@member_group.command("submit")
@click.argument("change_file", type=click.Path(path_type=Path))
@_genesis_opt
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="The submitting admin's identity key (signs the entry).")
@click.option("--court", default=None, help="The submitter's court (default: from genesis).")
@click.option("--node", envvar="COURTLEDGER_NODE", default="http://127.0.0.1:7200",
              show_default=True, help="Internal API of any node.")
@click.option("--wait", is_flag=True, help="Wait until committed.")
def submit(change_file: Path, genesis_path: Path, key_path: Path, court: str | None, node: str,
           wait: bool) -> None:
    """Submit an approved change file as a signed entry."""
    g = load_genesis_or_fail(genesis_path)
    doc, change = read_change(change_file, g)
    env = change_envelope(g, doc, change, load_key(key_path), court)
    submit_change(node, env, wait)


def parse_time_ms(value: str) -> int:
    """An instant as ms since the epoch: an integer, or ISO 8601 (``Z`` or an offset)."""
    if value.isdigit():
        return int(value)
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither ms since the epoch nor ISO 8601") from None
    if dt.tzinfo is None:
        raise click.BadParameter("give a time zone (Z or +08:00)")
    return int(dt.timestamp() * 1000)


def now_ms() -> int:
    """The local clock in ms."""
    return int(time.time() * 1000)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file, or a one-line usage error."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(member_group())
