"""The public verification page (issue 10), served by the public app at ``/``.

The page is static: HTML, ES modules and CSS in this folder, with no build step and nothing
fetched from anywhere but this listener. It hashes a file in the browser, asks
``GET /v1/verify/{sha256}``, fetches the receipt of each match and verifies it itself
(canonical MessagePack, RFC 9162 inclusion, membership proofs, the courts' Ed25519 signatures)
against the trust anchors this module embeds in the page and serves as ``/consortium.json``:
the chain id, the hash algorithm, the genesis nodes' keys and the receipt quorum.

Why embed as well as serve: the anchors arrive with the page itself, so the page needs no
extra request before it can verify, and a reader can compare the chain id and key
fingerprints it shows with those printed on a court's paper notice.

Use :func:`summarize_genesis` on a parsed genesis and pass the result to
:func:`mount_public_page`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response

from ledger.errors import GenesisError

__all__ = ["CONSORTIUM_FORMAT", "consortium_document", "mount_public_page", "summarize_genesis"]

CONSORTIUM_FORMAT = "courtledger-consortium/1"

_HERE = Path(__file__).resolve().parent

#: Files served under /static/, with their media types. A fixed list: nothing else in this
#: folder (the Python source, for one) is ever served.
STATIC_FILES: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "canonical.js": "text/javascript; charset=utf-8",
    "hashes.js": "text/javascript; charset=utf-8",
    "verify.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: Content-Security-Policy of every page response: only this origin's scripts and styles, no
#: inline script, no frames, no forms posting anywhere. The page fetches only this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_ANCHORS_MARK = "<!--CONSORTIUM-->"


def _hex(value: Any, size: int, what: str) -> str:
    """Lowercase hex of ``value`` (bytes or hex text) that must be ``size`` bytes."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError as exc:
            raise GenesisError(f"{what} is not hex") from exc
    else:
        raise GenesisError(f"{what} must be bytes or hex, not {type(value).__name__}")
    if len(raw) != size:
        raise GenesisError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw.hex()


def summarize_genesis(genesis: Any) -> dict[str, Any]:
    """The page's anchors from a parsed genesis (``ledger.genesis.Genesis`` or alike).

    Reads ``chain_id``, ``chain_name``, ``hash_alg``, ``params.receipt_quorum`` and ``nodes``
    (each with ``id``, ``court``, ``public_key``, ``role``) by attribute, so this module does not
    depend on the genesis parser's internals.
    """
    return {
        "chain_id": genesis.chain_id,
        "chain_name": genesis.chain_name,
        "hash_alg": genesis.hash_alg,
        "receipt_quorum": genesis.params.receipt_quorum,
        "sig_alg": getattr(genesis.params, "sig_alg", "ed25519"),
        "nodes": [
            {"id": n.id, "court": n.court, "public_key": n.public_key, "role": n.role}
            for n in genesis.nodes
        ],
    }


def consortium_document(genesis_summary: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a genesis summary and return the JSON document the page pins.

    ``genesis_summary`` holds ``chain_id`` (32 bytes or hex), ``chain_name``, ``hash_alg``
    (``sha256`` | ``sm3``), ``receipt_quorum`` (``majority`` | ``two_thirds``; also read from
    ``params``), optionally ``sig_alg`` (only ``ed25519``), and ``nodes``: ``[{id, court,
    public_key (32 bytes or hex), role (voter | learner)}]`` in genesis order. A consortium map
    (DESIGN §2) with ``chain_id`` added is accepted as it is. Raises :class:`GenesisError`.
    """
    params = genesis_summary.get("params") or {}
    quorum = genesis_summary.get("receipt_quorum", params.get("receipt_quorum", "majority"))
    sig_alg = genesis_summary.get("sig_alg", params.get("sig_alg", "ed25519"))
    hash_alg = genesis_summary.get("hash_alg")
    if hash_alg not in ("sha256", "sm3"):
        raise GenesisError(f"hash_alg {hash_alg!r} is not sha256 or sm3")
    if quorum not in ("majority", "two_thirds"):
        raise GenesisError(f"receipt_quorum {quorum!r} is not majority or two_thirds")
    if sig_alg != "ed25519":
        raise GenesisError(f"sig_alg {sig_alg!r}: the page verifies ed25519 only")
    if "chain_id" not in genesis_summary:
        raise GenesisError("the genesis summary has no chain_id")
    nodes_in: Iterable[Mapping[str, Any]] = genesis_summary.get("nodes") or []
    nodes = []
    seen: set[str] = set()
    for i, n in enumerate(nodes_in):
        node_id, court, role = n.get("id"), n.get("court"), n.get("role")
        if not isinstance(node_id, str) or not node_id or node_id in seen:
            raise GenesisError(f"nodes[{i}].id is missing or repeated")
        if role not in ("voter", "learner"):
            raise GenesisError(f"nodes[{i}].role {role!r} is not voter or learner")
        seen.add(node_id)
        nodes.append(
            {
                "id": node_id,
                "court": str(court or ""),
                "role": role,
                "public_key": _hex(n.get("public_key"), 32, f"nodes[{i}].public_key"),
            }
        )
    if not any(n["role"] == "voter" for n in nodes):
        raise GenesisError("the genesis summary has no voter")
    return {
        "format": CONSORTIUM_FORMAT,
        "chain_id": _hex(genesis_summary["chain_id"], 32, "chain_id"),
        "chain_name": str(genesis_summary.get("chain_name") or ""),
        "hash_alg": hash_alg,
        "sig_alg": sig_alg,
        "receipt_quorum": quorum,
        "nodes": nodes,
    }


def _embed(index_html: str, doc: Mapping[str, Any]) -> str:
    """Put the anchors into the page as inert JSON (not script: the CSP allows no inline JS)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    # "</" could close the script element early; JSON allows "\/" for "/".
    text = text.replace("</", "<\\/")
    block = f'<script type="application/json" id="consortium">{text}</script>'
    return index_html.replace(_ANCHORS_MARK, block, 1)


def mount_public_page(app: FastAPI, *, genesis_summary: Mapping[str, Any]) -> None:
    """Serve the verification page at ``/``, its files at ``/static/…`` and ``/consortium.json``.

    The files are read once here, so a request never touches the disk and a missing file fails
    the node at start rather than a reader later. Raises :class:`GenesisError` for a bad summary.
    """
    doc = consortium_document(genesis_summary)
    index = _embed((_HERE / "index.html").read_text(encoding="utf-8"), doc).encode("utf-8")
    files = {name: (_HERE / name).read_bytes() for name in STATIC_FILES}
    etags = {name: f'"{hashlib.sha256(body).hexdigest()[:32]}"' for name, body in files.items()}
    page_headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache"}

    async def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=page_headers)

    async def static(name: str) -> Response:
        if name not in files:
            raise HTTPException(status_code=404, detail="no such file")
        headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etags[name]}
        return Response(files[name], media_type=STATIC_FILES[name], headers=headers)

    async def consortium() -> JSONResponse:
        return JSONResponse(doc, headers={"Cache-Control": "no-cache", **_SECURITY_HEADERS})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/index.html", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
    app.add_api_route("/consortium.json", consortium, methods=["GET"], include_in_schema=False)
