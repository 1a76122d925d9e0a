"""The ledger's LevelDB store (plyvel): blocks, entries, the Merkle log, indexes, checkpoints.

Atomicity. Each applied block is ONE ``WriteBatch`` written with ``sync=True``: the block, its
entries, the Merkle nodes it completes, the Raft index it came from, the head record and every
index. LevelDB applies a batch as one record of its write-ahead log, so after a crash (even a
SIGKILL or power loss once the fsync returned) the store holds either the whole block or none
of it; the head therefore always names a block whose entries, nodes and indexes are all there.
Checkpoint signatures are written the same way, each in its own synced batch.

Integrity. Every value read back is checked before it is believed, so that a damaged or edited
byte is a :class:`CorruptionError` naming the height, never a wrong answer:

* a block's header is checked against its hash, kept in a separate record (``H``), and the
  header's ``root`` against the log's root composed from stored Merkle nodes;
* an entry's bytes are checked against its leaf hash (Merkle node ``(0, i)``);
* every other value (head, hashes, Merkle nodes, index records, checkpoints) carries an 8-byte
  check value, the first bytes of ``SHA-256(key || value)``, which also binds it to its key so
  a value copied under another key is caught. (A check value catches damage and careless edits;
  deliberate tampering is what checkpoints and receipts signed by the voters catch.)

Keys (one prefix byte, big-endian integers so LevelDB's order is numeric order)::

    Mhead                      -> canonical {height, block_hash, tree_size, raft_index}
    Mconsortium                -> canonical(consortium map) of the genesis
    H <height:8>               -> block hash
    B <height:8>               -> canonical {header, sig}      (entries are stored by leaf)
    X <leaf:8>                 -> canonical(envelope)
    N <level:1> <index:8>      -> Merkle node (perfect subtree hash, RFC 9162 §2.1)
    E <entry_id>               -> <height:8> <leaf:8>
    S <sha256:32> <leaf:8>     -> entry id      (document/evidence content digest)
    C <len:2> <case> <leaf:8>  -> entry id      (案号 → entries in log order)
    R <leaf:8>                 -> <height:8>    (membership entries, for receipts)
    G <leaf:8>                 -> <height:8>    (identity and membership entries: every
                                                 entry that changes the consortium state)
    K <height:8>               -> canonical {checkpoint, signatures}

The store does not judge validity: the node checks a block with ``ledger.blocks.check_block``
(against :meth:`LedgerStore.shadow_log`) before :meth:`LedgerStore.append_block`. The store
only refuses a block that does not extend its head, whose counts are inconsistent, or whose
root is not the root its entries produce (that would leave the log and the chain disagreeing).
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import plyvel

from ledger.checkpoints import check_checkpoint, merge_signatures
from ledger.crypto import DIGEST_SIZE, hash_object, hasher
from ledger.encoding import canonical, decode
from ledger.errors import (
    CheckpointError,
    CorruptionError,
    EncodingError,
    LedgerError,
    ProofError,
    StoreError,
)
from ledger.genesis import Genesis
from ledger.merkle import LRUCache, MerkleLog, OverlayNodeStore, leaf_hash

__all__ = ["DEFAULT_CACHE_BYTES", "LedgerStore", "LevelDBNodeStore", "OverlayNodeStore"]

#: The Merkle node cache budget (the benchmark's "cache bounded to 64 MiB").
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
#: LevelDB's own block cache, kept small: hot Merkle nodes live in our cache.
_LEVELDB_CACHE_BYTES = 8 * 1024 * 1024

_CHECK = 8
_U64 = struct.Struct(">Q")
_HEAD = b"Mhead"
_CONSORTIUM = b"Mconsortium"


def _u64(n: int) -> bytes:
    return _U64.pack(n)


def _seal(key: bytes, value: bytes) -> bytes:
    """``value`` followed by its check value, bound to ``key``."""
    return value + hashlib.sha256(key + value).digest()[:_CHECK]


def _unseal(key: bytes, raw: bytes, what: str, height: int | None) -> bytes:
    value, check = raw[:-_CHECK], raw[-_CHECK:]
    if len(raw) < _CHECK or hashlib.sha256(key + value).digest()[:_CHECK] != check:
        where = f" at height {height}" if height is not None else ""
        raise CorruptionError(f"stored {what}{where} fails its check value", height=height)
    return value


def _node_key(level: int, index: int) -> bytes:
    return b"N" + bytes([level]) + _U64.pack(index)


def _case_key(case: str) -> bytes:
    raw = case.encode("utf-8")
    return b"C" + struct.pack(">H", len(raw)) + raw


class LevelDBNodeStore:
    """Merkle nodes in LevelDB, behind a byte-bounded LRU cache.

    Nodes are written only inside :meth:`LedgerStore.append_block`: :meth:`put_node` adds them
    to the block's ``WriteBatch`` and to a pending overlay (so the rest of the block reads
    them), and they become visible to other readers when the batch has been written.
    """

    def __init__(self, db: Any, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._db = db
        self._cache = LRUCache(cache_bytes)
        self._pending: dict[tuple[int, int], bytes] | None = None
        self._batch: Any = None
        #: Nodes below this level are read from LevelDB but not cached (see :meth:`sized`).
        self.cache_min_level = 0
        #: Set by the store: maps a leaf index to the height of its block, to name heights.
        self.height_of_leaf: Any = None

    def sized(self, tree_size: int) -> None:
        """Choose which levels to cache for a log of ``tree_size`` leaves.

        A log of n leaves has about ``2n / 2**L`` nodes at levels L and above. Random proofs
        read one node per level, so the nodes worth keeping are the upper levels, which every
        proof shares; caching the lowest levels too would let each proof's fresh leaves push
        them out. The cache therefore holds only the lowest level L whose nodes and all those
        above it fit; below L, nodes come from LevelDB each time.
        """
        level = 0
        while 2 * tree_size >> level > self._cache.capacity:
            level += 1
        self.cache_min_level = level

    def warm(self, tree_size: int) -> int:
        """Load the cached levels (``cache_min_level`` and up) into the cache; return how many.

        One sequential scan per level, top level first, at most the cache's capacity: cheap at
        open, and the first random proofs then read LevelDB only below ``cache_min_level``.
        A node that fails its check value is skipped here and reported when a proof needs it.
        """
        loaded = 0
        top = max(tree_size.bit_length() - 1, 0)
        try:
            for level in range(top, self.cache_min_level - 1, -1):
                with self._db.iterator(prefix=b"N" + bytes([level])) as it:
                    for dbkey, raw in it:
                        if loaded >= self._cache.capacity:
                            return loaded
                        if len(raw) != DIGEST_SIZE + _CHECK:
                            continue
                        try:
                            value = _unseal(dbkey, raw, "", None)
                        except CorruptionError:
                            continue
                        self._cache.put((level, _U64.unpack(dbkey[2:])[0]), value)
                        loaded += 1
        except plyvel.Error as exc:
            raise StoreError(f"cannot read Merkle nodes: {exc}") from exc
        return loaded

    def begin(self, batch: Any) -> None:
        """Start collecting the nodes of one block into ``batch``."""
        self._batch, self._pending = batch, {}

    def commit(self) -> None:
        """The batch was written: the pending nodes are now on disk.

        They are not copied into the cache: the log's frontier is already in memory, and a
        cache filled by writes would grow the process with the chain instead of with the reads.
        """
        self._batch, self._pending = None, None

    def abort(self) -> None:
        """The batch was dropped: forget the pending nodes."""
        self._batch, self._pending = None, None

    def get_node(self, level: int, index: int) -> bytes | None:
        key = (level, index)
        if self._pending is not None:
            value = self._pending.get(key)
            if value is not None:
                return value
        cached = level >= self.cache_min_level
        if cached:
            value = self._cache.get(key)
            if value is not None:
                return value
        dbkey = _node_key(level, index)
        try:
            raw = self._db.get(dbkey)
        except plyvel.CorruptionError:
            raw = b""  # LevelDB's own checksum failed: reported below like ours
        except plyvel.Error as exc:
            raise StoreError(f"cannot read Merkle node ({level}, {index}): {exc}") from exc
        if raw is None:
            return None
        if len(raw) != DIGEST_SIZE + _CHECK:
            value = None
        else:
            try:
                value = _unseal(dbkey, raw, "", None)
            except CorruptionError:
                value = None
        if value is None:
            height = None
            if self.height_of_leaf is not None:
                # The node became complete with its last leaf; name that leaf's block.
                height = self.height_of_leaf(((index + 1) << level) - 1)
            where = f" (completed at height {height})" if height is not None else ""
            raise CorruptionError(
                f"stored Merkle node ({level}, {index}){where} fails its check value",
                height=height,
            )
        if cached:
            self._cache.put(key, value)
        return value

    def put_node(self, level: int, index: int, value: bytes) -> None:
        if self._pending is None:
            raise StoreError("Merkle nodes are written only by LedgerStore.append_block")
        self._pending[(level, index)] = value
        dbkey = _node_key(level, index)
        self._batch.put(dbkey, _seal(dbkey, value))


_ENVELOPE_HEAD = b"\x82" + canonical("payload")
_SIG_KEY = canonical("sig")


def _envelope_bytes(env: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``(canonical(envelope), canonical(payload))`` with the payload encoded only once.

    A canonical map is its header followed by its sorted key/value encodings, so an envelope
    ``{payload, sig}`` ("payload" sorts before "sig") is ``0x82 "payload" P "sig" S``. Anything
    else falls back to encoding twice.
    """
    sig = env.get("sig")
    if len(env) == 2 and "payload" in env and isinstance(sig, bytes):
        payload_bytes = canonical(env["payload"])
        # bin 8 (0xc4, one length byte) is the smallest family for 0-255 bytes.
        sig_bytes = b"\xc4" + bytes([len(sig)]) + sig if len(sig) < 256 else canonical(sig)
        return _ENVELOPE_HEAD + payload_bytes + _SIG_KEY + sig_bytes, payload_bytes
    return canonical(env), canonical(env["payload"])


