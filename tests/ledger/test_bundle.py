"""Chain bundles: streaming write and read, framing and order errors naming the offset.

Budget: under 1 s.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest

from ledger.bundle import BundleError, BundleWriter, read_bundle, write_store_bundle
from ledger.crypto import hash_object
from ledger.encoding import canonical
from ledger.store import LedgerStore
from tests.ledger.test_store import ChainBuilder


@pytest.fixture
def exported(tmp_path: Path, world: Any) -> tuple[bytes, ChainBuilder]:
    chain = ChainBuilder(world)
    with LedgerStore.open(tmp_path / "db", world.genesis, create=True) as store:
        for i in range(4):
            store.append_block(chain.add(chain.documents(i + 1)), raft_index=i + 1)
        for height in (2, 4):
            cp = chain.checkpoint(height)
            store.put_checkpoint(cp, chain.sigs(cp, ["node-a", "node-b"]))
        out = io.BytesIO()
        size = write_store_bundle(store, out)
    data = out.getvalue()
    assert size == len(data)
    return data, chain


def test_round_trip(exported: tuple[bytes, ChainBuilder], world: Any) -> None:
    data, chain = exported
    frames = list(read_bundle(io.BytesIO(data)))
    assert [f.kind for f in frames] == ["genesis"] + ["block"] * 4 + ["checkpoint"] * 2
    genesis = frames[0].value
    assert hash_object(world.alg, genesis["block"]["header"]) == world.genesis.chain_id
    assert genesis["consortium"] == world.genesis.consortium
    assert [f.value["block"] for f in frames[1:5]] == chain.blocks
    assert frames[5].value["checkpoint"] == chain.checkpoint(2)
    assert [s["node"] for s in frames[6].value["signatures"]] == ["node-a", "node-b"]
    # Offsets point at each frame's length prefix.
    for f in frames:
        (n,) = struct.unpack(">I", data[f.offset : f.offset + 4])
        assert data[f.offset + 4 : f.offset + 4 + n] == canonical(f.value)


def test_truncation_anywhere_names_the_offset(exported: tuple[bytes, ChainBuilder]) -> None:
    data, _ = exported
    offsets = [f.offset for f in read_bundle(io.BytesIO(data))] + [len(data)]
    # Cut inside every frame's length prefix and inside every frame's body.
    for start, end in zip(offsets, offsets[1:], strict=False):
        for cut in (start + 2, start + 4, (start + end) // 2, end - 1):
            with pytest.raises(BundleError) as info:
                list(read_bundle(io.BytesIO(data[:cut])))
            assert info.value.offset == start, (cut, info.value.detail)
            assert f"offset {start}" in info.value.detail
    # A cut exactly between frames is a complete, shorter bundle.
    assert len(list(read_bundle(io.BytesIO(data[: offsets[3]])))) == 3


def _frames(*objs: Any) -> bytes:
    out = b""
    for obj in objs:
        body = canonical(obj)
        out += struct.pack(">I", len(body)) + body
    return out


def test_order_and_form_errors(exported: tuple[bytes, ChainBuilder], world: Any) -> None:
    _, chain = exported
    g = {"block": world.genesis.block, "consortium": world.genesis.consortium}
    b1, b2 = ({"block": b} for b in chain.blocks[:2])
    cp = {"checkpoint": chain.checkpoint(1), "signatures": []}
    bad = {
        "empty": b"",
        "no genesis first": _frames(b1),
        "gap": _frames(g, b2),
        "block after checkpoints": _frames(g, b1, cp, b2),
        "unknown frame": _frames(g, {"note": "hi"}),
        "not a map": _frames(g, [1, 2]),
        "zero length": _frames(g) + b"\x00\x00\x00\x00",
        "huge length": _frames(g) + b"\xff\xff\xff\xff",
        "non-canonical": _frames(g) + struct.pack(">I", 3) + b"\x81\xa1a",
    }
    for name, data in bad.items():
        with pytest.raises(BundleError):
            list(read_bundle(io.BytesIO(data)))
            pytest.fail(f"{name} was read")
    assert [f.kind for f in read_bundle(io.BytesIO(_frames(g, b1, b2, cp)))] == [
        "genesis",
        "block",
        "block",
        "checkpoint",
    ]


def test_writer_refuses_out_of_order(world: Any, exported: tuple[bytes, ChainBuilder]) -> None:
    _, chain = exported
    w = BundleWriter(io.BytesIO())
    with pytest.raises(ValueError):
        w.block(chain.blocks[0])
    w.genesis(world.genesis.block, world.genesis.consortium)
    with pytest.raises(ValueError):
        w.block(chain.blocks[1])
    w.block(chain.blocks[0])
    w.checkpoint(chain.checkpoint(1), [])
    with pytest.raises(ValueError):
        w.block(chain.blocks[1])


def test_random_damage_only_raises_bundle_errors(exported: tuple[bytes, ChainBuilder]) -> None:
    import random

    data, _ = exported
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            for _frame in read_bundle(io.BytesIO(bytes(damaged))):
                pass
        except BundleError:
            continue
        except Exception as exc:  # the point of the test: nothing else escapes
            pytest.fail(f"seed {seed}: {type(exc).__name__}: {exc}")
