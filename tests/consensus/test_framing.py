"""Strict length-prefixed frames: every malformed input is a FrameError, never a crash."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.framing import FrameError, decode_body, encode_frame, read_frame


def _read(data: bytes, max_size: int = 1024) -> object:
    async def main() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader, max_size)

    return asyncio.run(main())


def test_round_trip() -> None:
    frame = {"k": "app", "ch": "cosign", "d": b"\x00\x01", "n": [1, -2, 2**63]}
    assert _read(encode_frame(frame)) == frame


def test_clean_eof_is_none() -> None:
    assert _read(b"") is None


@pytest.mark.parametrize(
    "data, message",
    [
        (struct.pack(">I", 5000) + b"x", "exceeds the limit"),
        (b"\x00\x00", "inside a frame header"),
        (struct.pack(">I", 10) + b"abc", "inside a frame"),
        (struct.pack(">I", 0), "empty frame"),
        (struct.pack(">I", 1) + b"\xc1", "not valid msgpack"),
        (struct.pack(">I", 1) + b"\x01", "not a map"),
        (struct.pack(">I", 6) + msgpack.packb({"k": "x"}) + b"\x00", "trailing bytes"),
        (struct.pack(">I", 4) + msgpack.packb({1: 2}) + b"\x00", "trailing|not valid"),
    ],
)
def test_malformed_frames_raise(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        _read(data)


@pytest.mark.parametrize(
    "obj, message",
    [
        ({1: "x", "k": "a"}, "not valid msgpack"),
        ({b"x": 1, "k": "a"}, "not a str"),
        ({"k": "a", "m": {2: 1}}, "not valid msgpack"),
        ({"k": "a", "f": 1.5}, "floats"),
        ({"k": 3}, "'k'"),
        ({"x": 1}, "'k'"),
    ],
)
def test_semantic_checks(obj: object, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_body(msgpack.packb(obj))


def test_ext_types_refused() -> None:
    body = msgpack.packb({"k": "a", "e": msgpack.ExtType(5, b"zz")})
    with pytest.raises(FrameError, match="ext type"):
        decode_body(body)


def test_encode_refuses_oversize_and_kindless() -> None:
    with pytest.raises(FrameError):
        encode_frame({"k": "a", "d": b"x" * 100}, max_size=10)
    with pytest.raises(FrameError):
        encode_frame({"d": 1})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_as_other_errors(body: bytes) -> None:
    try:
        decode_body(body)
    except FrameError:
        pass
