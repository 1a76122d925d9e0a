"""RFC 9162 §2.1 Merkle log: known vectors, the naive reference, and a corruption generator.

Budget: about 8 s. The exhaustive part checks every size 1..300 against the recursive
reference in ``merkle_reference.py``, every index and every old size; randomized parts print
their seed on failure.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from ledger.errors import ProofError
from ledger.merkle import (
    DictNodeStore,
    MerkleLog,
    consistency_proof_size,
    empty_root,
    inclusion_proof_size,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.ledger.merkle_reference import ReferenceTree

ALG = "sha256"

# The RFC 6962 test data published with certificate-transparency and transparency-dev/merkle:
# eight leaves, the tree head at every size, and a few proofs (leaf indexes 0-based here).
CT_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def _log(alg: str, leaves: list[bytes]) -> MerkleLog:
    log = MerkleLog(alg, DictNodeStore())
    for data in leaves:
        log.append(leaf_hash(data, alg))
    return log


def test_known_roots_and_proofs() -> None:
    log = MerkleLog(ALG)
    assert log.root().hex() == CT_ROOTS[0] == empty_root(ALG).hex()
    for n, data in enumerate(CT_LEAVES, start=1):
        log.append(leaf_hash(data, ALG))
        assert log.root().hex() == CT_ROOTS[n]
    for n in range(9):
        assert log.root(n).hex() == CT_ROOTS[n]
    for index, size, proof in CT_INCLUSION:
        assert [p.hex() for p in log.inclusion_proof(index, size)] == proof
        verify_inclusion(
            ALG,
            leaf_hash(CT_LEAVES[index], ALG),
            index,
            size,
            [bytes.fromhex(p) for p in proof],
            bytes.fromhex(CT_ROOTS[size]),
        )
    for old, new, proof in CT_CONSISTENCY:
        assert [p.hex() for p in log.consistency_proof(old, new)] == proof
        verify_consistency(
            ALG,
            old,
            new,
            bytes.fromhex(CT_ROOTS[old]),
            bytes.fromhex(CT_ROOTS[new]),
            [bytes.fromhex(p) for p in proof],
        )


# SHA-256 over every size 1..300 as the issue asks; SM3 (same code, other hash) over 1..64.
@pytest.mark.parametrize(("alg", "top"), [("sha256", 300), ("sm3", 64)])
def test_every_size_index_and_old_size_against_reference(alg: str, top: int) -> None:
    leaves = [i.to_bytes(2, "big") * (i % 5) for i in range(top)]
    ref = ReferenceTree(alg, leaves)
    log = MerkleLog(alg)
    for n in range(1, top + 1):
        log.append(leaf_hash(leaves[n - 1], alg))
        assert log.root() == ref.root(n)
    for n in range(1, top + 1):
        root = ref.root(n)
        assert log.root(n) == root
        for m in range(n):
            proof = log.inclusion_proof(m, n)
            assert proof == ref.path(m, n), (m, n)
            verify_inclusion(alg, leaf_hash(leaves[m], alg), m, n, proof, root)
        for m in range(n + 1):
            proof = log.consistency_proof(m, n)
            assert proof == ref.proof(m, n), (m, n)
            verify_consistency(alg, m, n, ref.root(m), root, proof)


def test_random_larger_sizes() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    n = rng.randrange(3000, 6000)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    ref = ReferenceTree(ALG, leaves)
    log = _log(ALG, leaves)
    for _ in range(300):
        size = rng.randrange(1, n + 1)
        index = rng.randrange(size)
        old = rng.randrange(0, size + 1)
        assert log.inclusion_proof(index, size) == ref.path(index, size), f"seed {seed}"
        assert log.consistency_proof(old, size) == ref.proof(old, size), f"seed {seed}"
        assert log.root(size) == ref.root(size), f"seed {seed}"


def test_reopened_log_continues() -> None:
    """A log reopened over its stored nodes at its size continues identically (the store's path)."""
    leaves = [bytes([i]) for i in range(77)]
    nodes = DictNodeStore()
    log = MerkleLog(ALG, nodes)
    for data in leaves[:50]:
        log.append(leaf_hash(data, ALG))
    reopened = MerkleLog(ALG, nodes, size=50)
    assert reopened.root() == log.root()
    for data in leaves[50:]:
        reopened.append(leaf_hash(data, ALG))
    assert reopened.root() == ReferenceTree(ALG, leaves).root(77)


def test_proof_sizes_match_reference() -> None:
    leaves = [bytes([i]) for i in range(70)]
    ref = ReferenceTree(ALG, leaves)
    for n in range(1, 71):
        for m in range(n):
            assert inclusion_proof_size(m, n) == len(ref.path(m, n))
        for m in range(n + 1):
            assert consistency_proof_size(m, n) == len(ref.proof(m, n))


# ---------------------------------------------------------------------------------------------
# The corruption generator (the transparency-dev habit): every variant of a valid proof that
# changes anything must fail, with a ProofError and never another exception.

GARBAGE = b"\x5a" * 32


def _proof_variants(proof: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    for i, element in enumerate(proof):
        for bit in (0, 7, 255):
            flipped = bytearray(element)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield f"bit {bit} flipped in element {i}", [*proof[:i], bytes(flipped), *proof[i + 1 :]]
        yield f"element {i} dropped", proof[:i] + proof[i + 1 :]
    yield "element added at the end", [*proof, GARBAGE]
    yield "garbage at the start", [GARBAGE, *proof]
    if proof:
        yield "last element duplicated", [*proof, proof[-1]]
        yield "truncated element", [proof[0][:31], *proof[1:]]


def _inclusion_corruptions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> Iterator[tuple[str, tuple[int, int, list[bytes], bytes, bytes]]]:
    for name, variant in _proof_variants(proof):
        yield name, (index, size, variant, root, leaf)
    for name, i in (("index + 1", index + 1), ("index - 1", index - 1)):
        if i >= 0:
            yield name, (i, size, proof, root, leaf)
    yield "size * 2", (index, size * 2, proof, root, leaf)
    yield "size // 2", (index, size // 2, proof, root, leaf)
    yield "leaf flipped", (index, size, proof, root, bytes([leaf[0] ^ 1]) + leaf[1:])
    yield "root flipped", (index, size, proof, bytes([root[0] ^ 1]) + root[1:], leaf)
    yield "leaf and root swapped", (index, size, proof, leaf, root)


@pytest.mark.parametrize(("alg", "top"), [("sha256", 48), ("sm3", 20)])
def test_no_corrupted_inclusion_proof_verifies(alg: str, top: int) -> None:
    leaves = [bytes([i, i]) for i in range(top)]
    log = _log(alg, leaves)
    for size in range(1, top + 1):
        root = log.root(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            leaf = leaf_hash(leaves[index], alg)
            verify_inclusion(alg, leaf, index, size, proof, root)
            for name, (i, s, p, r, lf) in _inclusion_corruptions(index, size, proof, root, leaf):
                # A corruption that happens to describe another valid statement is not one.
                if (
                    i < s <= log.size
                    and lf == leaf_hash(leaves[i], alg)
                    and r == log.root(s)
                    and p == log.inclusion_proof(i, s)
                ):
                    continue
                with pytest.raises(ProofError):
                    verify_inclusion(alg, lf, i, s, p, r)
                    pytest.fail(f"{name} verified for leaf {index} of {size}")


@pytest.mark.parametrize(("alg", "top"), [("sha256", 48), ("sm3", 20)])
def test_no_corrupted_consistency_proof_verifies(alg: str, top: int) -> None:
    leaves = [bytes([i, 1]) for i in range(top)]
    log = _log(alg, leaves)
    for new in range(1, top + 1):
        new_root = log.root(new)
        for old in range(1, new + 1):
            old_root = log.root(old)
            proof = log.consistency_proof(old, new)
            verify_consistency(alg, old, new, old_root, new_root, proof)
            cases: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
                (name, (old, new, old_root, new_root, v)) for name, v in _proof_variants(proof)
            ]
            cases += [
                ("old + 1", (old + 1, new, old_root, new_root, proof)),
                ("old - 1", (old - 1, new, old_root, new_root, proof)),
                ("new * 2", (old, new * 2, old_root, new_root, proof)),
                ("new // 2", (old, new // 2, old_root, new_root, proof)),
                ("old * 2", (old * 2, new, old_root, new_root, proof)),
                ("old // 2", (old // 2, new, old_root, new_root, proof)),
                ("roots swapped", (old, new, new_root, old_root, proof)),
                (
                    "old root flipped",
                    (old, new, bytes([old_root[0] ^ 1]) + old_root[1:], new_root, proof),
                ),
                (
                    "new root flipped",
                    (old, new, old_root, bytes([new_root[0] ^ 1]) + new_root[1:], proof),
                ),
            ]
            for name, (o, n, orr, nr, p) in cases:
                if (
                    0 <= o <= n <= log.size
                    and orr == log.root(o)
                    and nr == log.root(n)
                    and p == log.consistency_proof(o, n)
                ):
                    continue  # the "corruption" is another true statement
                with pytest.raises(ProofError):
                    verify_consistency(alg, o, n, orr, nr, p)
                    pytest.fail(f"{name} verified for {old} -> {new}")


def test_mismatch_carries_both_roots() -> None:
    log = _log(ALG, [b"a", b"b", b"c"])
    proof = log.inclusion_proof(1)
    wrong = b"\x11" * 32
    with pytest.raises(ProofError) as info:
        verify_inclusion(ALG, leaf_hash(b"b", ALG), 1, 3, proof, wrong)
    assert info.value.expected == wrong and info.value.computed == log.root()
    assert "expected root" in info.value.diagnostics()


def test_named_preconditions() -> None:
    log = _log(ALG, [b"a", b"b", b"c"])
    leaf = leaf_hash(b"a", ALG)
    with pytest.raises(ProofError, match="beyond the tree size"):
        verify_inclusion(ALG, leaf, 3, 3, [], log.root())
    with pytest.raises(ProofError, match="expected 2"):
        verify_inclusion(ALG, leaf, 0, 3, log.inclusion_proof(0)[:1], log.root())
    with pytest.raises(ProofError, match="smaller than old size"):
        verify_consistency(ALG, 3, 2, log.root(3), log.root(2), [])
    with pytest.raises(ProofError, match="equal sizes must be empty"):
        verify_consistency(ALG, 3, 3, log.root(), log.root(), [GARBAGE])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(ALG, 0, 3, GARBAGE, log.root(), [])
    verify_consistency(ALG, 0, 3, empty_root(ALG), log.root(), [])
    with pytest.raises(ProofError, match="32-byte"):
        verify_inclusion(ALG, leaf, 0, 3, [b"x", b"y"], log.root())
    with pytest.raises(ValueError):
        log.inclusion_proof(3)
    with pytest.raises(ValueError):
        log.root(4)


def test_lru_cache_is_bounded() -> None:
    from ledger.merkle import LRUCache

    cache = LRUCache(LRUCache.ENTRY_COST * 100)
    for i in range(1000):
        cache.put((0, i), bytes(32))
    assert len(cache) == 100
    assert cache.get((0, 999)) is not None and cache.get((0, 899)) is None
    cache.clear()
    for i in range(100):
        cache.put((0, i), bytes(32))
    assert cache.get((0, 0)) is not None  # touched: now the most recently used
    cache.put((0, 100), bytes(32))
    assert cache.get((0, 0)) is not None and cache.get((0, 1)) is None
