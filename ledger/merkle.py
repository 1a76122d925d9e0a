"""The append-only Merkle log of all entries, hashed exactly as RFC 9162 §2.1.

Hashes (RFC 9162 §2.1.1): the empty tree is ``H(b"")``; a leaf is ``H(0x00 || data)``; an
inner node is ``H(0x01 || left || right)``. The tree over ``n > 1`` leaves splits at ``k``, the
largest power of two smaller than ``n``: ``MTH(D[0:n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Two layers, as in transparency-dev/merkle:

* pure verifiers, :func:`verify_inclusion` (RFC 9162 §2.1.3.2) and :func:`verify_consistency`
  (§2.1.4.2), that return ``None`` when a proof holds and raise :class:`ProofError` naming the
  broken precondition otherwise (a root mismatch carries both roots);
* :class:`MerkleLog`, the incremental log that produces roots and proofs for any historical size.

How the log stores its tree. Every *perfect* subtree (``2**level`` leaves starting at a
multiple of ``2**level``) is hashed once, when its last leaf is appended, and kept under the key
``(level, index)`` in a :class:`NodeStore`. The tree of any size ``n`` is a right fold of at most
``log2(n)`` perfect subtrees (one per set bit of ``n``), and every node an RFC 9162 proof names is
either a perfect subtree or such a fold over a range that ends at ``n``. So an append writes
O(log n) hashes, and a root or proof at ANY size up to the current one reads O(log n) stored
hashes; no operation ever reads all leaves.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from ledger.crypto import DIGEST_SIZE, hasher
from ledger.errors import ProofError

__all__ = [
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "DictNodeStore",
    "MerkleLog",
    "NodeStore",
    "empty_root",
    "inclusion_proof_size",
    "consistency_proof_size",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
]

#: RFC 9162 §2.1.1 domain separation between leaves and inner nodes (second-preimage defence).
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes, alg: str) -> bytes:
    """The leaf hash ``H(0x00 || data)`` (RFC 9162 §2.1.1); ``data`` is ``canonical(envelope)``."""
    return hasher(alg)(LEAF_PREFIX + bytes(data))


def node_hash(alg: str, left: bytes, right: bytes) -> bytes:
    """The inner node hash ``H(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return hasher(alg)(NODE_PREFIX + left + right)


def empty_root(alg: str) -> bytes:
    """The root of the empty tree, ``H(b"")`` (RFC 9162 §2.1.1)."""
    return hasher(alg)(b"")


# ---------------------------------------------------------------------------------------------
# Proof shapes. Knowing the exact length of a valid proof lets a verifier refuse a proof with a
# missing or extra element by name, before hashing anything (transparency-dev does the same).


def _inner_and_border(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof for ``index`` in a tree of ``size`` into its two parts.

    The *inner* part climbs from the leaf to the level where the paths to ``index`` and to the
    last leaf ``size - 1`` meet (``bit_length(index ^ (size - 1))`` levels); above that, the
    *border* part has one element for each left sibling, i.e. each set bit of ``index`` there.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def inclusion_proof_size(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    inner, border = _inner_and_border(index, size)
    return inner + border


def consistency_proof_size(old_size: int, new_size: int) -> int:
    """Number of hashes in the consistency proof from ``old_size`` to ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return 0
    # The old tree's last perfect subtree (2**shift leaves) is a single node of the new tree:
    # the proof is the inclusion proof of that node, plus the node itself unless the old tree
    # is one perfect subtree (RFC 9162 §2.1.4.2 step 2 then takes it from the old root).
    shift = (old_size & -old_size).bit_length() - 1
    inner, border = _inner_and_border((old_size - 1) >> shift, ((new_size - 1) >> shift) + 1)
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner + border


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != DIGEST_SIZE:
            raise ProofError(f"{what} element {i} is not a {DIGEST_SIZE}-byte hash")


def _check_root(what: str, root: bytes) -> None:
    if not isinstance(root, bytes) or len(root) != DIGEST_SIZE:
        raise ProofError(f"{what} is not a {DIGEST_SIZE}-byte hash")


# ---------------------------------------------------------------------------------------------
# Verification (pure functions).


def root_from_inclusion(
    alg: str, leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Compute the root that an inclusion proof implies (RFC 9162 §2.1.3.2 steps 1-5).

    Raises :class:`ProofError` if the index is outside the tree or the proof has the wrong
    length or malformed elements; the caller compares the result with the trusted root.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ProofError(f"leaf index {index!r} is not a non-negative integer")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ProofError(f"tree size {size!r} is not a non-negative integer")
    if index >= size:
        raise ProofError(f"leaf index {index} is beyond the tree size {size}")
    _check_root("leaf hash", leaf)
    _check_hashes("inclusion proof", proof)
    want = inclusion_proof_size(index, size)
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, expected {want}"
        )
    h = hasher(alg)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:  # step 4a; unreachable once the length matched, kept as the RFC states it
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = h(NODE_PREFIX + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(NODE_PREFIX + r + p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5; likewise guarded by the length check
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    alg: str, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2. Returns ``None`` when the proof holds; raises :class:`ProofError` with
    the broken precondition otherwise, and for a root mismatch with ``expected`` (``root``) and
    ``computed`` set.
    """
    _check_root("root", root)
    computed = root_from_inclusion(alg, leaf_hash, index, size, proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} does not lead to the root",
            expected=root,
            computed=computed,
        )


def verify_consistency(
    alg: str,
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2. Returns ``None`` when the proof holds; raises :class:`ProofError`
    otherwise. A root mismatch carries ``expected`` and ``computed`` for the root that failed.
    """
    for name, value in (("old size", old_size), ("new size", new_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProofError(f"{name} {value!r} is not a non-negative integer")
    if new_size < old_size:
        raise ProofError(f"new size {new_size} is smaller than old size {old_size}")
    _check_root("old root", old_root)
    _check_root("new root", new_root)
    _check_hashes("consistency proof", proof)
    h = hasher(alg)
    if old_size == new_size:
        # RFC 9162 §2.1.4.2 step 1: equal sizes need no proof, only equal roots.
        if proof:
            raise ProofError(
                f"a consistency proof between equal sizes must be empty, got {len(proof)} hashes"
            )
        if old_root != new_root:
            raise ProofError(
                f"trees of equal size {old_size} have different roots",
                expected=old_root,
                computed=new_root,
            )
        return
    if old_size == 0:
        # Every tree extends the empty one; its root is still fixed by RFC 9162 §2.1.1.
        if proof:
            raise ProofError(
                f"a consistency proof from the empty tree must be empty, got {len(proof)} hashes"
            )
        if old_root != h(b""):
            raise ProofError(
                'old root of the empty tree is not H("")', expected=h(b""), computed=old_root
            )
        return
    want = consistency_proof_size(old_size, new_size)
    if len(proof) != want:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} has {len(proof)} hashes, "
            f"expected {want}"
        )
    path = list(proof)
    # Step 2: if the old tree is one perfect subtree, its root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    # Step 4: climb past the levels where the old tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # step 6a; guarded by the length check
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = h(NODE_PREFIX + c + fr)
            sr = h(NODE_PREFIX + c + sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = h(NODE_PREFIX + sr + c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7; guarded by the length check
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} does not lead to the old root",
            expected=old_root,
            computed=fr,
        )
    if sr != new_root:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} does not lead to the new root",
            expected=new_root,
            computed=sr,
        )


# ---------------------------------------------------------------------------------------------
# Node storage.


class NodeStore(Protocol):
    """Where a :class:`MerkleLog` keeps its perfect-subtree hashes, keyed by (level, index).

    Node ``(level, index)`` is the hash of leaves ``[index * 2**level, (index + 1) * 2**level)``;
    level 0 holds the leaf hashes. A node is written once, when complete, and never changed.
    """

    def get_node(self, level: int, index: int) -> bytes | None:
        """The stored hash, or ``None`` if that node was never written."""
        ...

    def put_node(self, level: int, index: int, value: bytes) -> None:
        """Store a completed node."""
        ...


class DictNodeStore:
    """An in-memory :class:`NodeStore` (tests, tools, and logs rebuilt for a verification)."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes | None:
        return self.nodes.get((level, index))

    def put_node(self, level: int, index: int, value: bytes) -> None:
        self.nodes[(level, index)] = value


class OverlayNodeStore:
    """Reads through to a base :class:`NodeStore` and keeps its own writes in memory.

    Backs :meth:`MerkleLog.shadow`: a what-if log whose appends never reach the base store.
    """

    def __init__(self, base: NodeStore) -> None:
        self._base = base
        self._own: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes | None:
        own = self._own.get((level, index))
        return own if own is not None else self._base.get_node(level, index)

    def put_node(self, level: int, index: int, value: bytes) -> None:
        self._own[(level, index)] = value


class LRUCache:
    """A byte-bounded least-recently-used cache of node hashes for a disk-backed store.

    Safe to share between threads without a lock: each step is one C-level ``OrderedDict``
    operation under the GIL, and the races between steps (a key evicted between ``get`` and
    ``move_to_end``) are tolerated; the worst outcome is a miss that rereads the disk.
    """

    #: Cost of one cached node in CPython 3.11 (the key tuple and its ints, a 32-byte bytes
    #: object, the OrderedDict's slot and link), measured with tracemalloc at about 258 bytes.
    #: Used to turn a byte budget into an entry count.
    ENTRY_COST = 260

    def __init__(self, max_bytes: int) -> None:
        self.capacity = max(16, max_bytes // self.ENTRY_COST)
        self._data: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def get(self, key: tuple[int, int]) -> bytes | None:
        value = self._data.get(key)
        if value is not None:
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass
        return value

    def put(self, key: tuple[int, int], value: bytes) -> None:
        self._data[key] = value
        while len(self._data) > self.capacity:
            try:
                self._data.popitem(last=False)
            except KeyError:
                break

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


# ---------------------------------------------------------------------------------------------
# The incremental log.


class MerkleLog:
    """An append-only RFC 9162 Merkle log over a :class:`NodeStore`.

    ``size`` leaves are already in ``nodes`` when the log is opened with ``size > 0`` (the
    store passes its head's tree size). The log keeps only the *frontier* in memory: the hashes
    of the perfect subtrees whose union is the whole tree, one per set bit of ``size``.
    """

    def __init__(self, alg: str, nodes: NodeStore | None = None, *, size: int = 0) -> None:
        self.alg = alg
        self._h: Callable[[bytes], bytes] = hasher(alg)
        self.nodes: NodeStore = nodes if nodes is not None else DictNodeStore()
        if size < 0:
            raise ValueError("a log size is never negative")
        self._size = size
        # frontier[i] = (level, index, hash) of the perfect subtrees covering [0, size), largest
        # first. Rebuilt from storage on open; maintained in O(log n) on every append.
        self._frontier: list[tuple[int, int, bytes]] = []
        self._folds: dict[int, bytes] = {}
        self._folds_size = -1
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                idx = start >> level
                self._frontier.append((level, idx, self._node(level, idx)))
                start += 1 << level

    @property
    def size(self) -> int:
        """The number of leaves in the log."""
        return self._size

    def shadow(self) -> MerkleLog:
        """A copy at this size whose appends stay in memory (to check or preview a block's root
        without writing to this log's store). Reads O(log n) stored nodes to open."""
        return MerkleLog(self.alg, OverlayNodeStore(self.nodes), size=self._size)

    def _node(self, level: int, index: int) -> bytes:
        value = self.nodes.get_node(level, index)
        if value is None:
            raise ProofError(f"Merkle node ({level}, {index}) is missing from storage")
        return value

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf hash (see :func:`leaf_hash`) and return its leaf index."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != DIGEST_SIZE:
            raise ValueError(f"a leaf hash is {DIGEST_SIZE} bytes")
        index = self._size
        self.nodes.put_node(0, index, leaf_hash)
        level, idx, value = 0, index, leaf_hash
        # Merge equal-sized subtrees like binary carry: each set low bit of `index` is a
        # completed left sibling waiting on the frontier.
        while self._frontier and self._frontier[-1][0] == level:
            _, left_idx, left = self._frontier.pop()
            value = self._h(NODE_PREFIX + left + value)
            level, idx = level + 1, left_idx >> 1
            self.nodes.put_node(level, idx, value)
        self._frontier.append((level, idx, value))
        self._size = index + 1
        return index

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= self._size:
            raise ValueError(f"size {size!r} is not between 0 and the log size {self._size}")
        return size

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """``MTH(D[lo:hi])`` for a range that is a subtree in the RFC 9162 recursion.

        Such a range starts at a multiple of the largest power of two not above its length, so
        it is the right fold of the perfect subtrees given by the set bits of ``hi - lo``.
        """
        n = hi - lo
        if n & (n - 1) == 0:  # a perfect subtree: one stored node
            return self._node(n.bit_length() - 1, lo // n)
        if hi == self._size:
            return self._frontier_fold(lo)
        parts: list[bytes] = []
        start = lo
        for level in range(n.bit_length() - 1, -1, -1):
            if n >> level & 1:
                parts.append(self._node(level, start >> level))
                start += 1 << level
        acc = parts[-1]
        for left in reversed(parts[:-1]):
            acc = self._h(NODE_PREFIX + left + acc)
        return acc

    def _frontier_fold(self, lo: int) -> bytes:
        """``MTH(D[lo:size])`` for a ragged range ending at the current size, from memory.

        Such a range is a suffix of the frontier; the folds of every suffix are computed once
        per size (O(log n) hashes) and reused by every proof at the current size.
        """
        if self._folds_size != self._size:
            folds: dict[int, bytes] = {}
            acc: bytes | None = None
            for level, idx, value in reversed(self._frontier):
                acc = value if acc is None else self._h(NODE_PREFIX + value + acc)
                folds[idx << level] = acc
            self._folds, self._folds_size = folds, self._size
        return self._folds[lo]

    def root(self, size: int | None = None) -> bytes:
        """The tree head at ``size`` leaves (default: now). ``H(b"")`` for the empty tree."""
        n = self._check_size(size)
        if n == 0:
            return self._h(b"")
        if n == self._size:
            acc = self._frontier[-1][2]
            for _, _, left in reversed(self._frontier[:-1]):
                acc = self._h(NODE_PREFIX + left + acc)
            return acc
        return self._range_hash(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 §2.1.3.1 inclusion proof ``PATH(index, D[0:size])``, leaf upwards.

        Computed bottom-up rather than by the RFC's top-down recursion (same hashes, same
        order): below the level where the paths to ``index`` and to the last leaf meet, each
        element is the sibling of the leaf's ancestor, a perfect subtree except possibly the
        topmost, which the tree's end may cut short; above it, each element is a left sibling,
        one per set bit of the index there (see :func:`inclusion_proof_size`).
        """
        n = self._check_size(size)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ValueError(f"leaf index {index!r} is not in a tree of size {n}")
        inner, _ = _inner_and_border(index, n)
        proof: list[bytes] = []
        for level in range(inner):
            sibling = (index >> level) ^ 1
            start = sibling << level
            if start + (1 << level) <= n:
                proof.append(self._node(level, sibling))
            else:  # the right sibling cut short by the end of the tree
                proof.append(self._range_hash(start, n))
        level, rest = inner, index >> inner
        while rest:
            if rest & 1:
                proof.append(self._node(level, rest ^ 1))
            rest >>= 1
            level += 1
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 9162 §2.1.4.1 consistency proof ``PROOF(old_size, D[0:new_size])``.

        Computed bottom-up (same hashes, same order as the RFC's recursion): the old tree's
        last perfect subtree, node ``(shift, (old_size - 1) >> shift)`` where ``2**shift`` is
        the largest power of two dividing ``old_size``, is one node of the new tree; the proof
        is that node (omitted when it is the whole old tree, whose root the verifier has) and
        then its inclusion path in the new tree, as in :meth:`inclusion_proof`.
        """
        n = self._check_size(new_size)
        m = old_size
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= n:
            raise ValueError(f"old size {old_size!r} is not between 0 and {n}")
        if m == 0 or m == n:
            return []
        shift = (m & -m).bit_length() - 1
        index = (m - 1) >> shift
        proof: list[bytes] = [] if index == 0 else [self._node(shift, index)]
        inner, _ = _inner_and_border(index, ((n - 1) >> shift) + 1)
        for step in range(inner):
            level = shift + step
            sibling = (index >> step) ^ 1
            start = sibling << level
            if start + (1 << level) <= n:
                proof.append(self._node(level, sibling))
            else:  # the right sibling cut short by the end of the new tree
                proof.append(self._range_hash(start, n))
        level, rest = shift + inner, index >> inner
        while rest:
            if rest & 1:
                proof.append(self._node(level, rest ^ 1))
            rest >>= 1
            level += 1
        return proof
