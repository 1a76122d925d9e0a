"""Small helpers shared by the routers."""

from __future__ import annotations

import re
from typing import Any

from api.service import BadHash

_HEX32 = re.compile(r"^[0-9a-f]{64}$")


def parse_hex32(text: str, what: str) -> bytes:
    """A 32-byte value written as 64 lowercase hex digits."""
    if not _HEX32.match(text):
        raise BadHash(f"{what}: expected 64 lowercase hex digits")
    return bytes.fromhex(text)


def jsonable(value: Any) -> Any:
    """A ledger value with every bytes as lowercase hex (for headers and checkpoints)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [jsonable(x) for x in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
