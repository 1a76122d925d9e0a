"""``courtledger submit document|event|evidence|batch``: sign with an identity key and submit.

The 案号 and ``doc_no`` are normalised (full-width brackets, no spaces) *before* signing, since
the node refuses other forms and never rewrites a signed payload (domain/events.md,
"Conventions"). Submissions go to the internal listener's ``POST /v1/entries`` as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from api.codec import envelope_to_json
from ledger.caseno import normalise
from ledger.crypto import TAG_ENTRY, Ed25519Signer, sign_object
from ledger.genesis import Genesis, load_genesis


def sign_payload(
    genesis: Genesis,
    signer: Ed25519Signer,
    kind: str,
    body: dict[str, Any],
    *,
    case: str | None = None,
    court: str | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """Make and sign one envelope (DESIGN §2, "Entries") for this chain.

    ``court`` defaults to the court of the genesis identity holding ``signer``'s key.
    """
    pk = signer.public_key()
    if court is None:
        for ident in genesis.identities:
            if ident.public_key == pk:
                court = ident.court
                break
        else:
            raise click.ClickException("the key is not a genesis identity; pass --court")
    payload: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "court": court,
        "time": at_ms if at_ms is not None else int(time.time() * 1000),
        "nonce": os.urandom(16),
        "signer": pk,
        "body": body,
    }
    if case is not None:
        payload["case"] = normalise(case)
    if "doc_no" in body and isinstance(body["doc_no"], str):
        body["doc_no"] = normalise(body["doc_no"])
    sig = sign_object(signer, TAG_ENTRY, genesis.chain_id, payload)
    return {"payload": payload, "sig": sig}


def post_entries(
    node: str, envelopes: list[dict[str, Any]], wait: str | None, timeout: float = 30.0
) -> httpx.Response:
    """POST envelopes as JSON; raise :class:`SystemExit` 3 if the node is unreachable."""
    params = {"wait": wait} if wait else {}
    body = {"entries": [envelope_to_json(e) for e in envelopes]}
    try:
        return httpx.post(
            node.rstrip("/") + "/v1/entries", json=body, params=params, timeout=timeout
        )
    except httpx.HTTPError as exc:
        click.echo(f"courtledger: node {node} unreachable: {exc}", err=True)
        sys.exit(3)


def _file_digest(path: Path) -> tuple[bytes, int]:
    h = __import__("hashlib").sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    return h.digest(), size


def _common(f: Any) -> Any:
    f = click.option("--node", envvar="COURTLEDGER_NODE", default="http://127.0.0.1:7200",
                     show_default=True, help="Internal API of any node.")(f)
    f = click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
                     help="The signer's identity key file.")(f)
    f = click.option("--genesis", "genesis_path", envvar="COURTLEDGER_GENESIS", required=True,
                     type=click.Path(path_type=Path), help="The consortium's genesis.toml.")(f)
    f = click.option("--wait", "wait", is_flag=True,
                     help="Wait for the cosigned checkpoint and print the receipt.")(f)
    return f


def _load(genesis_path: Path, key_path: Path) -> tuple[Genesis, Ed25519Signer]:
    from ledger.errors import LedgerError

    try:
        return load_genesis(genesis_path), Ed25519Signer.from_file(key_path)
    except LedgerError as exc:
        raise click.ClickException(exc.detail) from None


def _finish(resp: httpx.Response, wait: bool) -> None:
    try:
        data = resp.json()
    except ValueError:
        data = {"error": "bad_response", "detail": resp.text[:200]}
    if resp.status_code >= 400:
        click.echo(f"courtledger: refused ({resp.status_code}) {data.get('error')}: "
                   f"{data.get('detail')}", err=True)
        sys.exit(2 if resp.status_code < 500 else 3)
    if wait:
        for e in data["entries"]:
            click.echo(json.dumps(e.get("receipt") or e, ensure_ascii=False, indent=2))
    else:
        click.echo(json.dumps(data, ensure_ascii=False))


@click.group("submit")
def submit_group() -> None:
    """Sign and submit entries to a node."""


@submit_group.command("document")
@_common
@click.option("--case", required=True, help="案号, e.g. （2025）吉0102执1203号")
@click.option("--file", "file_path", type=click.Path(path_type=Path), help="The document.")
@click.option("--sha256", "sha_hex", help="Or its SHA-256 (hex).")
@click.option("--doc-type", required=True, help="Document type, e.g. 执行裁定书")
@click.option("--doc-no", help="Document number (default: the 案号; 之一… for later ones).")
@click.option("--media-type", default="application/pdf", show_default=True)
@click.option("--size", type=int, help="Size in bytes (with --sha256).")
def submit_document(node: str, key_path: Path, genesis_path: Path, wait: bool, case: str,
                    file_path: Path | None, sha_hex: str | None, doc_type: str,
                    doc_no: str | None, media_type: str, size: int | None) -> None:
    """Anchor a case document by its SHA-256 (the file never leaves this machine)."""
    genesis, signer = _load(genesis_path, key_path)
    if file_path is not None:
        digest, size = _file_digest(file_path)
    elif sha_hex and size is not None:
        try:
            digest = bytes.fromhex(sha_hex)
        except ValueError:
            raise click.UsageError("--sha256 is not hex") from None
    else:
        raise click.UsageError("give --file, or --sha256 with --size")
    body: dict[str, Any] = {"sha256": digest, "doc_type": doc_type, "size": size,
                            "media_type": media_type, "doc_no": doc_no or case}
    env = sign_payload(genesis, signer, "document", body, case=case)
    _finish(post_entries(node, [env], "receipt" if wait else None), wait)


@submit_group.command("event")
@_common
@click.option("--case", required=True, help="案号")
@click.option("--type", "etype", required=True, help="Event type, e.g. SEIZURE")
@click.option("--occurred-at", type=int, help="ms since epoch (default now)")
@click.option("--officer", "officer_id", required=True, help="Court staff id of the actor.")
@click.option("--role", default="officer", show_default=True)
@click.option("--fields", "fields_json", default="{}", help="The event's fields as JSON.")
@click.option("--doc-ref", multiple=True, help="SHA-256 (hex) of an anchored document.")
@click.option("--evidence-ref", multiple=True, help="SHA-256 (hex) of anchored evidence.")
def submit_event(node: str, key_path: Path, genesis_path: Path, wait: bool, case: str,
                 etype: str, occurred_at: int | None, officer_id: str, role: str,
                 fields_json: str, doc_ref: tuple[str, ...],
                 evidence_ref: tuple[str, ...]) -> None:
    """Record a flow-node event (执行流程节点, domain/events.md)."""
    genesis, signer = _load(genesis_path, key_path)
    try:
        fields = json.loads(fields_json)
    except ValueError as exc:
        raise click.UsageError(f"--fields is not JSON: {exc}") from None
    body: dict[str, Any] = {
        "type": etype,
        "occurred_at": occurred_at if occurred_at is not None else int(time.time() * 1000),
        "actor": {"officer_id": officer_id, "role": role},
        "fields": fields,
    }
    if doc_ref:
        body["doc_refs"] = [bytes.fromhex(h) for h in doc_ref]
    if evidence_ref:
        body["evidence_refs"] = [bytes.fromhex(h) for h in evidence_ref]
    env = sign_payload(genesis, signer, "event", body, case=case)
    _finish(post_entries(node, [env], "receipt" if wait else None), wait)


@submit_group.command("evidence")
@_common
@click.option("--case", required=True, help="案号")
@click.option("--file", "file_path", required=True, type=click.Path(path_type=Path))
@click.option("--media-type", required=True, help="e.g. image/jpeg, video/mp4")
@click.option("--captured-at", type=int, help="ms since epoch (default now)")
@click.option("--lat", type=float, help="latitude (degrees)")
@click.option("--lon", type=float, help="longitude (degrees)")
@click.option("--device", default="", help="Capture device id (e.g. body camera).")
@click.option("--officer", "officers", multiple=True, help="Officer ids present.")
def submit_evidence(node: str, key_path: Path, genesis_path: Path, wait: bool, case: str,
                    file_path: Path, media_type: str, captured_at: int | None,
                    lat: float | None, lon: float | None, device: str,
                    officers: tuple[str, ...]) -> None:
    """Anchor on-site evidence (执行现场图片视频) by its SHA-256."""
    genesis, signer = _load(genesis_path, key_path)
    digest, size = _file_digest(file_path)
    body: dict[str, Any] = {
        "sha256": digest,
        "media_type": media_type,
        "size": size,
        "captured_at": captured_at if captured_at is not None else int(time.time() * 1000),
        "officers": list(officers),
    }
    if device:
        body["device"] = device
    if lat is not None and lon is not None:
        body["location"] = {"lat_e6": round(lat * 1e6), "lon_e6": round(lon * 1e6)}
    env = sign_payload(genesis, signer, "evidence", body, case=case)
    _finish(post_entries(node, [env], "receipt" if wait else None), wait)


@submit_group.command("batch")
@_common
@click.argument("jsonl", type=click.Path(path_type=Path))
@click.option("--chunk", default=100, show_default=True, help="Entries per request.")
def submit_batch(node: str, key_path: Path, genesis_path: Path, wait: bool, jsonl: Path,
                 chunk: int) -> None:
    """Submit a JSONL file: each line ``{"kind", "case"?, "body", "time"?}`` (bytes fields of
    ``body`` in hex, as DESIGN §5's table), signed here with ``--key``."""
    from api.codec import envelope_from_json

    genesis, signer = _load(genesis_path, key_path)
    envs = []
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise click.ClickException(f"cannot read {jsonl}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            # Reuse the JSON table: wrap the body in a dummy envelope to decode its hex fields.
            fake = {"payload": {"body": item["body"]}, "sig": ""}
            body = envelope_from_json(fake)["payload"]["body"]
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{jsonl}:{n}: {exc}") from None
        envs.append(sign_payload(genesis, signer, item["kind"], body, case=item.get("case"),
                                 at_ms=item.get("time")))
    total = 0
    for i in range(0, len(envs), chunk):
        resp = post_entries(node, envs[i:i + chunk], "receipt" if wait else "commit")
        if resp.status_code >= 400:
            _finish(resp, wait)
        total += len(resp.json()["entries"])
    click.echo(f"submitted {total} entries", err=True)
