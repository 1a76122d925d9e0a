"""Length-prefixed msgpack frames for the Raft peer links.

A frame is a 4-byte big-endian length followed by that many bytes of one msgpack map with str
keys and a str ``"k"`` (the frame kind).  Raft's wire framing is consensus's own (STYLE.md): it is
not the ledger's canonical encoding, but decoding is just as strict, because every byte comes
from a socket (DESIGN §6: every input from outside is validated before use):

- the declared length must be within ``max_size`` *before* anything is buffered;
- the body must be exactly one msgpack object (no trailing bytes), a map with str keys;
- no ext types anywhere, map keys only str or bytes at any depth (msgpack's own
  ``strict_map_key``), and no float at the top level.

What is *inside* a frame's fields is checked, just as strictly, by the frame's consumer: a Raft
message by the runtime's decoder (exact fields, exact types: a float, a bytes key or an
unexpected field anywhere is refused), an application frame by the application.  Not walking
every nested value a second time here halves the decoding cost per replicated entry.

Any violation raises :class:`FrameError`; msgpack's own exceptions never escape this module.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameError",
    "decode_body",
    "encode_frame",
    "read_frame",
]

#: Largest frame body accepted by default: a 1 MiB block plus Raft envelope, with room for a
#: batch of them in one AppendEntries.  The transport takes its own limit from config.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024

_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A peer sent bytes that are not a well-formed frame; the connection must be closed."""


def encode_frame(obj: dict[str, Any], max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """Encode one frame (header and body).  Raises :class:`FrameError` if it would be refused."""
    if not isinstance(obj.get("k"), str):
        raise FrameError("a frame is a map with a str 'k' (kind)")
    try:
        body: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FrameError(f"cannot encode frame: {exc}") from exc
    if len(body) > max_size:
        raise FrameError(f"frame of {len(body)} bytes exceeds the limit of {max_size}")
    return _HEADER.pack(len(body)) + body


def _ext_refused(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack ext type {code} is not allowed in a frame")


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode and check one frame body (without its length header)."""
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_refused,
        )
    except FrameError:
        raise
    except msgpack.ExtraData as exc:
        raise FrameError("trailing bytes after the frame's msgpack object") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise FrameError(f"frame body is not valid msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise FrameError(f"frame body is a {type(obj).__name__}, not a map")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FrameError(f"frame map key {key!r} is not a str")
        if isinstance(value, float):
            raise FrameError("floats are not allowed in a frame")
    if not isinstance(obj.get("k"), str):
        raise FrameError("frame has no str 'k' (kind)")
    return obj


async def read_frame(
    reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME
) -> dict[str, Any] | None:
    """Read one frame; ``None`` on a clean end of stream between frames.

    Raises :class:`FrameError` on an oversize length, a truncated frame or a malformed body.
    """
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("stream ended inside a frame header") from exc
    (length,) = _HEADER.unpack(header)
    # Refuse before reading: a hostile length must not make us buffer gigabytes.
    if length > max_size:
        raise FrameError(f"frame length {length} exceeds the limit of {max_size}")
    if length == 0:
        raise FrameError("empty frame")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        got = len(exc.partial)
        raise FrameError(f"stream ended inside a frame ({got}/{length} bytes)") from exc
    return decode_body(body)
