"""Wire forms of ``POST /v1/entries`` (DESIGN §5): msgpack bodies and JSON bodies.

``application/msgpack`` is the canonical bytes of one envelope or a list of envelopes.
``application/json`` is ``{"entries": [{"payload": {...}, "sig": "<hex>"}]}`` with DESIGN §5's
bytes-field table, which :mod:`ledger.entries` implements (``envelope_from_json`` /
``envelope_to_json``); here we only add the batch wrapper and name the refused index.
"""

from __future__ import annotations

from typing import Any

from ledger.encoding import decode
from ledger.entries import envelope_from_json, envelope_to_json
from ledger.errors import EncodingError, LedgerError

__all__ = [
    "envelope_from_json",
    "envelope_to_json",
    "parse_json_submission",
    "parse_msgpack_submission",
]


def parse_json_submission(obj: Any) -> list[dict[str, Any]]:
    """``{"entries": [...]}`` → envelopes; a bad one is refused naming its index."""
    if not isinstance(obj, dict) or set(obj) != {"entries"} or not isinstance(obj["entries"], list):
        raise EncodingError('body: expected {"entries": [...]}')
    if not obj["entries"]:
        raise EncodingError("body: no entries")
    out = []
    for i, item in enumerate(obj["entries"]):
        try:
            out.append(envelope_from_json(item))
        except LedgerError as exc:
            exc.detail = f"entries[{i}]: {exc.detail}"
            exc.args = (exc.detail,)
            raise
    return out


def parse_msgpack_submission(data: bytes, max_size: int) -> list[dict[str, Any]]:
    """Canonical msgpack of one envelope or a list of envelopes → envelopes."""
    value = decode(data, max_size=max_size)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise EncodingError("body: no entries")
    for i, env in enumerate(items):
        if not isinstance(env, dict) or set(env) != {"payload", "sig"}:
            raise EncodingError(f"entries[{i}]: an envelope is exactly {{payload, sig}}")
    return items
