"""Wire forms of ``POST /v1/entries`` (DESIGN §5): msgpack bodies and the JSON bytes-field table.

``application/msgpack`` is the canonical bytes of one envelope or a list of envelopes.
``application/json`` is ``{"entries": [{"payload": {...}, "sig": "<hex>"}]}`` where exactly the
fields of :data:`BYTES_FIELDS` are bytes written as lowercase hex and every other string is a
str. The conversion is strict both ways, so a JSON submission has exactly one canonical
envelope and therefore one ``entry_id``.
"""

from __future__ import annotations

import re
from typing import Any

from ledger.encoding import decode
from ledger.errors import EncodingError

_HEX = re.compile(r"^(?:[0-9a-f]{2})*$")

#: DESIGN §5: payload fields written as hex in JSON (``[]`` marks a list of bytes).
PAYLOAD_BYTES = ("nonce", "signer")
BODY_BYTES = ("sha256", "sm3", "public_key", "new_public_key", "tls_fingerprint")
BODY_BYTES_LISTS = ("doc_refs", "evidence_refs", "links")


def _from_hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value):
        raise EncodingError(f"{where}: expected lowercase hex")
    return bytes.fromhex(value)


def _to_hex(value: Any, where: str) -> str:
    if not isinstance(value, bytes):
        raise EncodingError(f"{where}: expected bytes")
    return value.hex()


def _no_bytes(value: Any, where: str) -> None:
    """Everything outside the table must be free of bytes, so the JSON form is total."""
    if isinstance(value, bytes):
        raise EncodingError(f"{where}: bytes outside the JSON bytes-field table")
    if isinstance(value, list):
        for i, x in enumerate(value):
            _no_bytes(x, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, x in value.items():
            _no_bytes(x, f"{where}.{k}")


def _convert_body(body: Any, conv: Any, where: str) -> Any:
    if not isinstance(body, dict):
        raise EncodingError(f"{where}: expected an object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        here = f"{where}.{key}"
        if key in BODY_BYTES:
            out[key] = conv(value, here)
        elif key in BODY_BYTES_LISTS:
            if not isinstance(value, list):
                raise EncodingError(f"{here}: expected a list")
            out[key] = [conv(x, f"{here}[{i}]") for i, x in enumerate(value)]
        elif key == "admin" and isinstance(value, dict):
            adm = dict(value)
            if "public_key" in adm:
                adm["public_key"] = conv(adm["public_key"], f"{here}.public_key")
            _no_bytes({k: v for k, v in adm.items() if k != "public_key"}, here)
            out[key] = adm
        elif key == "approvals" and isinstance(value, list):
            apps = []
            for i, a in enumerate(value):
                if not isinstance(a, dict):
                    raise EncodingError(f"{here}[{i}]: expected an object")
                a = dict(a)
                if "sig" in a:
                    a["sig"] = conv(a["sig"], f"{here}[{i}].sig")
                _no_bytes({k: v for k, v in a.items() if k != "sig"}, f"{here}[{i}]")
                apps.append(a)
            out[key] = apps
        else:
            if conv is _from_hex:
                _check_json_value(value, here)
            else:
                _no_bytes(value, here)
            out[key] = value
    return out


def _check_json_value(value: Any, where: str) -> None:
    """JSON values must fit the canonical data model: no null, no float."""
    if value is None:
        raise EncodingError(f"{where}: null is not allowed (omit the field)")
    if isinstance(value, float):
        raise EncodingError(f"{where}: floats are not allowed (use integers)")
    if isinstance(value, list):
        for i, x in enumerate(value):
            _check_json_value(x, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, x in value.items():
            _check_json_value(x, f"{where}.{k}")


def _convert_envelope(env: Any, conv: Any, where: str) -> dict[str, Any]:
    if not isinstance(env, dict) or set(env) != {"payload", "sig"}:
        raise EncodingError(f"{where}: an envelope is exactly {{payload, sig}}")
    payload = env["payload"]
    if not isinstance(payload, dict):
        raise EncodingError(f"{where}.payload: expected an object")
    out: dict[str, Any] = {}
    for key, value in payload.items():
        here = f"{where}.payload.{key}"
        if key in PAYLOAD_BYTES:
            out[key] = conv(value, here)
        elif key == "body":
            out[key] = _convert_body(value, conv, here)
        else:
            if conv is _from_hex:
                _check_json_value(value, here)
            else:
                _no_bytes(value, here)
            out[key] = value
    return {"payload": out, "sig": conv(env["sig"], f"{where}.sig")}


def envelope_from_json(obj: Any, where: str = "entry") -> dict[str, Any]:
    """A JSON envelope (hex bytes fields) → the envelope value; raise :class:`EncodingError`."""
    return _convert_envelope(obj, _from_hex, where)


def envelope_to_json(env: dict[str, Any]) -> dict[str, Any]:
    """An envelope → its JSON form (DESIGN §5 table)."""
    return _convert_envelope(env, _to_hex, "entry")


def parse_json_submission(obj: Any) -> list[dict[str, Any]]:
    """``{"entries": [...]}`` → envelopes."""
    if not isinstance(obj, dict) or set(obj) != {"entries"} or not isinstance(obj["entries"], list):
        raise EncodingError('body: expected {"entries": [...]}')
    if not obj["entries"]:
        raise EncodingError("body: no entries")
    return [envelope_from_json(e, f"entries[{i}]") for i, e in enumerate(obj["entries"])]


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
