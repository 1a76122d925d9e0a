"""Verify a chain from genesis, block by block, and report every problem (DESIGN §2).

:class:`ChainVerifier` consumes blocks in order (:meth:`ChainVerifier.add_block`) and
checkpoints with their signatures (:meth:`ChainVerifier.add_checkpoint`). It checks hash links,
heights, times, proposer signatures, the validity of every entry at its height against the
consortium state in force there, the Merkle root of every block, and every checkpoint's match
with its block and its quorum of voter signatures. It does not stop at the first problem: it
reports each bad height or entry as a :class:`Problem` and keeps following the chain, so an
auditor learns everything that is wrong in one pass.

It is incremental and does O(entries in the block) work per block, with memory O(log n) for the
Merkle log (only the frontier is kept), O(blocks) for the per-height heads checkpoints are
matched against, and one id per entry for the duplicate check (or an ``is_known`` callback into
the store). The node's apply, the store's verification and ``courtledger audit chain`` all use
it; :func:`verify_chain` runs it over a whole chain.

The state after a problem: an entry that fails validity changes nothing (its identity or
membership change is not applied), but its id and its leaf stay in the chain as stored, so that
later duplicates and later roots are still checked against what the chain really holds.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.blocks import block_hash, examine_block
from ledger.checkpoints import Signature, check_checkpoint, require_quorum
from ledger.consortium import ConsortiumState, MembershipChange
from ledger.encoding import canonical
from ledger.errors import CheckpointError, EncodingError
from ledger.genesis import Genesis, genesis_from_consortium
from ledger.merkle import MerkleLog


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the chain: at ``height`` (and entry ``index`` in that block)."""

    height: int | None
    index: int | None
    what: str

    def __str__(self) -> str:
        where = []
        if self.height is not None:
            where.append(f"height {self.height}")
        if self.index is not None:
            where.append(f"entry {self.index}")
        return f"{', '.join(where) or 'chain'}: {self.what}"


@dataclass(frozen=True)
class Head:
    """What a checkpoint at one height must match: the block's hash, tree size, root, time."""

    block: bytes
    tree_size: int
    root: bytes
    time: int


