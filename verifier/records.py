"""What the inspector reads: entry payloads with where and when the chain recorded them.

The engine's input is a :class:`Record` (entry id, block height, recording time, payload), so
one engine is fed from an events file (``--events FILE.jsonl``), from a LevelDB chain
(``--data DIR``) or from a node following applied blocks. The entry id is always recomputed as
``H(canonical(payload))`` with the chain's hash (DESIGN §2), never taken from the input.

Events file: one JSON object per line, ``{"recorded_at": ms, "payload": {...}}`` (an optional
``"height"``; signatures optional and ignored). Exactly the byte fields DESIGN §5 lists are hex
in JSON (``nonce``, ``signer``, ``body.sha256``, ``body.doc_refs[]`` ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ledger.crypto import hash_object


class Record:
    """One entry as the chain recorded it: ``(entry_id, height, recorded_at, payload)``.

    ``height`` is None outside a chain (events files); ``recorded_at`` is the block time in ms
    (never the submitter's choice). The entry id may be given (a node knows it) or left to
    be computed as ``H(canonical(payload))`` on first use: canonical encoding is the largest
    cost of reading an events file, and most entries are never cited by a finding.
    """

    __slots__ = ("_entry_id", "height", "recorded_at", "payload", "hash_alg")

    def __init__(self, entry_id: bytes | None, height: int | None, recorded_at: int,
                 payload: Mapping[str, Any], hash_alg: str = "sha256") -> None:
        self._entry_id = entry_id
        self.height = height
        self.recorded_at = recorded_at
        self.payload = payload
        self.hash_alg = hash_alg

    @property
    def entry_id(self) -> bytes:
        """``H(canonical(payload))`` with the chain's hash."""
        if self._entry_id is None:
            self._entry_id = hash_object(self.hash_alg, dict(self.payload))
        return self._entry_id

    @classmethod
    def of(cls, payload: Mapping[str, Any], recorded_at: int, *, height: int | None = None,
           hash_alg: str = "sha256") -> Record:
        """A record whose entry id is computed from ``payload`` when first needed."""
        return cls(None, height, recorded_at, payload, hash_alg)

    def __repr__(self) -> str:
        return (f"Record(height={self.height}, recorded_at={self.recorded_at}, "
                f"kind={self.payload.get('kind')!r}, case={self.payload.get('case')!r})")


_TOP_BYTES = ("nonce", "signer")
_BODY_BYTES = ("sha256", "sm3", "public_key", "new_public_key", "tls_fingerprint")
_BODY_BYTE_LISTS = ("doc_refs", "evidence_refs", "links")


def _unhex(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected hex str")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{where}: not hex") from None


def payload_from_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a payload written in JSON (bytes as hex, DESIGN §5) into the canonical data model."""
    # dict, not Mapping: JSON gives dicts, and the ABC check is costly per entry.
    if not isinstance(obj, dict):
        raise ValueError("payload: expected an object")
    p = dict(obj)
    for key in _TOP_BYTES:
        if key in p:
            p[key] = _unhex(p[key], key)
    body = p.get("body")
    if isinstance(body, dict):
        b = dict(body)
        for key in _BODY_BYTES:
            if key in b:
                b[key] = _unhex(b[key], f"body.{key}")
        for key in _BODY_BYTE_LISTS:
            if key in b and isinstance(b[key], list):
                b[key] = [_unhex(x, f"body.{key}[]") for x in b[key]]
        if isinstance(b.get("admin"), Mapping) and "public_key" in b["admin"]:
            b["admin"] = {**b["admin"],
                          "public_key": _unhex(b["admin"]["public_key"], "admin.public_key")}
        if isinstance(b.get("approvals"), list):
            b["approvals"] = [{**a, "sig": _unhex(a.get("sig"), "approvals[].sig")}
                              for a in b["approvals"]]
        p["body"] = b
    return p


def payload_to_json(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`payload_from_json` (bytes written as lowercase hex)."""

    def conv(x: Any) -> Any:
        if isinstance(x, bytes):
            return x.hex()
        if isinstance(x, list):
            return [conv(v) for v in x]
        if isinstance(x, Mapping):
            return {k: conv(v) for k, v in x.items()}
        return x

    out: dict[str, Any] = conv(payload)
    return out


def read_jsonl(path: str | Path, *, hash_alg: str = "sha256") -> Iterator[Record]:
    """Records of an events file, in file order. Raises ``ValueError`` naming the bad line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
                recorded_at = obj["recorded_at"]
                if not isinstance(recorded_at, int) or isinstance(recorded_at, bool):
                    raise ValueError("recorded_at must be an integer (ms)")
                payload = payload_from_json(obj["payload"])
                height = obj.get("height")
                yield Record.of(payload, recorded_at, height=height, hash_alg=hash_alg)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None


def write_jsonl(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as an events file; returns the number written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            line: dict[str, Any] = {"recorded_at": r.recorded_at,
                                    "payload": payload_to_json(r.payload)}
            if r.height is not None:
                line["height"] = r.height
            fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def records_from_blocks(blocks: Iterable[Mapping[str, Any]], *,
                        hash_alg: str = "sha256") -> Iterator[Record]:
    """Records of DESIGN §2 blocks (``header`` with ``height``/``time``, ``entries`` envelopes)."""
    for block in blocks:
        header = block["header"]
        for env in block.get("entries", []):
            yield Record.of(env["payload"], header["time"], height=header["height"],
                            hash_alg=hash_alg)
