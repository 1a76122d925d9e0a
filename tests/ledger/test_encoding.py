"""Canonical MessagePack (DESIGN §2): one value, one byte form; everything else refused.

The golden fixture (fixtures/encoding-golden.json) pins the byte form of values at every
boundary of every family, so that a msgpack upgrade cannot silently change a block hash.
Regenerate it only for a deliberate format change: ``python tests/ledger/test_encoding.py``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_DEPTH, canonical, decode
from ledger.errors import EncodingError

GOLDEN = Path(__file__).parent / "fixtures" / "encoding-golden.json"


def golden_values() -> dict[str, Any]:
    """Named values at every family boundary, plus a realistic payload and header."""
    values: dict[str, Any] = {
        "true": True,
        "false": False,
        "empty_list": [],
        "empty_map": {},
        "empty_str": "",
        "empty_bin": b"",
        "key_order": {"b": 1, "a": 2, "aa": 3, "B": 4, "é": 5, "中": 6, "": 7, "\U0001f600": 8},
        "nested": {"z": [1, [2, [3, {"y": b"\x00\xff"}]]], "a": {"k": "v"}},
        "payload": {
            "v": 1,
            "kind": "document",
            "court": "吉0102",
            "case": "（2026）吉0102执1203号",
            "time": 1_767_225_600_000,
            "nonce": bytes(range(16)),
            "signer": bytes(range(32)),
            "body": {"doc_type": "执行通知书", "sha256": bytes(32), "size": 12345},
        },
    }
    for n in [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1]:
        values[f"int_{n}"] = n
    for n in [
        1,
        31,
        32,
        33,
        127,
        128,
        129,
        255,
        256,
        32767,
        32768,
        32769,
        2**31 - 1,
        2**31,
        2**31 + 1,
        2**63,
    ]:
        values[f"int_-{n}"] = -n
    for n in [31, 32, 255, 256, 65536]:
        values[f"str_{n}"] = "x" * n
    values["str_utf8"] = "中" * 11  # 33 bytes: str8 by bytes, not by characters
    for n in [1, 255, 256, 65536]:
        values[f"bin_{n}"] = b"\xab" * n
    for n in [15, 16, 65536]:
        values[f"list_{n}"] = [0] * n
    for n in [15, 16]:
        values[f"map_{n}"] = {f"k{i:02d}": i for i in range(n)}
    return values


def _pin(data: bytes) -> str:
    """Short encodings are pinned whole; long ones by their first 16 bytes and SHA-256."""
    if len(data) <= 256:
        return data.hex()
    return f"{data[:16].hex()}…{len(data)}…{hashlib.sha256(data).hexdigest()}"


def _write_golden() -> None:  # pragma: no cover - run by hand for a deliberate format change
    data = {name: _pin(canonical(v)) for name, v in golden_values().items()}
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def test_golden_bytes() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    values = golden_values()
    assert sorted(golden) == sorted(values)
    for name, value in values.items():
        data = canonical(value)
        assert _pin(data) == golden[name], name
        assert decode(data) == value, name


def test_golden_spot_checks() -> None:
    # The families DESIGN §2 names, byte by byte.
    assert canonical(0) == b"\x00"
    assert canonical(127) == b"\x7f"
    assert canonical(128) == b"\xcc\x80"
    assert canonical(256) == b"\xcd\x01\x00"
    assert canonical(65536) == b"\xce\x00\x01\x00\x00"
    assert canonical(2**32) == b"\xcf" + (2**32).to_bytes(8, "big")
    assert canonical(-1) == b"\xff"
    assert canonical(-32) == b"\xe0"
    assert canonical(-33) == b"\xd0\xdf"
    assert canonical(-129) == b"\xd1\xff\x7f"
    assert canonical("a" * 32) == b"\xd9\x20" + b"a" * 32  # str8
    assert canonical(b"\x01") == b"\xc4\x01\x01"  # bin8, never raw str
    assert canonical({"b": 1, "a": 2}) == b"\x82\xa1a\x02\xa1b\x01"
    assert canonical(True) == b"\xc3" and canonical(False) == b"\xc2"


# --------------------------------------------------------------------------- round trips

_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values_strategy = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(
    max_examples=100, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(values_strategy)
def test_round_trip(value: Any) -> None:
    data = canonical(value)
    back = decode(data)
    assert back == value
    assert canonical(back) == data


@settings(max_examples=60, deadline=None, print_blob=True)
@given(
    st.dictionaries(st.text(max_size=6), st.integers(-(2**63), 2**64 - 1), min_size=2, max_size=8)
)
def test_key_order_does_not_matter(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert canonical(d) == canonical(reversed_d)


@settings(max_examples=60, deadline=None, print_blob=True)
@given(values_strategy)
def test_every_truncation_refused(value: Any) -> None:
    data = canonical(value)
    for cut in range(len(data)):
        with pytest.raises(EncodingError):
            decode(data[:cut])


@settings(max_examples=60, deadline=None, print_blob=True)
@given(values_strategy, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_refused(value: Any, tail: bytes) -> None:
    with pytest.raises(EncodingError):
        decode(canonical(value) + tail)


# ---------------------------------------------------------------- non-canonical forms refused


def _str8(s: bytes) -> bytes:
    return b"\xd9" + bytes([len(s)]) + s


NON_CANONICAL = {
    "unsorted keys": b"\x82\xa1b\x01\xa1a\x02",
    "duplicate keys": b"\x82\xa1a\x01\xa1a\x02",
    "nil": b"\xc0",
    "nil in list": b"\x92\x01\xc0",
    "nil as map value": b"\x81\xa1a\xc0",
    "float32": b"\xca" + struct.pack(">f", 1.5),
    "float64": b"\xcb" + struct.pack(">d", 1.5),
    "float64 integral": b"\xcb" + struct.pack(">d", 1.0),
    "fixext1": b"\xd4\x01\x00",
    "ext8": b"\xc7\x01\x05\x00",
    "timestamp ext": b"\xd6\xff\x00\x00\x00\x00",
    "uint8 for fixint": b"\xcc\x05",
    "uint16 for uint8": b"\xcd\x00\xff",
    "uint32 for uint16": b"\xce\x00\x00\xff\xff",
    "uint64 for uint32": b"\xcf\x00\x00\x00\x00\xff\xff\xff\xff",
    "int8 for positive fixint": b"\xd0\x01",
    "int8 for negative fixint": b"\xd0\xff",
    "int16 for int8": b"\xd1\xff\x80",
    "int32 for int16": b"\xd2\xff\xff\x80\x00",
    "int64 for int32": b"\xd3\xff\xff\xff\xff\x80\x00\x00\x00",
    "int16 for positive": b"\xd1\x01\x00",
    "str8 for fixstr": _str8(b"abc"),
    "str16 for str8": b"\xda\x00\x28" + b"a" * 40,
    "str32 for fixstr": b"\xdb\x00\x00\x00\x01a",
    "bin16 for bin8": b"\xc5\x00\x03abc",
    "bin32 for bin8": b"\xc6\x00\x00\x00\x01a",
    "array16 for fixarray": b"\xdc\x00\x02\x01\x02",
    "array32 for fixarray": b"\xdd\x00\x00\x00\x01\x01",
    "map16 for fixmap": b"\xde\x00\x01\xa1a\x01",
    "map32 for fixmap": b"\xdf\x00\x00\x00\x01\xa1a\x01",
    "invalid utf-8 in str (old raw family)": b"\xa2\xff\xfe",
    "non-string key": b"\x81\x01\x02",
    "bytes key": b"\x81\xc4\x01a\x02",
    "reserved byte": b"\xc1",
    "empty": b"",
    "truncated map": b"\x82\xa1a\x01",
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_refused(name: str) -> None:
    with pytest.raises(EncodingError):
        decode(NON_CANONICAL[name])


def test_non_canonical_inside_valid_structure() -> None:
    # A non-minimal integer buried in an otherwise canonical map is still refused.
    inner = b"\x81\xa1a\xcc\x05"
    with pytest.raises(EncodingError, match="not canonical"):
        decode(b"\x91" + inner)


def test_nesting_limits() -> None:
    deep: Any = 0
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert decode(canonical(deep)) == deep  # MAX_DEPTH containers deep: accepted
    too_deep = [deep]
    with pytest.raises(EncodingError, match="nesting"):
        canonical(too_deep)
    with pytest.raises(EncodingError, match="nesting"):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(EncodingError):
        decode(b"\x91" * 100_000 + b"\x00")  # far past msgpack's own stack


def test_size_limit() -> None:
    data = canonical(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(EncodingError, match="exceeds the limit"):
        decode(data, max_size=len(data) - 1)


def test_length_claims_beyond_the_input_refused() -> None:
    # A bin32 header claiming 4 GiB over 10 bytes must fail fast, not allocate.
    with pytest.raises(EncodingError):
        decode(b"\xc6\xff\xff\xff\xff" + b"x" * 10)
    with pytest.raises(EncodingError):
        decode(b"\xdd\xff\xff\xff\xff")


@pytest.mark.parametrize(
    "value",
    [None, 1.5, 2**64, -(2**63) - 1, {1: 2}, {b"a": 1}, {"a": None}, [1, None], set(), object()],
)
def test_encoder_refuses_values_outside_the_model(value: Any) -> None:
    with pytest.raises(EncodingError):
        canonical(value)


@pytest.mark.parametrize("value", ["\ud800", {"\udfff": 1}, ["ok", {"k": "\ud800"}]])
def test_unencodable_strings_refused_as_encoding_errors(value: Any) -> None:
    # Lone surrogates have no UTF-8 form: an EncodingError, never a raw UnicodeEncodeError.
    with pytest.raises(EncodingError):
        canonical(value)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(EncodingError):
        decode("abc")  # type: ignore[arg-type]


def test_tuples_and_bytearrays_normalise() -> None:
    assert canonical((1, 2)) == canonical([1, 2])
    assert canonical(bytearray(b"ab")) == canonical(b"ab")
    assert decode(bytearray(canonical([1]))) == [1]


if __name__ == "__main__":  # pragma: no cover
    _write_golden()