@dataclass
class ChainReport:
    """The result of verifying a chain.

    ``ok`` is True when no problem was found. ``checkpoints`` counts checkpoints that matched
    their block and reached their quorum; ``last_checkpoint`` is the highest of them.
    ``warnings`` hold findings that are not validity failures (entries signed by a key after
    the ``compromised_since`` its revocation names).
    """

    chain_id: bytes
    hash_alg: str
    height: int
    tree_size: int
    root: bytes
    blocks: int
    entries: int
    checkpoints: int
    last_checkpoint: dict[str, Any] | None
    problems: list[Problem]
    membership: list[MembershipChange]
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the chain verified without a single problem."""
        return not self.problems


class _FrontierOnly:
    """A node store that keeps nothing: the verifier needs roots, never proofs."""

    def get_node(self, level: int, index: int) -> bytes | None:
        return None

    def put_node(self, level: int, index: int, value: bytes) -> None:
        return None


class ChainVerifier:
    """Follows a chain from its genesis and reports every problem (see the module doc).

    ``pinned_chain_id``: the chain id the caller trusts. Without one, the genesis is taken on
    faith and :attr:`pinned` is False (the auditor says "NOT PINNED"). ``is_known`` replaces the
    in-memory set of entry ids for very large chains: it must answer whether an id is in a
    block BELOW the one being checked (e.g. the store's entry index compared by height).
    """

    def __init__(
        self,
        genesis: Genesis,
        *,
        pinned_chain_id: bytes | None = None,
        is_known: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.hash_alg = genesis.hash_alg
        self.pinned = pinned_chain_id is not None
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        if pinned_chain_id is not None and bytes(pinned_chain_id) != self.chain_id:
            self.problems.append(
                Problem(
                    0,
                    None,
                    f"genesis gives chain id {self.chain_id.hex()}, "
                    f"not the pinned {bytes(pinned_chain_id).hex()}",
                )
            )
        self.state = ConsortiumState.from_genesis(genesis)
        self.header: dict[str, Any] = genesis.header
        self.log = MerkleLog(self.hash_alg, _FrontierOnly())
        self._known: set[bytes] = set()
        self._is_known = is_known
        self.blocks = 0
        self.entries = 0
        self.checkpoints = 0
        self.last_checkpoint: dict[str, Any] | None = None
        self.membership: list[MembershipChange] = []
        self._heads: list[Head] = [Head(self.chain_id, 0, self.header["root"], self.header["time"])]
        # Voters in force at a height h are those of the state that judged block h (after
        # block h − 1): changes in block h take effect from h + 1 (DESIGN §2).
        self._voter_heights: list[int] = [0]
        self._voter_sets: list[list[tuple[str, bytes]]] = [self._voters_of(self.state)]
        self._checkpoint_at: dict[int, bytes] = {}

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_bundle_start(
        cls,
        genesis_block: Mapping[str, Any],
        consortium: Mapping[str, Any],
        *,
        pinned_chain_id: bytes | None = None,
    ) -> ChainVerifier:
        """A verifier from a chain bundle's first frame ``{block, consortium}`` (DESIGN §2).

        Raises :class:`GenesisError` if the consortium map is not a valid genesis; reports a
        problem at height 0 if the genesis block is not the one that map produces.
        """
        genesis = genesis_from_consortium(consortium)
        verifier = cls(genesis, pinned_chain_id=pinned_chain_id)
        try:
            same = canonical(dict(genesis_block)) == canonical(genesis.block)
        except (EncodingError, TypeError, ValueError):
            same = False
        if not same:
            verifier.problems.append(
                Problem(0, None, "genesis block is not the one its consortium map produces")
            )
        return verifier

    @staticmethod
    def _voters_of(state: ConsortiumState) -> list[tuple[str, bytes]]:
        return [(n.id, n.public_key) for n in state.voters()]

    # ------------------------------------------------------------------ queries

    @property
    def height(self) -> int:
        """Height of the last block consumed (0 before the first)."""
        return int(self.header["height"])

    def voters_at(self, height: int) -> list[tuple[str, bytes]]:
        """``(node id, public key)`` of the voters in force at ``height`` (they cosign it)."""
        i = bisect.bisect_right(self._voter_heights, height) - 1
        return self._voter_sets[max(i, 0)]

    def head(self, height: int) -> Head | None:
        """The hash, tree size, root and time of block ``height``, if consumed."""
        return self._heads[height] if 0 <= height < len(self._heads) else None

    def is_known(self, eid: bytes) -> bool:
        """Whether an entry id is already in the chain consumed so far."""
        if self._is_known is not None:
            return eid in self._known or self._is_known(eid)
        return eid in self._known

    # ------------------------------------------------------------------ consuming

    def add_block(self, block: Any) -> list[Problem]:
        """Consume the next block; return the problems found in it (also kept in the report)."""
        result = examine_block(
            self.state, self.chain_id, self.header, block, log=self.log, is_known=self.is_known
        )
        found = [Problem(p.height, p.index, p.detail) for p in result.problems]
        header = block.get("header") if isinstance(block, dict) else None
        if not result.header_ok or not isinstance(header, dict):
            # Not even a header to follow: nothing more can be learnt from this block.
            self.problems.extend(found)
            return found
        entries = block["entries"] if isinstance(block.get("entries"), list) else []
        valid_payloads = []
        for i, (eid, ok) in enumerate(zip(result.entry_ids, result.valid, strict=True)):
            if eid is not None:
                self._known.add(eid)
            if ok:
                payload = entries[i]["payload"]
                valid_payloads.append(payload)
                self._note_signer(header, i, payload)
                if payload["kind"] == "membership":
                    body = payload["body"]
                    self.membership.append(
                        MembershipChange(
                            header["height"], body["op"], body["id"], body["court"], eid
                        )
                    )
        if self._is_known is not None:
            # With an external index only the ids of this block were kept; the index answers
            # for every earlier one.
            self._known.clear()
        old_voters = self._voter_sets[-1]
        self.state = self.state.apply_payloads(header["height"], header["time"], valid_payloads)
        new_voters = self._voters_of(self.state)
        if new_voters != old_voters:
            self._voter_heights.append(header["height"] + 1)
            self._voter_sets.append(new_voters)
        self.header = header
        self.blocks += 1
        self.entries += len(entries)
        self._heads.append(
            Head(
                block_hash(self.hash_alg, header),
                header["tree_size"],
                header["root"],
                header["time"],
            )
        )
        self.problems.extend(found)
        return found

    def _note_signer(
        self, header: Mapping[str, Any], index: int, payload: Mapping[str, Any]
    ) -> None:
        """Warn when a revocation names ``compromised_since`` (domain/events.md).

        Entries signed by that key in blocks timed at or after that time were valid when they
        were added (a revocation binds from the next block), so they are a warning, not a
        validity problem: the warning names the key and the range of heights to review. The
        heights come from the per-height heads, so no per-signer index is needed.
        """
        if payload["kind"] != "identity" or payload["body"].get("op") != "revoke":
            return
        since = payload["body"].get("compromised_since")
        if not isinstance(since, int):
            return
        times = [head.time for head in self._heads]
        first = bisect.bisect_left(times, since)
        height = int(header["height"])
        # Blocks first..height (this one included: its other entries were judged before the
        # revocation) may hold entries by the key; consumers search them by signer.
        if first <= height:
            self.warnings.append(
                Problem(
                    height,
                    index,
                    f"{payload['body']['id']}'s key {bytes(payload['body']['public_key']).hex()}"
                    f" was revoked as compromised since {since}: review its entries in blocks "
                    f"{max(first, 1)}..{height}",
                )
            )

    def add_checkpoint(
        self, cp: Any, sigs: Sequence[Signature] | Iterable[Signature]
    ) -> list[Problem]:
        """Check a checkpoint against the consumed block at its height and count its quorum.

        Quorum counting is ``ledger.checkpoints.require_quorum`` with the voters in force at
        the checkpoint's height and the genesis ``receipt_quorum``.
        """
        found: list[Problem] = []
        height = cp.get("height") if isinstance(cp, Mapping) else None
        where = height if isinstance(height, int) else None

        def problem(what: str) -> list[Problem]:
            found.append(Problem(where, None, f"checkpoint: {what}"))
            self.problems.extend(found)
            return found

        try:
            check_checkpoint(cp)
        except CheckpointError as exc:
            return problem(exc.detail)
        assert isinstance(height, int)
        if cp["chain"] != self.chain_id:
            return problem(f"names chain {cp['chain'].hex()}, not {self.chain_id.hex()}")
        head = self.head(height)
        if head is None:
            return problem(f"height {height} is beyond the chain's height {self.height}")
        if cp["block"] != head.block:
            return problem("block is not the hash of the block at its height")
        if cp["tree_size"] != head.tree_size or cp["root"] != head.root:
            return problem("tree_size/root differ from the block's header")
        if cp["time"] != head.time:
            return problem("time is not the block's header time")
        try:
            require_quorum(
                cp, list(sigs), self.voters_at(height), self.genesis.params.receipt_quorum
            )
        except CheckpointError as exc:
            return problem(exc.detail)
        self.checkpoints += 1
        if self.last_checkpoint is None or height >= self.last_checkpoint["height"]:
            self.last_checkpoint = dict(cp)
        return found

    def report(self) -> ChainReport:
        """Everything found so far."""
        return ChainReport(
            chain_id=self.chain_id,
            hash_alg=self.hash_alg,
            height=self.height,
            tree_size=self.log.size,
            root=self.log.root(),
            blocks=self.blocks,
            entries=self.entries,
            checkpoints=self.checkpoints,
            last_checkpoint=self.last_checkpoint,
            problems=list(self.problems),
            membership=list(self.membership),
            warnings=list(self.warnings),
        )


def verify_chain(
    genesis: Genesis,
    blocks: Iterable[Any],
    checkpoints: Iterable[tuple[Any, Sequence[Signature]]] = (),
    *,
    pinned_chain_id: bytes | None = None,
) -> ChainReport:
    """Verify blocks 1, 2, … in order, then the checkpoints; report every problem."""
    verifier = ChainVerifier(genesis, pinned_chain_id=pinned_chain_id)
    for block in blocks:
        verifier.add_block(block)
    for cp, sigs in checkpoints:
        verifier.add_checkpoint(cp, sigs)
    return verifier.report()


__all__ = [
    "ChainReport",
    "ChainVerifier",
    "Head",
    "Problem",
    "verify_chain",
]
