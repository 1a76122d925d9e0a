"""The LevelDB store: appends, reads, indexes, checkpoints, crash safety and tamper detection.

Budget: about 30 s, most of it the 200 SIGKILLs (each a forked child appending synced blocks).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import plyvel
import pytest

from ledger.blocks import build_block, entry_leaf
from ledger.checkpoints import make_checkpoint, sign_checkpoint
from ledger.crypto import Ed25519Signer, hash_object, sha256
from ledger.entries import entry_id
from ledger.errors import CheckpointError, CorruptionError, StoreError
from ledger.genesis import Genesis
from ledger.merkle import MerkleLog, verify_inclusion
from ledger.store import LedgerStore


class ChainBuilder:
    """Builds a valid chain on top of a genesis the way a leader would (ledger.blocks)."""

    def __init__(self, world: Any, proposer: str = "node-a") -> None:
        self.world = world
        self.genesis: Genesis = world.genesis
        self.alg = self.genesis.hash_alg
        self.chain_id = self.genesis.chain_id
        self.log = MerkleLog(self.alg)
        self.prev: dict[str, Any] = self.genesis.header
        self.blocks: list[dict[str, Any]] = []
        self.proposer = proposer
        self.n = 0

    def signer(self, node: str) -> Ed25519Signer:
        signer: Ed25519Signer = self.world_key(node)
        return signer

    def world_key(self, name: str) -> Any:
        import hashlib

        return Ed25519Signer(hashlib.sha256(b"courtledger test key " + name.encode()).digest())

    def documents(self, count: int, case: str | None = None) -> list[dict[str, Any]]:
        out = []
        for _ in range(count):
            self.n += 1
            env = self.world.document("clerk-0", self.n)
            if case is not None:
                env = self.world.entry("clerk-0", "document", env["payload"]["body"], case=case)
            out.append(env)
        return out

    def add(self, entries: list[dict[str, Any]], *, proposer: str | None = None) -> dict[str, Any]:
        who = proposer or self.proposer
        block = build_block(
            self.signer(who),
            self.chain_id,
            self.prev,
            entries,
            log=self.log,
            time=self.prev["time"] + 1000,
            proposer=who,
            term=1,
        )
        for env in entries:
            self.log.append(entry_leaf(self.alg, env))
        self.prev = block["header"]
        self.blocks.append(block)
        return block

    def checkpoint(self, height: int) -> dict[str, Any]:
        header = self.blocks[height - 1]["header"]
        return make_checkpoint(
            self.chain_id,
            height,
            hash_object(self.alg, header),
            header["tree_size"],
            header["root"],
            header["time"],
        )

    def sigs(self, cp: dict[str, Any], nodes: list[str]) -> list[dict[str, Any]]:
        return [
            {"node": n, "sig": sign_checkpoint(self.signer(n), self.chain_id, cp)} for n in nodes
        ]


@pytest.fixture
def chain(world: Any) -> ChainBuilder:
    return ChainBuilder(world)


def _fill(store: LedgerStore, chain: ChainBuilder, blocks: int, per: int = 3) -> None:
    for i in range(blocks):
        store.append_block(chain.add(chain.documents(per)), raft_index=10 + i)


def test_create_open_and_genesis(tmp_path: Path, world: Any) -> None:
    with pytest.raises(StoreError, match="no ledger store"):
        LedgerStore.open(tmp_path / "db", world.genesis)
    store = LedgerStore.open(tmp_path / "db", world.genesis, create=True)
    height, header, bhash = store.head()
    assert (height, header, bhash) == (0, world.genesis.header, world.genesis.chain_id)
    assert store.block(0) == world.genesis.block
    assert store.applied_raft_index() == 0 and store.log.size == 0
    assert store.latest_checkpoint() is None
    store.close()
    # The same path opened with another genesis is refused.
    other = dataclasses.replace(world.genesis, chain_name="another")
    with pytest.raises(StoreError, match="holds chain"):
        LedgerStore.open(tmp_path / "db", other)


def test_append_read_and_indexes(tmp_path: Path, world: Any, chain: ChainBuilder) -> None:
    store = LedgerStore.open(tmp_path / "db", world.genesis, create=True)
    case = "（2026）吉0102执7号"
    b1 = chain.add(chain.documents(3))
    b2 = chain.add(chain.documents(2, case=case) + chain.documents(1))
    b3 = chain.add(chain.documents(1, case=case))
    for i, b in enumerate((b1, b2, b3)):
        store.append_block(b, raft_index=5 + 2 * i)
    height, header, bhash = store.head()
    assert height == 3 and header == b3["header"]
    assert bhash == hash_object(chain.alg, b3["header"])
    assert store.applied_raft_index() == 9
    assert store.block(2) == b2 and store.header(1) == b1["header"]
    assert store.block(4) is None and store.header(-1) is None
    assert [b["header"]["height"] for b in store.iter_blocks()] == [1, 2, 3]
    assert [b["header"]["height"] for b in store.iter_blocks(2)] == [2, 3]
    assert store.log.root() == b3["header"]["root"] == chain.log.root()

    env = b2["entries"][1]
    eid = entry_id(chain.alg, env["payload"])
    got = store.entry(eid)
    assert got == (env, 2, 4)
    assert store.entry(b"\x00" * 32) is None
    proof = store.log.inclusion_proof(4, 6)
    b2_root = b2["header"]["root"]  # the log at height 2 has 6 leaves
    assert store.inclusion_proof(4, 6) == proof and store.root(6) == b2_root
    assert store.root() == chain.log.root() and store.inclusion_proof(
        0
    ) == chain.log.inclusion_proof(0)
    assert store.consistency_proof(3) == chain.log.consistency_proof(3)
    assert store.consistency_proof(3, 6) == chain.log.consistency_proof(3, 6)
    verify_inclusion(chain.alg, entry_leaf(chain.alg, env), 4, 6, proof, b2_root)

    case_ids = [entry_id(chain.alg, e["payload"]) for e in b2["entries"][:2] + b3["entries"]]
    assert store.entries_by_case(case) == case_ids
    assert store.entries_by_case("（2026）吉0102执7") == []
    digest = env["payload"]["body"]["sha256"]
    assert store.entries_by_sha256(digest) == [eid]
    assert store.entries_by_sha256(sha256(b"nothing")) == []
    store.close()

    # Everything survives a reopen, including the log's frontier.
    store = LedgerStore.open(tmp_path / "db", world.genesis)
    assert store.head()[0] == 3 and store.log.root() == chain.log.root()
    b4 = chain.add(chain.documents(2))
    store.append_block(b4, raft_index=20)
    assert store.log.root() == b4["header"]["root"]
    store.close()


def test_refuses_blocks_that_do_not_extend_the_head(
    tmp_path: Path, world: Any, chain: ChainBuilder
) -> None:
    store = LedgerStore.open(tmp_path / "db", world.genesis, create=True)
    b1 = chain.add(chain.documents(2))
    b2 = chain.add(chain.documents(2))
    with pytest.raises(StoreError, match="does not extend"):
        store.append_block(b2, raft_index=1)
    store.append_block(b1, raft_index=1)
    with pytest.raises(StoreError, match="does not extend"):
        store.append_block(b1, raft_index=2)
    bad_prev = {**b2, "header": {**b2["header"], "prev": b"\x00" * 32}}
    with pytest.raises(StoreError, match="prev"):
        store.append_block(bad_prev, raft_index=2)
    bad_root = {**b2, "header": {**b2["header"], "root": b"\x00" * 32}}
    with pytest.raises(StoreError, match="root"):
        store.append_block(bad_root, raft_index=2)
    short = {**b2, "entries": b2["entries"][:1]}
    with pytest.raises(StoreError, match="count"):
        store.append_block(short, raft_index=2)
    with pytest.raises(StoreError, match="Raft index"):
        store.append_block(b2, raft_index=0)
    for malformed in (
        {},
        {**b2, "entries": "x"},
        {**b2, "entries": [{"sig": b""}]},
        {**b2, "sig": None},
    ):
        with pytest.raises(StoreError, match="not a block"):
            store.append_block(malformed, raft_index=2)
    # None of the refusals changed anything: the right block still applies.
    assert store.head()[0] == 1 and store.log.size == 2
    store.append_block(b2, raft_index=2)
    assert store.log.root() == b2["header"]["root"]
    # A block repeating an entry already stored is refused too.
    dup = ChainBuilder(world)
    dup.log, dup.prev = chain.log, chain.prev
    b3 = dup.add([b1["entries"][0]])
    with pytest.raises(StoreError, match="already in the chain"):
        store.append_block(b3, raft_index=3)
    assert store.head()[0] == 2
    store.close()


def test_checkpoints(tmp_path: Path, world: Any, chain: ChainBuilder) -> None:
    store = LedgerStore.open(tmp_path / "db", world.genesis, create=True)
    _fill(store, chain, 3)
    cp2 = chain.checkpoint(2)
    store.put_checkpoint(cp2, chain.sigs(cp2, ["node-a"]))
    store.put_checkpoint(cp2, chain.sigs(cp2, ["node-a", "node-b"]))
    stored = store.checkpoint(2)
    assert stored is not None and stored[0] == cp2
    assert [s["node"] for s in stored[1]] == ["node-a", "node-b"]
    assert store.checkpoint(1) is None
    cp1 = chain.checkpoint(1)
    store.put_checkpoint(cp1, chain.sigs(cp1, ["node-c"]))
    latest = store.latest_checkpoint()
    assert latest is not None and latest[0]["height"] == 2
    after = store.checkpoint_at_or_after(2)
    assert after is not None and after[0] == cp2
    # A checkpoint that contradicts the stored block is not stored.
    forged = {**cp2, "root": b"\x01" * 32}
    with pytest.raises(CheckpointError, match="does not describe"):
        store.put_checkpoint(forged, [])
    with pytest.raises(CheckpointError, match="above the head"):
        store.put_checkpoint({**cp2, "height": 9, "tree_size": 99}, [])
    store.close()


def _flip(db_path: Path, key: bytes, offset: int = -12) -> None:
    db = plyvel.DB(str(db_path))
    value = bytearray(db.get(key))
    value[offset] ^= 0x01
    db.put(key, bytes(value), sync=True)
    db.close()


def test_tampered_values_are_caught_and_named(
    tmp_path: Path, world: Any, chain: ChainBuilder
) -> None:
    path = tmp_path / "db"
    store = LedgerStore.open(path, world.genesis, create=True)
    _fill(store, chain, 6, per=4)
    cp = chain.checkpoint(4)
    store.put_checkpoint(cp, chain.sigs(cp, ["node-a"]))
    target = chain.blocks[2]  # height 3, leaves 8..11
    eid = entry_id(chain.alg, target["entries"][1]["payload"])
    store.close()
    u64 = lambda n: n.to_bytes(8, "big")  # noqa: E731

    cases: list[tuple[str, bytes, int, Any]] = [
        ("block header", b"B" + u64(3), 20, lambda s: s.block(3)),
        ("block hash record", b"H" + u64(3), 3, lambda s: s.header(3)),
        ("entry bytes", b"X" + u64(9), -5, lambda s: s.entry(eid)),
        ("entry bytes via block", b"X" + u64(10), -5, lambda s: s.block(3)),
        ("Merkle leaf node", b"N\x00" + u64(9), 2, lambda s: s.entry(eid)),
        ("checkpoint", b"K" + u64(4), 5, lambda s: s.checkpoint(4)),
        ("entry location", b"E" + eid, 3, lambda s: s.entry(eid)),
        ("case index", None, 2, lambda s: s.entries_by_case("（2026）吉0102执1号")),
    ]
    expected_height = {"checkpoint": 4, "entry location": None, "case index": 3}
    for name, key, offset, read in cases:
        if key is None:  # the case index key of leaf 9
            raw = plyvel.DB(str(path))
            key = next(k for k, _ in raw.iterator(prefix=b"C") if k.endswith(u64(9)))
            raw.close()
        _flip(path, key, offset)
        store = LedgerStore.open(path, world.genesis)
        with pytest.raises(CorruptionError) as info:
            read(store)
            pytest.fail(f"tampered {name} was read back")
        want = expected_height.get(name, 3)
        assert info.value.height == want, (name, info.value.diagnostics())
        store.close()
        _flip(path, key, offset)  # repair for the next case
    store = LedgerStore.open(path, world.genesis)
    assert store.block(3) == target
    store.close()


def test_sm3_chain_end_to_end(tmp_path: Path, sm3_world: Any) -> None:
    chain = ChainBuilder(sm3_world)
    store = LedgerStore.open(tmp_path / "db", sm3_world.genesis, create=True)
    _fill(store, chain, 4)
    assert store.head()[2] == hash_object("sm3", chain.blocks[-1]["header"])
    assert store.log.root() == chain.log.root()
    env = chain.blocks[1]["entries"][0]
    eid = entry_id("sm3", env["payload"])
    found = store.entry(eid)
    assert found is not None and found[1:] == (2, 3)
    proof = store.log.inclusion_proof(3)
    verify_inclusion("sm3", entry_leaf("sm3", env), 3, 12, proof, chain.log.root())
    with pytest.raises(Exception):  # noqa: B017 - an SHA-256 leaf never verifies on SM3
        verify_inclusion("sm3", entry_leaf("sha256", env), 3, 12, proof, chain.log.root())
    store.close()


# ---------------------------------------------------------------------------------------------
# Crash safety: a forked child appends synced blocks and is SIGKILLed at random moments.

KILLS = 200


def _child(path: Path, genesis: Genesis, blocks: list[dict[str, Any]], ack_fd: int) -> None:
    code = 3  # an exception in the child is reported through its exit status
    try:
        store = LedgerStore.open(path, genesis)
        height = store.head()[0]
        os.write(ack_fd, b"R")
        for block in blocks[height:]:
            store.append_block(block, raft_index=block["header"]["height"])
            # Acknowledged = append_block returned (the synced batch is on disk).
            os.write(ack_fd, block["header"]["height"].to_bytes(4, "big"))
        code = 0
    finally:
        os._exit(code)


def test_sigkill_at_random_moments_reopens_consistently(
    tmp_path: Path, world: Any, chain: ChainBuilder
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for _ in range(600):
        chain.add(chain.documents(rng.randrange(1, 4)))
    path = tmp_path / "db"
    LedgerStore.open(path, world.genesis, create=True).close()
    acked = 0
    started = time.monotonic()
    unacked_but_durable = progressed = 0
    for kill in range(KILLS):
        start_height = acked
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(path, world.genesis, chain.blocks, w)
        os.close(w)
        assert os.read(r, 1) == b"R", f"seed {seed}"
        time.sleep(rng.random() * 0.012)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert not (os.WIFEXITED(status) and os.WEXITSTATUS(status)), f"seed {seed}: child failed"
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        os.close(r)
        acks = data[: len(data) // 4 * 4]  # the ready byte was read above
        if acks:
            acked = int.from_bytes(acks[-4:], "big")
        store = LedgerStore.open(path, world.genesis)
        height, header, bhash = store.head()
        msg = f"seed {seed}, kill {kill}: head {height}, last acknowledged {acked}"
        assert height in (acked, acked + 1), msg
        unacked_but_durable += height == acked + 1
        progressed += height > start_height
        if height:
            assert header == chain.blocks[height - 1]["header"], msg
            assert store.block(height) == chain.blocks[height - 1], msg
            assert store.log.root() == header["root"], msg
            assert store.applied_raft_index() == height, msg
        acked = height  # the reopened head is what the next child builds on
        store.close()
        if height == len(chain.blocks):
            # The whole chain is in: check every block once, then start over on a fresh store.
            store = LedgerStore.open(path, world.genesis)
            assert sum(1 for _ in store.iter_blocks()) == height, msg
            store.close()
            shutil.rmtree(path)
            LedgerStore.open(path, world.genesis, create=True).close()
            acked = 0
    # The kills must land while blocks are being written, not only before the first one.
    assert progressed > KILLS // 4, f"seed {seed}: only {progressed} kills saw progress"
    print(
        f"{KILLS} kills in {time.monotonic() - started:.1f} s, {progressed} with progress, "
        f"{unacked_but_durable} between the write and its acknowledgement"
    )


def test_envelope_bytes_equal_canonical(world: Any) -> None:
    from ledger.encoding import canonical
    from ledger.store import _envelope_bytes

    envs = [world.document("clerk-0", i) for i in range(5)]
    envs.append({"payload": {"a": 1}, "sig": b""})
    envs.append({"payload": {"a": 1}, "sig": b"s" * 255})
    envs.append({"payload": {"a": 1}, "sig": b"s" * 256})
    envs.append({"payload": {"a": 1}, "sig": b"x" * 300, "extra": 1})
    for env in envs:
        data, payload_bytes = _envelope_bytes(env)
        assert data == canonical(env)
        assert payload_bytes == canonical(env["payload"])


def test_tiny_cache_caches_upper_levels_and_proofs_stay_right(
    tmp_path: Path, world: Any, chain: ChainBuilder
) -> None:
    from ledger.merkle import LRUCache

    store = LedgerStore.open(
        tmp_path / "db", world.genesis, create=True, cache_bytes=LRUCache.ENTRY_COST * 16
    )
    _fill(store, chain, 6, per=5)  # 30 leaves, about 60 nodes: levels 2 and up fit in 16
    assert store.nodes.cache_min_level == 2
    for size in (1, 7, 16, 30):
        for index in range(size):
            assert store.inclusion_proof(index, size) == chain.log.inclusion_proof(index, size)
        for old in range(size + 1):
            assert store.consistency_proof(old, size) == chain.log.consistency_proof(old, size)
    assert len(store.nodes._cache) <= 16
    store.close()
