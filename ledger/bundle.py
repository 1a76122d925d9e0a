"""Chain bundles: the whole chain as one file of frames (DESIGN §2 "Chain bundles").

Each frame is a 4-byte big-endian length followed by that many bytes: the canonical encoding of
a map. The frames are, in order:

1. ``{"block": <genesis block>, "consortium": <consortium map>}``;
2. ``{"block": <block>}`` for heights 1, 2, … without gaps;
3. any number of ``{"checkpoint": <checkpoint>, "signatures": [{"node", "sig"}]}``.

With the pinned chain id an auditor needs nothing else: the genesis block's hash is the chain
id, and its header names ``H(canonical(consortium))``. Writing and reading stream frame by
frame, so a bundle of any size passes through constant memory. This module checks the framing
and the order of frames; whether the chain is valid is ``ledger.chain``'s question.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from ledger.encoding import DEFAULT_MAX_SIZE, canonical, decode
from ledger.errors import EncodingError

__all__ = [
    "BundleError",
    "BundleReader",
    "BundleWriter",
    "Frame",
    "read_bundle",
    "write_store_bundle",
]

_LEN = struct.Struct(">I")
#: Largest frame accepted by default (a block is at most ``max_block_bytes``, well below).
MAX_FRAME = DEFAULT_MAX_SIZE


class BundleError(EncodingError):
    """A bundle that is truncated, mis-framed or out of order; ``offset`` locates the frame."""

    code = "bad_bundle"

    def __init__(self, detail: str, *, offset: int) -> None:
        super().__init__(f"{detail} (frame at byte offset {offset})")
        self.offset = offset


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its ``kind``, the byte ``offset`` where it starts, and its map."""

    kind: Literal["genesis", "block", "checkpoint"]
    offset: int
    value: dict[str, Any]


class BundleWriter:
    """Writes frames to a binary stream in the order DESIGN §2 requires (and checks it)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._next_height = 0
        self._in_checkpoints = False
        self.offset = 0

    def _frame(self, obj: Mapping[str, Any]) -> None:
        data = canonical(dict(obj))
        self._out.write(_LEN.pack(len(data)))
        self._out.write(data)
        self.offset += 4 + len(data)

    def genesis(self, block: Mapping[str, Any], consortium: Mapping[str, Any]) -> None:
        """The first frame: the genesis block and the consortium map."""
        if self._next_height != 0:
            raise ValueError("the genesis frame comes first, once")
        self._frame({"block": dict(block), "consortium": dict(consortium)})
        self._next_height = 1

    def block(self, block: Mapping[str, Any]) -> None:
        """The next block (heights 1, 2, … in order, before any checkpoint)."""
        height = block["header"]["height"]
        if self._next_height == 0 or self._in_checkpoints or height != self._next_height:
            raise ValueError(f"block {height} out of order (expected {self._next_height})")
        self._frame({"block": dict(block)})
        self._next_height += 1

    def checkpoint(self, cp: Mapping[str, Any], sigs: Iterable[Mapping[str, Any]]) -> None:
        """A checkpoint with its signatures (after every block)."""
        if self._next_height == 0:
            raise ValueError("the genesis frame comes first")
        self._in_checkpoints = True
        signatures = [{"node": s["node"], "sig": bytes(s["sig"])} for s in sigs]
        self._frame({"checkpoint": dict(cp), "signatures": signatures})


def write_store_bundle(store: Any, out: BinaryIO) -> int:
    """Export a ``ledger.store.LedgerStore`` as a bundle; return the bytes written.

    Every block and checkpoint is read through the store's checks, so a damaged store stops
    the export with a ``CorruptionError`` instead of writing bad data.
    """
    writer = BundleWriter(out)
    writer.genesis(store.genesis.block, store.genesis.consortium)
    head = store.head()[0]
    for block in store.iter_blocks(1, head + 1):
        writer.block(block)
    for height in range(0, head + 1):
        signed = store.checkpoint(height)
        if signed is not None:
            writer.checkpoint(*signed)
    return writer.offset


class BundleReader:
    """Reads frames from a binary stream, checking framing and order as it goes."""

    def __init__(self, src: BinaryIO, *, max_frame: int = MAX_FRAME) -> None:
        self._src = src
        self._max = max_frame
        self.offset = 0
        self._next_height = 0
        self._in_checkpoints = False

    def _read_exact(self, n: int, start: int, what: str) -> bytes | None:
        chunks: list[bytes] = []
        got = 0
        while got < n:
            chunk = self._src.read(n - got)
            if not chunk:
                if got == 0 and what == "length":
                    return None
                raise BundleError(f"truncated {what}: {got} of {n} bytes", offset=start)
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        start = self.offset
        head = self._read_exact(4, start, "length")
        if head is None:
            if self._next_height == 0:
                raise BundleError("empty bundle: no genesis frame", offset=start)
            raise StopIteration
        (length,) = _LEN.unpack(head)
        if length == 0 or length > self._max:
            raise BundleError(f"frame length {length} outside 1 … {self._max}", offset=start)
        data = self._read_exact(length, start, "frame")
        assert data is not None
        self.offset = start + 4 + length
        try:
            obj = decode(data, max_size=self._max)
        except EncodingError as exc:
            raise BundleError(f"frame is not canonical: {exc.detail}", offset=start) from None
        if not isinstance(obj, dict):
            raise BundleError("frame is not a map", offset=start)
        return self._classify(obj, start)

    def _classify(self, obj: dict[str, Any], start: int) -> Frame:
        keys = set(obj)
        if self._next_height == 0:
            if keys != {"block", "consortium"}:
                raise BundleError("the first frame must be {block, consortium}", offset=start)
            self._check_height(obj["block"], 0, start)
            self._next_height = 1
            return Frame("genesis", start, obj)
        if keys == {"block"}:
            if self._in_checkpoints:
                raise BundleError("a block after the checkpoints", offset=start)
            self._check_height(obj["block"], self._next_height, start)
            self._next_height += 1
            return Frame("block", start, obj)
        if keys == {"checkpoint", "signatures"}:
            self._in_checkpoints = True
            if not isinstance(obj["signatures"], list):
                raise BundleError("checkpoint signatures are not a list", offset=start)
            return Frame("checkpoint", start, obj)
        raise BundleError(f"unknown frame with keys {sorted(keys)}", offset=start)

    @staticmethod
    def _check_height(block: Any, want: int, start: int) -> None:
        header = block.get("header") if isinstance(block, dict) else None
        height = header.get("height") if isinstance(header, dict) else None
        if height != want:
            raise BundleError(f"block at height {height!r} where {want} belongs", offset=start)


def read_bundle(src: BinaryIO, *, max_frame: int = MAX_FRAME) -> Iterator[Frame]:
    """Iterate over the frames of a bundle; raise :class:`BundleError` naming the offset."""
    return iter(BundleReader(src, max_frame=max_frame))
