"""Ways to tamper with a receipt, each with the check of the page that must catch it.

Shared by the browser tests (the page must refuse each) and the Python tests (the auditor,
ledger.receipts, must refuse each too), so the two verifiers are held to the same list.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ledger.encoding import canonical, decode

Receipt = dict[str, Any]


def flip_hex(s: str, i: int = 0) -> str:
    b = bytearray(bytes.fromhex(s))
    b[i] ^= 0x01
    return bytes(b).hex()


def _flip_entry(r: Receipt) -> None:
    b = bytearray(base64.b64decode(r["entry"]))
    b[len(b) // 2] ^= 0x01
    r["entry"] = base64.b64encode(bytes(b)).decode()


def _flip_entry_signature(r: Receipt) -> None:
    """A flipped bit in the envelope's own signature, re-encoded canonically (same entry_id)."""
    env = decode(base64.b64decode(r["entry"]))
    sig = bytearray(env["sig"])
    sig[5] ^= 0x01
    env["sig"] = bytes(sig)
    r["entry"] = base64.b64encode(canonical(env)).decode()


def flip_sigs(n: int) -> Callable[[Receipt], None]:
    def tamper(r: Receipt) -> None:
        for s in r["signatures"][:n]:
            s["sig"] = flip_hex(s["sig"], 10)
    return tamper


def _checkpoint(key: str, change: Callable[[Any], Any]) -> Callable[[Receipt], None]:
    def tamper(r: Receipt) -> None:
        r["checkpoint"][key] = change(r["checkpoint"][key])
    return tamper


def _receipt(key: str, change: Callable[[Any], Any]) -> Callable[[Receipt], None]:
    def tamper(r: Receipt) -> None:
        r[key] = change(r[key])
    return tamper


#: name → (how the receipt is tampered with, the check that must fail).
TAMPERS: dict[str, tuple[Callable[[Receipt], None], str]] = {
    "path": (_receipt("inclusion_path", lambda p: [flip_hex(p[0]), *p[1:]]), "inclusion"),
    "entry": (_flip_entry, "entry"),
    "entry_signature": (_flip_entry_signature, "signer"),
    "extra_field": (lambda r: r.__setitem__("anchored", True), "format"),
    "signatures": (flip_sigs(2), "signatures"),
    "root": (_checkpoint("root", flip_hex), "inclusion"),
    "tree_size": (_checkpoint("tree_size", lambda n: n * 2), "inclusion"),
    "time": (_checkpoint("time", lambda t: t - 86_400_000), "signatures"),
    "chain": (_checkpoint("chain", flip_hex), "chain"),
    "hash_alg": (_receipt("hash_alg", lambda a: "sha256" if a == "sm3" else "sm3"), "format"),
    "duplicate_signatures": (_receipt("signatures", lambda s: [s[0]] * 3), "signatures"),
    "leaf_index": (_receipt("leaf_index", lambda i: i + 1), "inclusion"),
}
