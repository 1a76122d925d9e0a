"""``courtledger identity add|rotate|revoke`` (DESIGN §2 ``identity`` entries, issue 7).

An ``identity`` entry is signed by an admin of the identity's court and takes effect from the
next block: a new key may sign from then, a rotated or revoked key may not. Everything signed
before stays valid for every verifier (validity is judged with the state before each block).
``revoke --compromised-since T`` records since when the key was unsafe: the verifier flags
the entries that key signed after ``T`` (a warning in the inspector and in ``audit``; exit codes
are unchanged).

A change that needs approvals by admins of a majority of voting courts (a court's first admin,
or rotating/revoking an admin, DESIGN §2) is written with ``--out change.json`` instead of being
submitted; then ``courtledger member approve`` and ``courtledger member submit`` as for
membership changes (:mod:`node.member`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from node.member import (
    change_envelope,
    load_genesis_or_fail,
    load_key,
    parse_time_ms,
    read_change,
    read_toml,
    submit_change,
    write_change,
)

__all__ = ["identity_group"]


def _hex_key(value: str, what: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter(f"{what} must be hex") from None
    if len(key) != 32:
        raise click.BadParameter(f"{what} must be 32 bytes (64 hex digits)")
    return key


def _common(f: Any) -> Any:
    f = click.option("--genesis", "genesis_path", envvar="COURTLEDGER_GENESIS", required=True,
                     type=click.Path(path_type=Path), help="The consortium's genesis.toml.")(f)
    f = click.option("--key", "key_path", type=click.Path(path_type=Path), default=None,
                     help="The signing admin's identity key (not needed with --out).")(f)
    f = click.option("--signer-court", default=None,
                     help="The signing admin's court (default: from genesis).")(f)
    f = click.option("--node", envvar="COURTLEDGER_NODE", default="http://127.0.0.1:7200",
                     show_default=True, help="Internal API of any node.")(f)
    f = click.option("--out", default=None, type=click.Path(path_type=Path),
                     help="Write a change file for approvals instead of submitting.")(f)
    f = click.option("--wait", is_flag=True, help="Wait until committed.")(f)
    return f


def _finish(genesis_path: Path, change: dict[str, Any], key_path: Path | None,
            signer_court: str | None, node: str, out: Path | None, wait: bool) -> None:
    g = load_genesis_or_fail(genesis_path)
    if out is not None:
        write_change(out, g, "identity", change)
        click.echo(f"wrote {out}: identity {change['op']} {change['id']}; "
                   "collect approvals with `courtledger member approve`")
        return
    if key_path is None:
        raise click.UsageError("--key (the court admin's key) or --out")
    tmp = Path(str(key_path) + ".change.tmp")
    # One code path for signed entries: through a change file with no approvals.
    try:
        write_change(tmp, g, "identity", change)
        doc, decoded = read_change(tmp, g)
    finally:
        tmp.unlink(missing_ok=True)
    env = change_envelope(g, doc, decoded, load_key(key_path), signer_court)
    submit_change(node, env, wait)


@click.group("identity")
def identity_group() -> None:
    """Add, rotate or revoke a court's identities (signed by the court's admin)."""


@identity_group.command("add")
@_common
@click.option("--id", "ident", required=True, help="The new identity's id (never reused).")
@click.option("--court", required=True, help="The identity's court (法院代字).")
@click.option("--roles", default=None, help="Comma-separated roles (or from --public-part).")
@click.option("--public-key", default=None, help="The identity's public key, hex.")
@click.option("--public-part", default=None, type=click.Path(path_type=Path),
              help="keygen --identity's ID.identity.toml instead of --public-key/--roles.")
def add(genesis_path: Path, key_path: Path | None, signer_court: str | None, node: str,
        out: Path | None, wait: bool, ident: str, court: str, roles: str | None,
        public_key: str | None, public_part: Path | None) -> None:
    """Add an identity: from the next block its key may sign the kinds its roles allow."""
    role_list = [r.strip() for r in roles.split(",")] if roles else None
    pk: bytes | None = _hex_key(public_key, "--public-key") if public_key else None
    if public_part is not None:
        doc = read_toml(public_part)
        items = doc.get("identities") or [{}]
        pk = pk or _hex_key(str(items[0].get("public_key", "")), "public part's public_key")
        role_list = role_list or list(items[0].get("roles", []))
    if pk is None or not role_list:
        raise click.UsageError("give --public-key and --roles, or --public-part")
    change = {"op": "add", "id": ident, "court": court, "roles": role_list, "public_key": pk}
    _finish(genesis_path, change, key_path, signer_court, node, out, wait)


@identity_group.command("rotate")
@_common
@click.option("--id", "ident", required=True)
@click.option("--court", required=True, help="The identity's court (法院代字).")
@click.option("--public-key", required=True, help="The identity's current public key, hex.")
@click.option("--new-public-key", default=None, help="The new public key, hex.")
@click.option("--new-key", default=None, type=click.Path(path_type=Path),
              help="The new key file (only its public half is used).")
def rotate(genesis_path: Path, key_path: Path | None, signer_court: str | None, node: str,
           out: Path | None, wait: bool, ident: str, court: str, public_key: str,
           new_public_key: str | None, new_key: Path | None) -> None:
    """Move an identity to a new key; the old key signs nothing from the next block."""
    if new_key is not None:
        new = load_key(new_key).public_key()
    elif new_public_key:
        new = _hex_key(new_public_key, "--new-public-key")
    else:
        raise click.UsageError("give --new-public-key or --new-key")
    change = {"op": "rotate", "id": ident, "court": court,
              "public_key": _hex_key(public_key, "--public-key"), "new_public_key": new}
    _finish(genesis_path, change, key_path, signer_court, node, out, wait)


@identity_group.command("revoke")
@_common
@click.option("--id", "ident", required=True)
@click.option("--court", required=True, help="The identity's court (法院代字).")
@click.option("--public-key", required=True, help="The identity's current public key, hex.")
@click.option("--compromised-since", default=None,
              help="Since when the key was unsafe (ms or ISO 8601 with zone): the verifier "
                   "flags entries it signed after this.")
def revoke(genesis_path: Path, key_path: Path | None, signer_court: str | None, node: str,
           out: Path | None, wait: bool, ident: str, court: str, public_key: str,
           compromised_since: str | None) -> None:
    """Revoke an identity: its key signs nothing from the next block."""
    change: dict[str, Any] = {"op": "revoke", "id": ident, "court": court,
                              "public_key": _hex_key(public_key, "--public-key")}
    if compromised_since is not None:
        change["compromised_since"] = parse_time_ms(compromised_since)
    _finish(genesis_path, change, key_path, signer_court, node, out, wait)