def _content_digest(payload: Mapping[str, Any]) -> bytes | None:
    """The SHA-256 content digest a payload anchors (``document`` and ``evidence`` bodies)."""
    if payload.get("kind") not in ("document", "evidence"):
        return None
    body = payload.get("body")
    digest = body.get("sha256") if isinstance(body, Mapping) else None
    return digest if isinstance(digest, bytes) and len(digest) == 32 else None


class LedgerStore:
    """One node's ledger on disk. Open it with :meth:`open`; close it with :meth:`close`.

    Thread safety: every public method takes the store's lock, so the API may read while the
    applier appends; a reader never sees half a block.
    """

    def __init__(self, db: Any, genesis: Genesis, path: Path, cache_bytes: int) -> None:
        self._db = db
        self._path = path
        self.genesis = genesis
        self.alg = genesis.hash_alg
        self.chain_id = genesis.chain_id
        self._h = hasher(self.alg)
        self._lock = threading.RLock()
        self.nodes = LevelDBNodeStore(db, cache_bytes)
        self.nodes.height_of_leaf = self._height_of_leaf_unchecked
        head = self._read_head()
        self._head_height: int = head["height"]
        self._head_hash: bytes = head["block_hash"]
        self._head_raft: int = head["raft_index"]
        self._tree_size: int = head["tree_size"]
        self.log = MerkleLog(self.alg, self.nodes, size=self._tree_size)
        self.nodes.sized(self._tree_size)
        self.nodes.warm(self._tree_size)
        self._head_header = self._read_header(self._head_height)
        #: Test-only failure injection (issue 11): when set (by the node, from its failpoints),
        #: called with ``"before-block"`` just before a block's synced batch is written and
        #: ``"after-block"`` / ``"after-checkpoint"`` once a synced write returned. None in
        #: production; ``ledger`` imports nothing of the node, so the node injects it.
        self.sync_hook: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        genesis: Genesis,
        *,
        create: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> LedgerStore:
        """Open the store at ``path`` for the chain of ``genesis``.

        With ``create`` a missing store is created holding the genesis block. An existing store
        of another chain (another genesis) is refused with :class:`StoreError`.
        """
        p = Path(path)
        if not create and not (p / "CURRENT").exists():
            raise StoreError(f"no ledger store at {p} (create it with create=True)")
        if create:
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the ledger store at {p}: {exc}") from exc
        try:
            db = plyvel.DB(
                str(p),
                create_if_missing=create,
                lru_cache_size=_LEVELDB_CACHE_BYTES,
                # Every appended entry first asks whether its id is already stored; a Bloom
                # filter answers "no" without reading a block of every level.
                bloom_filter_bits=10,
                paranoid_checks=True,
            )
        except plyvel.IOError as exc:
            raise StoreError(f"cannot open the ledger store at {p}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise CorruptionError(f"the ledger store at {p} is damaged: {exc}") from exc
        except plyvel.Error as exc:
            raise StoreError(f"cannot open the ledger store at {p}: {exc}") from exc
        try:
            if db.get(_HEAD) is None:
                if not create:
                    raise StoreError(f"{p} is not a ledger store")
                cls._write_genesis(db, genesis)
            store = cls(db, genesis, p, cache_bytes)
            genesis_hash = store._block_hash(0)
            if genesis_hash != genesis.chain_id:
                raise StoreError(
                    f"the store at {p} holds chain {genesis_hash.hex()}, not "
                    f"{genesis.chain_id.hex()} of the given genesis"
                )
            return store
        except BaseException:
            db.close()
            raise

    @staticmethod
    def _write_genesis(db: Any, genesis: Genesis) -> None:
        header = genesis.header
        chain_id = genesis.chain_id
        batch = db.write_batch(sync=True)
        hkey = b"H" + _u64(0)
        bkey = b"B" + _u64(0)
        batch.put(hkey, _seal(hkey, chain_id))
        batch.put(bkey, canonical({"header": header, "sig": b""}))
        consortium = canonical(genesis.consortium)
        batch.put(_CONSORTIUM, _seal(_CONSORTIUM, consortium))
        head = canonical({"height": 0, "block_hash": chain_id, "tree_size": 0, "raft_index": 0})
        batch.put(_HEAD, _seal(_HEAD, head))
        try:
            batch.write()
        except plyvel.Error as exc:
            raise StoreError(f"cannot write the genesis block: {exc}") from exc

    def close(self) -> None:
        """Close the database; the store cannot be used afterwards."""
        with self._lock:
            if not self._db.closed:
                self._db.close()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ raw reads

    def _get(self, key: bytes, height: int | None = None) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            where = f" at height {height}" if height is not None else ""
            raise CorruptionError(f"LevelDB reports damage{where}: {exc}", height=height) from exc
        except plyvel.Error as exc:
            raise StoreError(f"cannot read the ledger store: {exc}") from exc
        except RuntimeError as exc:  # plyvel raises RuntimeError on a closed database
            raise StoreError(f"the ledger store is closed: {exc}") from exc
        return value

    def _get_sealed(self, key: bytes, what: str, height: int | None) -> bytes | None:
        raw = self._get(key, height)
        return None if raw is None else _unseal(key, raw, what, height)

    def _decode(self, data: bytes, what: str, height: int | None) -> Any:
        try:
            return decode(data)
        except EncodingError as exc:
            where = f" at height {height}" if height is not None else ""
            raise CorruptionError(
                f"stored {what}{where} does not decode: {exc.detail}", height=height
            ) from None

    def _read_head(self) -> dict[str, Any]:
        raw = self._get_sealed(_HEAD, "head record", None)
        if raw is None:
            raise StoreError("the store has no head record")
        head = self._decode(raw, "head record", None)
        if not isinstance(head, dict) or set(head) != {
            "height",
            "block_hash",
            "tree_size",
            "raft_index",
        }:
            raise CorruptionError("the head record is malformed")
        return head

    def _block_hash(self, height: int) -> bytes:
        value = self._get_sealed(b"H" + _u64(height), "block hash", height)
        if value is None or len(value) != DIGEST_SIZE:
            raise CorruptionError(f"the block hash at height {height} is missing", height=height)
        return value

    def _read_header_and_sig(self, height: int) -> tuple[dict[str, Any], bytes]:
        raw = self._get(b"B" + _u64(height), height)
        if raw is None:
            raise CorruptionError(f"block {height} is missing below the head", height=height)
        obj = self._decode(raw, "block", height)
        if not isinstance(obj, dict) or set(obj) != {"header", "sig"}:
            raise CorruptionError(f"stored block at height {height} is malformed", height=height)
        header = obj["header"]
        if not isinstance(header, dict) or hash_object(self.alg, header) != self._block_hash(
            height
        ):
            raise CorruptionError(
                f"stored header at height {height} does not match its hash", height=height
            )
        if header.get("height") != height:
            raise CorruptionError(
                f"stored header at height {height} names another height", height=height
            )
        return header, obj["sig"]

    def _read_header(self, height: int) -> dict[str, Any]:
        return self._read_header_and_sig(height)[0]

    def _height_of_leaf_unchecked(self, leaf: int) -> int | None:
        """The height of the block holding ``leaf`` (binary search over headers), best effort."""
        try:
            return self._height_of_leaf(leaf)
        except LedgerError:
            return None

    def _height_of_leaf(self, leaf: int) -> int | None:
        if not 0 <= leaf < self._tree_size:
            return None
        lo, hi = 1, self._head_height
        while lo < hi:  # first height whose tree_size exceeds leaf
            mid = (lo + hi) // 2
            if self._read_header(mid)["tree_size"] > leaf:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _read_envelope(self, leaf: int, height: int | None) -> tuple[dict[str, Any], bytes]:
        """The envelope at ``leaf`` and its canonical bytes, checked against the leaf hash."""
        key = b"X" + _u64(leaf)
        if height is None:
            height = self._height_of_leaf_unchecked(leaf)
        data = self._get(key, height)
        if data is None:
            raise CorruptionError(f"entry {leaf} is missing at height {height}", height=height)
        stored_leaf = self.nodes.get_node(0, leaf)
        if stored_leaf is None or leaf_hash(data, self.alg) != stored_leaf:
            raise CorruptionError(
                f"stored entry {leaf} at height {height} does not match its leaf hash",
                height=height,
            )
        env = self._decode(data, f"entry {leaf}", height)
        if not isinstance(env, dict):
            raise CorruptionError(f"stored entry {leaf} is not a map", height=height)
        return env, data

    # ------------------------------------------------------------------ the head and blocks

    def head(self) -> tuple[int, dict[str, Any], bytes]:
        """``(height, header, block_hash)`` of the last applied block (height 0 = genesis)."""
        with self._lock:
            return self._head_height, dict(self._head_header), self._head_hash

    def applied_raft_index(self) -> int:
        """The Raft log index of the last applied block (0 before any)."""
        with self._lock:
            return self._head_raft

    @property
    def tree_size(self) -> int:
        """The number of entries in the log at the head."""
        with self._lock:
            return self._tree_size

    def header(self, height: int) -> dict[str, Any] | None:
        """The checked header at ``height``, or None above the head."""
        with self._lock:
            if not 0 <= height <= self._head_height:
                return None
            return self._read_header(height)

    def block_hash(self, height: int) -> bytes | None:
        """The block hash at ``height``, or None above the head."""
        with self._lock:
            if not 0 <= height <= self._head_height:
                return None
            return self._block_hash(height)

    def block(self, height: int) -> dict[str, Any] | None:
        """The whole block ``{header, sig, entries}`` at ``height``, checked; None above the head.

        Checks: the header against its hash, each entry against its leaf hash, and the header's
        root against the root of the log at the block's tree size.
        """
        with self._lock:
            if not 0 <= height <= self._head_height:
                return None
            if height == 0:
                return self.genesis.block
            header, sig = self._read_header_and_sig(height)
            first, size = header["first_index"], header["tree_size"]
            entries = [self._read_envelope(i, height)[0] for i in range(first, size)]
            try:
                root = self.log.root(size)
            except ProofError as exc:
                raise CorruptionError(
                    f"Merkle nodes of height {height}: {exc.detail}", height=height
                ) from None
            if root != header["root"]:
                raise CorruptionError(
                    f"the log's root at height {height} does not match the header",
                    height=height,
                )
            return {"header": header, "sig": sig, "entries": entries}

    def iter_blocks(self, start: int = 1, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Checked blocks from ``start`` up to the head (or ``stop``, exclusive), in order."""
        height = start
        while True:
            with self._lock:
                end = self._head_height + 1 if stop is None else min(stop, self._head_height + 1)
            if height >= end:
                return
            block = self.block(height)
            if block is None:  # pragma: no cover - guarded by `end`
                return
            yield block
            height += 1

    def root(self, size: int | None = None) -> bytes:
        """The log's root at ``size`` entries (default: at the head)."""
        with self._lock:
            return self.log.root(self._tree_size if size is None else size)

    def inclusion_proof(self, leaf: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of ``leaf`` in the log at ``size`` (default: the head).

        Prefer these store methods to ``store.log`` from other threads: they take the store's
        lock, so they never see a block that is half appended.
        """
        with self._lock:
            return self.log.inclusion_proof(leaf, self._tree_size if size is None else size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to ``new_size`` (default: the head)."""
        with self._lock:
            new = self._tree_size if new_size is None else new_size
            return self.log.consistency_proof(old_size, new)

    def shadow_log(self) -> MerkleLog:
        """A Merkle log at the head whose appends stay in memory.

        Pass it to ``ledger.blocks.check_block`` to check the next block's root without
        touching the store; then :meth:`append_block` the block.
        """
        with self._lock:
            return self.log.shadow()

    # ------------------------------------------------------------------ appending

    def append_block(self, block: Mapping[str, Any], raft_index: int) -> bytes:
        """Apply a (valid) block on top of the head in one synced batch; return its hash.

        Refused with :class:`StoreError`, leaving the store unchanged: a block that does not
        extend the head (height, ``prev``), whose counts disagree with its entries or the log,
        whose root is not what its entries produce, holding an entry id already stored, or a
        ``raft_index`` below the last one.
        """
        with self._lock:
            header, entries = block.get("header"), block.get("entries")
            if (
                not isinstance(header, Mapping)
                or not isinstance(entries, list | tuple)
                or not isinstance(block.get("sig"), bytes)
                or not all(
                    isinstance(e, Mapping) and isinstance(e.get("payload"), Mapping)
                    for e in entries
                )
            ):
                raise StoreError("not a block {header, sig, entries: [{payload, sig}]}")
            height = self._head_height + 1
            if header.get("height") != height:
                raise StoreError(
                    f"block at height {header.get('height')} does not extend the head {height - 1}"
                )
            if header.get("prev") != self._head_hash:
                raise StoreError(f"block {height}'s prev is not the hash of block {height - 1}")
            if (
                header.get("first_index") != self._tree_size
                or header.get("count") != len(entries)
                or header.get("tree_size") != self._tree_size + len(entries)
            ):
                raise StoreError(
                    f"block {height}: first_index/count/tree_size disagree with the log size "
                    f"{self._tree_size} and its {len(entries)} entries"
                )
            if (
                isinstance(raft_index, bool)
                or not isinstance(raft_index, int)
                or (raft_index < self._head_raft)
            ):
                raise StoreError(
                    f"Raft index {raft_index!r} is below the last applied {self._head_raft}"
                )
            bhash = hash_object(self.alg, header)
            hb = _u64(height)
            try:
                batch = self._db.write_batch(sync=True)
            except (plyvel.Error, RuntimeError) as exc:
                raise StoreError(f"cannot write to the ledger store: {exc}") from exc
            self.nodes.begin(batch)
            try:
                self._stage_entries(batch, entries, height)
                root = self.log.root()
                if root != header.get("root"):
                    raise StoreError(
                        f"block {height}'s root is not the root of the log with its entries"
                    )
                hkey = b"H" + hb
                batch.put(hkey, _seal(hkey, bhash))
                batch.put(b"B" + hb, canonical({"header": dict(header), "sig": block["sig"]}))
                head = canonical(
                    {
                        "height": height,
                        "block_hash": bhash,
                        "tree_size": self.log.size,
                        "raft_index": raft_index,
                    }
                )
                batch.put(_HEAD, _seal(_HEAD, head))
                if self.sync_hook is not None:
                    self.sync_hook("before-block")
                try:
                    batch.write()
                except plyvel.Error as exc:
                    raise StoreError(f"cannot write block {height}: {exc}") from exc
            except BaseException:
                # Nothing reached the disk: restore the in-memory log to the head.
                self.nodes.abort()
                self.log = MerkleLog(self.alg, self.nodes, size=self._tree_size)
                raise
            self.nodes.commit()
            self._head_height, self._head_hash = height, bhash
            self._head_header, self._head_raft = dict(header), raft_index
            self._tree_size = self.log.size
            self.nodes.sized(self._tree_size)
            if self.sync_hook is not None:
                self.sync_hook("after-block")
            return bhash

    def _stage_entries(self, batch: Any, entries: Sequence[Mapping[str, Any]], height: int) -> None:
        hb = _u64(height)
        seen: set[bytes] = set()
        for env in entries:
            data, payload_bytes = _envelope_bytes(env)
            payload = env["payload"]
            eid = self._h(payload_bytes)
            ekey = b"E" + eid
            if eid in seen or self._get(ekey) is not None:
                raise StoreError(f"entry {eid.hex()} is already in the chain")
            seen.add(eid)
            leaf = self.log.append(leaf_hash(data, self.alg))
            lb = _u64(leaf)
            batch.put(b"X" + lb, data)
            batch.put(ekey, _seal(ekey, hb + lb))
            digest = _content_digest(payload)
            if digest is not None:
                skey = b"S" + digest + lb
                batch.put(skey, _seal(skey, eid))
            case = payload.get("case")
            if isinstance(case, str):
                ckey = _case_key(case) + lb
                batch.put(ckey, _seal(ckey, eid))
            if payload.get("kind") == "membership":
                rkey = b"R" + lb
                batch.put(rkey, _seal(rkey, hb))
            if payload.get("kind") in ("identity", "membership"):
                gkey = b"G" + lb
                batch.put(gkey, _seal(gkey, hb))

    # ------------------------------------------------------------------ entries and indexes

    def entry(self, entry_id: bytes) -> tuple[dict[str, Any], int, int] | None:
        """``(envelope, height, leaf_index)`` of a stored entry, or None."""
        with self._lock:
            loc = self._location(entry_id)
            if loc is None:
                return None
            height, leaf = loc
            env, _ = self._read_envelope(leaf, height)
            if hash_object(self.alg, env.get("payload")) != entry_id:
                raise CorruptionError(
                    f"entry index for {entry_id.hex()} points at another entry (height {height})",
                    height=height,
                )
            return env, height, leaf

    def entry_bytes(self, leaf: int) -> bytes:
        """The canonical envelope bytes at ``leaf`` (checked), e.g. for receipts."""
        with self._lock:
            if not 0 <= leaf < self._tree_size:
                raise StoreError(f"leaf {leaf} is beyond the log size {self._tree_size}")
            return self._read_envelope(leaf, None)[1]

    def _location(self, entry_id: bytes) -> tuple[int, int] | None:
        key = b"E" + bytes(entry_id)
        value = self._get_sealed(key, f"location of entry {bytes(entry_id).hex()}", None)
        if value is None:
            return None
        if len(value) != 16:
            raise CorruptionError(f"location of entry {entry_id.hex()} is malformed")
        height, leaf = _U64.unpack(value[:8])[0], _U64.unpack(value[8:])[0]
        if not (1 <= height <= self._head_height and leaf < self._tree_size):
            raise CorruptionError(f"location of entry {entry_id.hex()} is beyond the head")
        return height, leaf

    def location(self, entry_id: bytes) -> tuple[int, int] | None:
        """``(height, leaf_index)`` of a stored entry, or None (no entry read)."""
        with self._lock:
            return self._location(entry_id)

    def _index_scan(self, prefix: bytes, what: str) -> list[bytes]:
        out: list[bytes] = []
        try:
            with self._db.iterator(prefix=prefix) as it:
                for key, raw in it:
                    if len(key) != len(prefix) + 8:
                        continue  # a longer case number sharing this prefix cannot: length-coded
                    try:
                        out.append(_unseal(key, raw, what, None))
                    except CorruptionError:
                        # Only now find the block, to name its height in the error.
                        leaf = _U64.unpack(key[-8:])[0]
                        height = self._height_of_leaf_unchecked(leaf)
                        raise CorruptionError(
                            f"stored {what} of entry {leaf} at height {height} fails its check "
                            "value",
                            height=height,
                        ) from None
        except plyvel.Error as exc:
            raise StoreError(f"cannot read the ledger store: {exc}") from exc
        return out

    def entries_by_sha256(self, digest: bytes) -> list[bytes]:
        """Ids of the ``document``/``evidence`` entries anchoring this SHA-256, in log order."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise StoreError("a content digest is 32 bytes of SHA-256")
        with self._lock:
            return self._index_scan(b"S" + digest, "content index")

    def entries_by_case(self, case: str) -> list[bytes]:
        """Ids of the entries of case ``case`` (案号, exactly as signed), in log order."""
        with self._lock:
            return self._index_scan(_case_key(case), "case index")

    def _leaf_heights(
        self, prefix: bytes, what: str, below_height: int | None
    ) -> list[tuple[int, int]]:
        with self._lock:
            out: list[tuple[int, int]] = []
            try:
                with self._db.iterator(prefix=prefix) as it:
                    for key, raw in it:
                        leaf = _U64.unpack(key[1:])[0]
                        value = _unseal(key, raw, what, None)
                        height = _U64.unpack(value)[0]
                        if below_height is not None and height >= below_height:
                            break
                        out.append((height, leaf))
            except plyvel.Error as exc:
                raise StoreError(f"cannot read the ledger store: {exc}") from exc
            return out

    def membership_entries(self, below_height: int | None = None) -> list[tuple[int, int]]:
        """``(height, leaf_index)`` of every ``membership`` entry, in order, below a height."""
        return self._leaf_heights(b"R", "membership index", below_height)

    def state_change_entries(self, below_height: int | None = None) -> list[tuple[int, int]]:
        """``(height, leaf_index)`` of every ``identity`` and ``membership`` entry, in order.

        These are the only entries that change the consortium state, so a node rebuilds its
        ``ConsortiumState`` at the head from them (O(changes)) instead of replaying every block.
        """
        return self._leaf_heights(b"G", "state change index", below_height)

    # ------------------------------------------------------------------ checkpoints

    def put_checkpoint(self, cp: Mapping[str, Any], sigs: Sequence[Mapping[str, Any]]) -> None:
        """Store a checkpoint of one of our blocks with its signatures (merged, synced).

        The store checks that ``cp`` describes its own block at that height (chain, block hash,
        tree size, root, time) and refuses one that does not with :class:`CheckpointError`:
        that is equivocation evidence for the node to keep, not a checkpoint of this chain.
        Signatures are merged with those already stored; counting them against the voters is
        the caller's (``ledger.checkpoints.require_quorum``).
        """
        check_checkpoint(cp)
        with self._lock:
            height = cp["height"]
            if height > self._head_height:
                raise CheckpointError(f"checkpoint at height {height} is above the head")
            header = self._read_header(height)
            mine = {
                "v": 1,
                "chain": self.chain_id,
                "height": height,
                "block": self._block_hash(height),
                "tree_size": header["tree_size"],
                "root": header["root"],
                "time": header["time"],
            }
            if dict(cp) != mine:
                raise CheckpointError(
                    f"checkpoint at height {height} does not describe this store's block"
                )
            existing = self._read_checkpoint(height)
            merged = merge_signatures(existing[1] if existing else [], sigs)
            key = b"K" + _u64(height)
            value = canonical({"checkpoint": mine, "signatures": merged})
            try:
                batch = self._db.write_batch(sync=True)
                batch.put(key, _seal(key, value))
                batch.write()
            except plyvel.Error as exc:
                raise StoreError(f"cannot write the checkpoint at height {height}: {exc}") from exc
            if self.sync_hook is not None:
                self.sync_hook("after-checkpoint")

    def _read_checkpoint(self, height: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        key = b"K" + _u64(height)
        value = self._get_sealed(key, "checkpoint", height)
        if value is None:
            return None
        obj = self._decode(value, "checkpoint", height)
        try:
            if not isinstance(obj, dict) or set(obj) != {"checkpoint", "signatures"}:
                raise CheckpointError("malformed")
            check_checkpoint(obj["checkpoint"])
        except CheckpointError:
            raise CorruptionError(
                f"stored checkpoint at height {height} is malformed", height=height
            ) from None
        return obj["checkpoint"], list(obj["signatures"])

    def checkpoint(self, height: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """``(checkpoint, signatures)`` stored for ``height``, or None."""
        with self._lock:
            return self._read_checkpoint(height)

    def checkpoint_at_or_after(
        self, height: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The first stored checkpoint at ``height`` or above, or None."""
        with self._lock:
            try:
                with self._db.iterator(start=b"K" + _u64(height), stop=b"L") as it:
                    for key, _ in it:
                        return self._read_checkpoint(_U64.unpack(key[1:])[0])
            except plyvel.Error as exc:
                raise StoreError(f"cannot read the ledger store: {exc}") from exc
            return None

    def latest_checkpoint(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The stored checkpoint of the highest height, or None."""
        with self._lock:
            try:
                with self._db.iterator(prefix=b"K", reverse=True) as it:
                    for key, _ in it:
                        return self._read_checkpoint(_U64.unpack(key[1:])[0])
            except plyvel.Error as exc:
                raise StoreError(f"cannot read the ledger store: {exc}") from exc
            return None

    # ------------------------------------------------------------------ receipts

    def receipt(self, entry_id: bytes, *, consortium_proofs: bool = True) -> dict[str, Any]:
        """The receipt JSON of a stored entry (``ledger.receipts.build_receipt``)."""
        from ledger.receipts import build_receipt

        with self._lock:
            return build_receipt(self, entry_id, consortium_proofs=consortium_proofs)
