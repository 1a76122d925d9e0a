"""Canonical MessagePack (DESIGN §2): one value, exactly one byte form, in any language.

This module is the ledger's only caller of msgpack. Allowed values are ``bool``, ``int`` in
−2^63 … 2^64−1, ``str`` (UTF-8), ``bytes``, ``list`` and ``dict`` with ``str`` keys. There is
no nil, no float and no ext type; an absent field is omitted, never nil.

The byte form: map keys sorted by their UTF-8 bytes; every integer, string, binary, array and
map in the smallest family that holds it (what msgpack-python emits). :func:`decode` accepts
only bytes that :func:`canonical` would have produced: it re-encodes what it decoded and
refuses the input if the bytes differ. That single comparison refuses unsorted or duplicate
keys, non-minimal integers and lengths, and the old raw string family, without a parser of our
own that could disagree with the encoder.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ledger.errors import EncodingError

#: Deepest nesting accepted, counting the outermost container as 1. Our formats need 6.
MAX_DEPTH = 32

#: Largest input :func:`decode` accepts unless the caller passes its own limit.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

_NIL = "nil is not allowed: omit an absent field instead"
_FLOAT = "floats are not allowed: use integers (times are ms since the epoch)"

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

Value = Any
"""A value of the canonical data model (bool, int, str, bytes, list, dict[str, ...])."""


_LEAVES = frozenset({bool, str, bytes})


def _check_key(key: object) -> str:
    if type(key) is not str:
        if isinstance(key, str):
            return str(key)
        raise EncodingError(f"map key {key!r} is not a string")
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            # A lone surrogate has no UTF-8 form; say so as an EncodingError rather than
            # let the codec's error escape (every failure here is an EncodingError).
            raise EncodingError(f"map key {key!r} is not valid Unicode: {exc.reason}") from exc
    return key


def _normalise(obj: Value, depth: int) -> Value:
    """Check ``obj`` against the data model and return it with every map's keys sorted.

    Dispatches on the exact type first (the hot path: this runs for every signed or hashed
    object), then falls back to ``isinstance`` for subclasses.
    """
    if depth > MAX_DEPTH:
        raise EncodingError(f"nesting deeper than {MAX_DEPTH}")
    kind = type(obj)
    if kind in _LEAVES:
        return obj
    if kind is int:
        if not _INT_MIN <= obj <= _INT_MAX:
            raise EncodingError(f"integer {obj} outside −2^63 … 2^64−1")
        return obj
    if kind is dict:
        # UTF-8 preserves code point order, so sorting the str keys sorts their UTF-8 bytes.
        keys = sorted(_check_key(key) for key in obj)
        child = depth + 1
        return {
            key: value if type(value) in _LEAVES else _normalise(value, child)
            for key in keys
            for value in (obj[key],)
        }
    if kind is list or kind is tuple:
        child = depth + 1
        return [x if type(x) in _LEAVES else _normalise(x, child) for x in obj]
    # Subclasses and the remaining allowed types; bool before int (bool subclasses int).
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return _normalise(int(obj), depth)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj)
    if isinstance(obj, list | tuple):
        return _normalise(list(obj), depth)
    if isinstance(obj, dict):
        return _normalise(dict(obj), depth)
    if obj is None:
        raise EncodingError(_NIL)
    if isinstance(obj, float):
        raise EncodingError(_FLOAT)
    raise EncodingError(f"type {type(obj).__name__} cannot be encoded")


def canonical(obj: Value) -> bytes:
    """Return the one canonical byte form of ``obj``.

    Raises :class:`EncodingError` if ``obj`` is outside the data model.
    """
    normalised = _normalise(obj, 1)
    try:
        packed: bytes = msgpack.packb(normalised, use_bin_type=True)
    except (ValueError, OverflowError, TypeError) as exc:  # pragma: no cover - guarded above
        raise EncodingError(f"cannot encode: {exc}") from exc
    return packed


def _refuse_ext(code: int, data: bytes) -> Value:
    raise EncodingError(f"ext type {code} is not allowed")


_SCALARS = (bool, int, str, bytes)


class _Checker:
    """msgpack hooks that hold a decoded value to the data model as it is built.

    msgpack calls the hooks bottom-up, once per container, so every element is checked once and
    each container's depth is one more than its deepest child. What the hooks cannot see (integer
    and length families) the single re-encoding in :func:`decode` catches.
    """

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth: dict[int, int] = {}

    def _element_depth(self, value: Value) -> int:
        kind = type(value)
        if kind is list or kind is dict:
            return self.depth[id(value)]
        if kind in _SCALARS:
            return 0
        if value is None:
            raise EncodingError(_NIL)
        if kind is float:
            raise EncodingError(_FLOAT)
        raise EncodingError(f"type {kind.__name__} is not allowed")  # pragma: no cover

    def _record(self, container: Value, deepest_child: int) -> None:
        level = deepest_child + 1
        if level > MAX_DEPTH:
            raise EncodingError(f"nesting deeper than {MAX_DEPTH}")
        self.depth[id(container)] = level

    def list_hook(self, items: list[Value]) -> list[Value]:
        deepest = 0
        for item in items:
            deepest = max(deepest, self._element_depth(item))
        self._record(items, deepest)
        return items

    def pairs_hook(self, pairs: list[tuple[Any, Any]]) -> dict[str, Value]:
        result: dict[str, Value] = {}
        deepest = 0
        previous: str | None = None
        for key, value in pairs:
            if type(key) is not str:
                raise EncodingError(f"map key {key!r} is not a string")
            # UTF-8 preserves code point order, so comparing str compares their UTF-8 bytes.
            if previous is not None and key <= previous:
                if key == previous:
                    raise EncodingError(f"duplicate map key {key!r}")
                raise EncodingError(f"not canonical: map key {key!r} is out of order")
            previous = key
            deepest = max(deepest, self._element_depth(value))
            result[key] = value
        self._record(result, deepest)
        return result


def decode(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Value:
    """Decode canonical bytes, refusing anything :func:`canonical` would not produce.

    Refused with :class:`EncodingError`: input larger than ``max_size``, trailing bytes,
    truncated input, nil, floats, ext types, non-string or duplicate map keys, unsorted keys,
    integers or lengths not in their smallest family, invalid UTF-8, nesting deeper than
    :data:`MAX_DEPTH`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise EncodingError(f"input of {len(data)} bytes exceeds the limit of {max_size}")
    if not data:
        raise EncodingError("empty input")
    try:
        checker = _Checker()
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            object_pairs_hook=checker.pairs_hook,
            list_hook=checker.list_hook,
            ext_hook=_refuse_ext,
        )
        checker._element_depth(value)
    except EncodingError:
        raise
    except msgpack.ExtraData as exc:
        raise EncodingError("trailing bytes after the value") from exc
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        # msgpack raises ValueError subclasses for truncated input and bad formats,
        # UnicodeDecodeError for invalid UTF-8 in a str.
        raise EncodingError(f"malformed MessagePack: {exc}") from exc
    except Exception as exc:  # msgpack's C extension may raise others on hostile input
        raise EncodingError(f"malformed MessagePack: {type(exc).__name__}: {exc}") from exc
    # The hooks proved the model (types, key order, depth); what is left to compare is the
    # byte families, and msgpack-python emits exactly the smallest ones (DESIGN §2).
    if msgpack.packb(value, use_bin_type=True) != data:
        raise EncodingError(
            "not canonical: keys unsorted, or an integer or length not in its smallest family"
        )
    return value
