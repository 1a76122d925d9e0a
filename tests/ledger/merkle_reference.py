"""A naive recursive RFC 9162 §2.1 Merkle tree, used only by tests as the reference.

Everything here follows the RFC's recursive definitions literally (MTH, PATH, PROOF/SUBPROOF)
over the full list of leaf data, so it is obviously correct; the fast incremental
``ledger.merkle.MerkleLog`` is checked against it. ``MTH`` of a range is memoised only so that
the exhaustive tests (every size, every index) finish in seconds; the recursion is unchanged.
"""

from __future__ import annotations

from functools import lru_cache

from ledger.crypto import H


def _k(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (RFC 9162 §2.1.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """RFC 9162 §2.1 over ``leaves`` (leaf *data*); any prefix of it is a tree of that size."""

    def __init__(self, alg: str, leaves: list[bytes]) -> None:
        self.alg = alg
        self.leaves = leaves
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (RFC 9162 §2.1.1)."""
        n = hi - lo
        if n == 0:
            return H(self.alg, b"")
        if n == 1:
            return H(self.alg, b"\x00" + self.leaves[lo])
        k = _k(n)
        return H(self.alg, b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))

    def root(self, n: int) -> bytes:
        """MTH(D[0:n])."""
        return self.mth(0, n)

    def path(self, m: int, n: int) -> list[bytes]:
        """PATH(m, D[0:n]) (RFC 9162 §2.1.3.1)."""
        return self._path(m, 0, n)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return self._path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[0:n]) (RFC 9162 §2.1.4.1); empty for m == 0 or m == n."""
        if m == 0 or m == n:
            return []
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _k(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]
