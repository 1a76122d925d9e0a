"""The auditor's engine behind ``courtledger audit chain``: verify a whole chain, resumably.

:func:`audit_chain` reads a :class:`node.auditsource.ChainSource` and feeds it to
``ledger.chain.ChainVerifier`` (DESIGN §2: hash links, heights, proposer signatures by node
keys valid at that height, the validity of every entry at its height, every Merkle root,
every checkpoint's match and quorum against the voters in force, the membership history). It
adds what only a whole-chain auditor can do:

* damage of the container (a truncated bundle, a missing or misplaced block, a record that
  does not decode) becomes a problem at its height;
* two validly signed checkpoints that contradict each other are kept as equivocation evidence
  (DESIGN §2 "Checkpoints"), both printed;
* problems that only follow from an earlier break (every later root once a block is missing,
  every later checkpoint once the heads shifted) are summarised in one line after the first,
  so the report names the first bad height instead of drowning it;
* ``--save``/``--resume``: the state after a clean audit (head, tree size, root, the Merkle
  frontier, the identity and membership changes that rebuild the consortium state, the entry
  ids for the duplicate rule, the last verified checkpoint) lets the next audit start there.
  The saved head is itself checked against the new data (see :func:`audit_chain`).

Consistency between successive checkpoints needs no separate proof inside one audit: every
checkpoint is matched against the head at its height of ONE log the verifier built itself,
so any two matched checkpoints are consistent by construction (RFC 9162 §2.1.4's property).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.blocks import block_hash, entry_leaf
from ledger.chain import ChainReport, ChainVerifier, Head, Problem
from ledger.checkpoints import (
    check_checkpoint,
    detect_equivocation,
    make_checkpoint,
    quorum_size,
    to_file,
    verify_checkpoint_signatures,
)
from ledger.consortium import ConsortiumState
from ledger.crypto import DIGEST_SIZE
from ledger.encoding import canonical, decode
from ledger.entries import encode_envelope
from ledger.errors import CheckpointError, EncodingError, GenesisError, LedgerError, ProofError
from ledger.genesis import Genesis, genesis_from_consortium
from ledger.merkle import MerkleLog, leaf_hash, verify_consistency
from node.auditsource import ChainSource, Item

__all__ = [
    "STATE_FORMAT",
    "AuditState",
    "ChainAudit",
    "Pin",
    "StateError",
    "audit_chain",
    "load_state",
    "save_state",
]

STATE_FORMAT = "courtledger-audit-state/1"
#: A state file holds 32 bytes per entry id; allow chains of tens of millions of entries.
_STATE_MAX = 2 << 30


class StateError(Exception):
    """A ``--resume`` state file that cannot be used (DESIGN §6 exit 2); one line of reason."""


@dataclass(frozen=True)
class Pin:
    """What the auditor trusts: a chain id, or a genesis file (which gives the chain id)."""

    chain_id: bytes | None = None
    genesis: Genesis | None = None

    @property
    def pinned_id(self) -> bytes | None:
        """The pinned chain id, if any."""
        if self.genesis is not None:
            return self.genesis.chain_id
        return self.chain_id


# ============================================================================ the Merkle frontier


class _FrontierStore:
    """A Merkle node store that keeps only the newest node of each level.

    ``MerkleLog`` appends like a binary counter, so the frontier at size ``n`` (one perfect
    subtree per set bit of ``n``, RFC 9162 §2.1.1's decomposition) is exactly the newest node
    written at each of those levels. That is all a verifier needs to compute roots, in
    O(log n) memory, and all a saved state needs to resume the log.
    """

    def __init__(self, nodes: Iterable[tuple[int, int, bytes]] = ()) -> None:
        self.latest: dict[int, tuple[int, bytes]] = {lv: (ix, h) for lv, ix, h in nodes}
        #: The leaves appended since the caller last cleared this (one block's, in order).
        self.leaves: list[bytes] = []

    def get_node(self, level: int, index: int) -> bytes | None:
        got = self.latest.get(level)
        return got[1] if got is not None and got[0] == index else None

    def put_node(self, level: int, index: int, value: bytes) -> None:
        self.latest[level] = (index, value)
        if level == 0:
            self.leaves.append(value)

    def frontier(self, size: int) -> list[tuple[int, int, bytes]]:
        """``(level, index, hash)`` of the frontier at ``size`` leaves, largest first."""
        out = []
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                index, value = self.latest[level]
                out.append((level, index, value))
        return out


# ============================================================================ resumable verifier


class _ResumableVerifier(ChainVerifier):
    """A ``ChainVerifier`` whose state can be saved after a clean audit and resumed later.

    ``ledger.chain.ChainVerifier`` offers no snapshot API, so this subclass reads and sets the
    parts of its state a resume needs (consortium state, last header, Merkle frontier, entry
    ids, per-height heads, voter history). ``tests/audit`` pin the behaviour: a resumed audit
    finds exactly what a full one finds in the new blocks.
    """

    def __init__(self, genesis: Genesis, *, pinned_chain_id: bytes | None = None) -> None:
        super().__init__(genesis, pinned_chain_id=pinned_chain_id)
        self.frontier_store = _FrontierStore()
        self.log = MerkleLog(self.hash_alg, self.frontier_store)
        #: ``(height, time, payloads)`` of the valid identity/membership entries, in order.
        self.changes: list[tuple[int, int, list[dict[str, Any]]]] = []
        #: The head of each consumed block by the height its header names. The verifier's own
        #: heads are by position; after a missing block the two differ, and only this one
        #: tells a shifted position from a second block at one height (equivocation).
        self.by_height: dict[int, Head] = {}

    def add_block(self, block: Any) -> list[Problem]:
        before = len(self._heads)
        found = super().add_block(block)
        if len(self._heads) > before:
            self.by_height.setdefault(int(self.header["height"]), self._heads[-1])
        # Remember the consortium-changing entries that were applied (valid ones: no problem
        # at their index), so that a saved state can rebuild the consortium state.
        entries = block.get("entries") if isinstance(block, dict) else None
        header = block.get("header") if isinstance(block, dict) else None
        if isinstance(entries, list) and isinstance(header, dict) and self.header is header:
            bad = {p.index for p in found if p.index is not None}
            changes = [
                env["payload"]
                for i, env in enumerate(entries)
                if i not in bad
                and isinstance(env, dict)
                and isinstance(env.get("payload"), dict)
                and env["payload"].get("kind") in ("identity", "membership")
            ]
            if changes:
                self.changes.append((header["height"], header["time"], changes))
        return found

    def known_ids(self) -> set[bytes]:
        """Every entry id consumed so far (the duplicate rule's memory)."""
        return self._known

    def resume(self, state: AuditState) -> None:
        """Put this fresh verifier where ``state`` left the chain (nothing consumed yet)."""
        cs = ConsortiumState.from_genesis(self.genesis)
        for height, when, payloads in state.changes:
            cs = cs.apply_payloads(height, when, payloads)
        self.state = cs.advance(state.height)
        self.changes = list(state.changes)
        self.header = dict(state.header)
        self.frontier_store = _FrontierStore(state.frontier)
        self.log = MerkleLog(self.hash_alg, self.frontier_store, size=state.tree_size)
        self._known = set(state.ids)
        self.blocks = state.height
        self.entries = state.tree_size
        # Heads below the saved height are not kept; checkpoints there were audited before.
        head = Head(state.block, state.tree_size, state.root, state.header["time"])
        self._heads = [None] * state.height + [head]  # type: ignore[assignment]
        self._voter_heights = [state.height]
        self._voter_sets = [self._voters_of(self.state)]
        if state.checkpoint is not None:
            self.last_checkpoint = dict(state.checkpoint[0])


# ============================================================================ saved state


@dataclass
class AuditState:
    """What ``--save`` writes after a clean audit and ``--resume`` starts from."""

    chain_id: bytes
    hash_alg: str
    height: int
    block: bytes
    header: dict[str, Any]
    tree_size: int
    root: bytes
    frontier: list[tuple[int, int, bytes]]
    changes: list[tuple[int, int, list[dict[str, Any]]]]
    ids: list[bytes]
    checkpoint: tuple[dict[str, Any], list[dict[str, Any]]] | None
    saved_at: int

    def to_map(self) -> dict[str, Any]:
        """The canonical map written to the state file."""
        out: dict[str, Any] = {
            "format": STATE_FORMAT,
            "chain": self.chain_id,
            "hash_alg": self.hash_alg,
            "height": self.height,
            "block": self.block,
            "header": self.header,
            "tree_size": self.tree_size,
            "root": self.root,
            "frontier": [[lv, ix, h] for lv, ix, h in self.frontier],
            "changes": [
                {"height": h, "time": t, "payloads": ps} for h, t, ps in self.changes
            ],
            "ids": b"".join(sorted(self.ids)),
            "saved_at": self.saved_at,
        }
        if self.checkpoint is not None:
            out["checkpoint"] = {
                "checkpoint": self.checkpoint[0],
                "signatures": self.checkpoint[1],
            }
        return out


def save_state(path: Path, state: AuditState) -> None:
    """Write ``state`` to ``path`` (canonical MessagePack), replacing it atomically."""
    tmp = Path(str(path) + ".tmp")
    try:
        tmp.write_bytes(canonical(state.to_map()))
        tmp.replace(path)
    except OSError as exc:
        raise StateError(f"cannot write the state file {path}: {exc.strerror}") from None


def load_state(path: Path) -> AuditState:
    """Read and check a state file strictly; raise :class:`StateError` naming the fault."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read the state file {path}: {exc.strerror}") from None
    try:
        obj = decode(raw, max_size=_STATE_MAX)
    except EncodingError as exc:
        raise StateError(f"state file {path} is not canonical: {exc.detail}") from None
    need = {"format", "chain", "hash_alg", "height", "block", "header", "tree_size", "root",
            "frontier", "changes", "ids", "saved_at"}
    if not isinstance(obj, dict) or not need <= set(obj) or set(obj) - need - {"checkpoint"}:
        raise StateError(f"state file {path} does not hold the fields of {STATE_FORMAT}")
    if obj["format"] != STATE_FORMAT:
        raise StateError(f"state file {path} is {obj['format']!r}, not {STATE_FORMAT}")
    try:
        ids_blob = obj["ids"]
        assert isinstance(ids_blob, bytes) and len(ids_blob) % DIGEST_SIZE == 0
        ids = [ids_blob[i : i + DIGEST_SIZE] for i in range(0, len(ids_blob), DIGEST_SIZE)]
        frontier = [(int(lv), int(ix), bytes(h)) for lv, ix, h in obj["frontier"]]
        changes = [
            (int(c["height"]), int(c["time"]), list(c["payloads"])) for c in obj["changes"]
        ]
        header = obj["header"]
        assert isinstance(header, dict) and header.get("height") == obj["height"]
        cp = None
        if "checkpoint" in obj:
            check_checkpoint(obj["checkpoint"]["checkpoint"])
            cp = (obj["checkpoint"]["checkpoint"], list(obj["checkpoint"]["signatures"]))
        state = AuditState(
            chain_id=obj["chain"], hash_alg=obj["hash_alg"], height=int(obj["height"]),
            block=obj["block"], header=header, tree_size=int(obj["tree_size"]),
            root=obj["root"], frontier=frontier, changes=changes, ids=ids, checkpoint=cp,
            saved_at=int(obj["saved_at"]),
        )
        # The frontier must reproduce the saved root: a state file that does not is unusable.
        log = MerkleLog(state.hash_alg, _FrontierStore(frontier), size=state.tree_size)
        assert state.tree_size == 0 or log.root() == state.root
    except (AssertionError, KeyError, TypeError, ValueError, LedgerError) as exc:
        raise StateError(f"state file {path} is inconsistent ({exc or 'bad field'})") from None
    return state


# ============================================================================ the audit


@dataclass
class Equivocation:
    """Two validly signed checkpoints that contradict each other (DESIGN §2)."""

    what: str
    first: dict[str, Any]  # checkpoint files (JSON), each with its signatures
    second: dict[str, Any]


@dataclass
class ChainAudit:
    """The outcome of :func:`audit_chain`."""

    report: ChainReport
    pinned: bool
    problems: list[Problem]
    summarised: int
    equivocations: list[Equivocation]
    resumed_from: int | None
    seconds: float
    source: str
    state: AuditState | None = None
    notes: list[str] = field(default_factory=list)
    #: Entries already audited when the run resumed (not counted in its speed).
    state_entries_before: int | None = None

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def entries_per_second(self) -> float:
        """Entries verified per second in this run (resumed entries not counted)."""
        done = self.report.entries - (self.state_entries_before or 0)
        return done / self.seconds if self.seconds > 0 else 0.0


#: Problems that only restate an earlier break (the log or the heads no longer line up).
_CONSEQUENCES = (
    "root is not the Merkle root",
    "log holds",
    "first_index",
    "checkpoint: block is not the hash",
    "checkpoint: tree_size/root differ",
    "checkpoint: time is not",
    "checkpoint: height",
)
#: Problems that break the log or the per-height heads for everything after them: a block
#: missing, misplaced or out of order (the sources' words), or a root that no longer matches.
_BREAKS = (" missing:", "is missing", "out of order", "holds block", "truncated",
           "does not follow", "root is not", "log holds")


def _summarise(problems: list[Problem]) -> tuple[list[Problem], int]:
    """Keep every problem up to the first break; fold its later consequences into one line."""
    ordered = sorted(problems, key=lambda p: (-1 if p.height is None else p.height,
                                              -1 if p.index is None else p.index))
    brk = next((p.height for p in ordered if p.height is not None and p.index is None
                and not p.what.startswith("checkpoint:")
                and any(b in p.what for b in _BREAKS)), None)
    if brk is None:
        return ordered, 0
    kept: list[Problem] = []
    folded: list[Problem] = []
    for p in ordered:
        if p.height is not None and p.height > brk and any(c in p.what for c in _CONSEQUENCES):
            folded.append(p)
        else:
            kept.append(p)
    if folded:
        lo = min(p.height for p in folded if p.height is not None)
        hi = max(p.height for p in folded if p.height is not None)
        kept.append(Problem(None, None, f"{len(folded)} more root/checkpoint mismatches at "
                            f"heights {lo}..{hi} follow from the break at height {brk}"))
    return kept, len(folded)


def _genesis_of(first: Item, pin: Pin) -> tuple[_ResumableVerifier, list[Problem]]:
    """The verifier for the source's genesis frame, checked against the pin."""
    block = first.value.get("block")
    consortium = first.value.get("consortium")
    extra: list[Problem] = []
    if consortium is None:
        # A node does not serve its consortium map: it must come from the pinned file.
        if pin.genesis is None:
            raise GenesisError("this source does not carry the consortium map: give "
                               "--consortium GENESIS")
        consortium = pin.genesis.consortium
    try:
        genesis = genesis_from_consortium(consortium)
    except GenesisError as exc:
        if pin.genesis is None:
            raise
        genesis = pin.genesis
        extra.append(Problem(0, None, f"the source's consortium map is not a genesis: {exc}"))
    verifier = _ResumableVerifier(genesis, pinned_chain_id=pin.pinned_id)
    try:
        same = canonical(dict(block)) == canonical(genesis.block)
    except (EncodingError, TypeError, ValueError):
        same = False
    if not same:
        extra.append(Problem(0, None, "genesis block is not the one its consortium map produces"))
    return verifier, extra


class _Prefix:
    """Re-hashes the already-audited prefix on resume (bundle and data dir sources).

    The saved state names the head (height, block hash, tree size, root). The new data's
    blocks up to that height must reproduce it exactly: their headers must chain by hash to
    the saved block hash, and their entries must rebuild the saved root (a consistency check
    of the old tree head against the new data, RFC 9162 §2.1.4, done on the leaves
    themselves). Signatures are not re-verified there: they were, by the saved audit, over
    exactly these bytes.
    """

    def __init__(self, genesis: Genesis, state: AuditState) -> None:
        self.alg = genesis.hash_alg
        self.state = state
        self.prev = genesis.header
        self.log = MerkleLog(self.alg, _FrontierStore())
        self.problems: list[Problem] = []
        self.broken = False

    def add(self, block: Any, raw: list[bytes] | None = None) -> None:
        """Re-hash one block of the prefix (from the entries' stored bytes when given)."""
        header = block.get("header") if isinstance(block, dict) else None
        entries = block.get("entries") if isinstance(block, dict) else None
        if not isinstance(header, dict) or not isinstance(entries, list):
            self._fail(None, "a block of the already-audited part is malformed")
            return
        try:
            if header.get("prev") != block_hash(self.alg, self.prev):
                self._fail(header.get("height"), "hash link broken")
            if raw is not None:
                # The stored bytes themselves: a non-canonical rewrite changes the root too.
                for data in raw:
                    self.log.append(leaf_hash(data, self.alg))
            else:
                for env in entries:
                    self.log.append(entry_leaf(self.alg, env))
        except (LedgerError, TypeError, ValueError) as exc:
            self._fail(header.get("height"), f"cannot be re-hashed ({exc})")
        self.prev = header

    def _fail(self, height: Any, what: str) -> None:
        if not self.broken:
            self.broken = True
            h = height if isinstance(height, int) else None
            self.problems.append(Problem(h, None, f"history rewritten since the saved audit "
                                         f"(height {self.state.height}): {what}"))

    def finish(self) -> None:
        s = self.state
        try:
            same = (self.prev.get("height") == s.height
                    and block_hash(self.alg, self.prev) == s.block
                    and self.log.size == s.tree_size
                    and (s.tree_size == 0 or self.log.root() == s.root))
        except (LedgerError, TypeError, ValueError):
            same = False
        if not same:
            self._fail(s.height, f"the data no longer reproduces the saved head (block "
                       f"{s.block.hex()[:16]}…, tree size {s.tree_size}, root "
                       f"{s.root.hex()[:16]}…)")


def audit_chain(
    source: ChainSource,
    pin: Pin,
    *,
    resume: AuditState | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    consistency: Callable[[int, int], Any] | None = None,
) -> ChainAudit:
    """Verify the chain ``source`` yields against ``pin``; report every problem.

    ``progress(blocks, entries, bytes)`` is called after each block. With ``resume``, blocks
    up to the saved height are only re-hashed against the saved head (:class:`_Prefix`, for
    sources that start at genesis) or not fetched at all (a node, which is then asked for a
    consistency proof ``consistency(old_size, new_size)`` from the saved checkpoint to the
    newest one, RFC 9162 §2.1.4.2). Everything above is verified from the saved state.
    Raises :class:`GenesisError` when there is no genesis to start from.
    """
    started = time.monotonic()
    items = iter(source.items(start=(resume.height + 1) if resume is not None else 1))
    problems: list[Problem] = []
    first = next(items, None)
    while first is not None and first.kind == "damage":
        assert first.damage is not None
        problems.append(Problem(first.damage.height, None, first.damage.what))
        if first.damage.fatal:
            first = None
            break
        first = next(items, None)
    if first is None or first.kind != "genesis":
        raise GenesisError("; ".join(str(p) for p in problems) or "the source holds no genesis")
    verifier, extra = _genesis_of(first, pin)
    problems.extend(extra)
    prefix: _Prefix | None = None
    if resume is not None:
        if resume.chain_id != verifier.chain_id:
            raise StateError(f"the state file is of chain {resume.chain_id.hex()}, not "
                             f"{verifier.chain_id.hex()}")
        prefix = _Prefix(verifier.genesis, resume)
        verifier.resume(resume)
    blocks = entries = nbytes = 0
    checkpoints: list[tuple[Any, Any]] = []
    in_prefix = False  # whether the source gave blocks of the already-audited part
    for item in items:
        nbytes += item.size
        if item.kind == "damage":
            assert item.damage is not None
            problems.append(Problem(item.damage.height, None, item.damage.what))
            continue
        if item.kind == "block":
            block = item.value
            header = block.get("header") if isinstance(block, dict) else None
            height = header.get("height") if isinstance(header, dict) else None
            if prefix is not None and resume is not None:
                if isinstance(height, int) and height <= resume.height:
                    prefix.add(block, item.raw)
                    in_prefix = True
                    continue
                if in_prefix:
                    prefix.finish()
                    in_prefix = False
            verifier.frontier_store.leaves.clear()
            verifier.add_block(block)
            if item.raw is not None:
                problems.extend(_stored_bytes(verifier, block, item))
            blocks += 1
            got = block.get("entries") if isinstance(block, dict) else None
            entries += len(got) if isinstance(got, list) else 0
            if progress is not None:
                progress(blocks, entries, nbytes)
        elif item.kind == "checkpoint":
            value = item.value if isinstance(item.value, dict) else {}
            checkpoints.append((value.get("checkpoint"), value.get("signatures")))
    if progress is not None:
        progress(blocks, entries, nbytes)  # the checkpoints after the last block count too
    if prefix is not None:
        if in_prefix:
            prefix.finish()
        problems.extend(prefix.problems)
    equivocations = _checkpoints(verifier, checkpoints, resume)
    notes: list[str] = []
    if resume is not None and consistency is not None:
        problems.extend(_resume_consistency(verifier, resume, consistency, notes))
    report = verifier.report()
    all_problems = problems + report.problems
    shown, folded = _summarise(all_problems)
    audit = ChainAudit(
        report=report,
        pinned=pin.pinned_id is not None,
        problems=shown,
        summarised=folded,
        equivocations=equivocations,
        resumed_from=resume.height if resume is not None else None,
        seconds=time.monotonic() - started,
        source=source.name,
        notes=notes,
        state_entries_before=resume.tree_size if resume is not None else 0,
    )
    if audit.ok:
        audit.state = AuditState(
            chain_id=verifier.chain_id,
            hash_alg=verifier.hash_alg,
            height=verifier.height,
            block=block_hash(verifier.hash_alg, verifier.header),
            header=dict(verifier.header),
            tree_size=verifier.log.size,
            root=verifier.log.root(),
            frontier=verifier.frontier_store.frontier(verifier.log.size),
            changes=verifier.changes,
            ids=list(verifier.known_ids()),
            checkpoint=_last_signed(checkpoints, verifier, resume),
            saved_at=int(time.time() * 1000),
        )
    return audit


def _stored_bytes(verifier: _ResumableVerifier, block: Any, item: Item) -> list[Problem]:
    """Prove each entry of a block frame canonically encoded in the file (DESIGN §2).

    ``item.raw`` holds each entry's bytes as the file stores them; the verifier appended the
    leaf ``H(0x00 || canonical(envelope))`` of each (RFC 9162 §2.1.1). Equal leaves mean equal
    bytes, so one hash per entry replaces encoding the frame a second time. When the verifier
    could not append every leaf (a malformed block), each entry is encoded and compared.
    """
    assert item.raw is not None
    header = block.get("header") if isinstance(block, dict) else None
    height = header.get("height") if isinstance(header, dict) else None
    where = height if isinstance(height, int) else None
    leaves = verifier.frontier_store.leaves
    entries = block.get("entries") if isinstance(block, dict) else None
    out: list[Problem] = []
    what = "entry is not canonically encoded where it is stored" + (
        f" (frame at byte offset {item.offset})" if item.offset is not None else "")
    if len(leaves) == len(item.raw):
        for i, (raw, leaf) in enumerate(zip(item.raw, leaves, strict=True)):
            if leaf_hash(raw, verifier.hash_alg) != leaf:
                out.append(Problem(where, i, what))
        return out
    for i, raw in enumerate(item.raw):
        try:
            same = isinstance(entries, list) and encode_envelope(entries[i]) == raw
        except (LedgerError, TypeError, KeyError):
            continue  # not encodable at all: the verifier reported it
        if not same:
            out.append(Problem(where, i, what))
    return out


def _last_signed(
    checkpoints: list[tuple[Any, Any]], verifier: ChainVerifier, resume: AuditState | None
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The highest checkpoint that verified, with its signatures (for the saved state)."""
    last = verifier.last_checkpoint
    if last is None:
        return None
    for cp, sigs in checkpoints:
        if cp == last:
            return dict(cp), [dict(s) for s in sigs]
    if resume is not None and resume.checkpoint is not None and resume.checkpoint[0] == last:
        return resume.checkpoint
    return None


def _checkpoints(
    verifier: _ResumableVerifier, checkpoints: list[tuple[Any, Any]], resume: AuditState | None
) -> list[Equivocation]:
    """Check every checkpoint; keep validly signed contradictions as equivocation evidence."""
    rule = verifier.genesis.params.receipt_quorum
    good: dict[int, tuple[dict[str, Any], list[Any]]] = {}
    rogue: list[tuple[dict[str, Any], list[Any]]] = []
    for cp, sigs in checkpoints:
        height = cp.get("height") if isinstance(cp, Mapping) else None
        if resume is not None and isinstance(height, int) and height < resume.height:
            continue  # audited when the state was saved
        sig_list = list(sigs) if isinstance(sigs, list) else []
        for i, sig in enumerate(sig_list):
            # DESIGN §2: each signature is exactly {"node", "sig"}; the quorum count skips
            # anything else, but a malformed one in the data under audit is still damage.
            if not (isinstance(sig, Mapping) and set(sig) == {"node", "sig"}
                    and isinstance(sig["node"], str) and isinstance(sig["sig"], bytes)
                    and len(sig["sig"]) == 64):
                where = height if isinstance(height, int) else None
                verifier.problems.append(
                    Problem(where, None, f"checkpoint: signature [{i}] is malformed"))
        found = verifier.add_checkpoint(cp, sig_list)
        if not found:
            good.setdefault(height, (dict(cp), sig_list))  # type: ignore[arg-type]
            # The quorum held, but a signature attributed to a voter in force that does not
            # verify is still tampered data (a relay may drop signatures, never forge them).
            assert isinstance(height, int)
            voters = verifier.voters_at(height)
            valid = verify_checkpoint_signatures(cp, sig_list, voters)
            ids = {v for v, _ in voters}
            for s in sig_list:
                node = s.get("node") if isinstance(s, Mapping) else None
                if node in ids and node not in valid:
                    verifier.problems.append(Problem(
                        height, None, f"checkpoint: voter {node}'s signature does not verify"))
                    valid.add(node)  # once per node
                elif isinstance(node, str) and node not in ids:
                    # A node keeps only signatures it verified against the voters in force
                    # (node/cosign.py), so a non-voter's signature in its data was put there.
                    verifier.problems.append(Problem(
                        height, None, f"checkpoint: signature by {node!r}, not a voter in "
                        f"force at height {height}"))
            continue
        # It does not match the chain. If a quorum of the voters in force signed it anyway,
        # it is not just a bad frame: it is evidence that voters signed two histories.
        try:
            check_checkpoint(cp)
            if cp["chain"] != verifier.chain_id:
                continue
            voters = verifier.voters_at(cp["height"])
            valid = verify_checkpoint_signatures(cp, sig_list, voters)
        except (CheckpointError, KeyError, TypeError):
            continue
        if len(valid) >= quorum_size(len(voters), rule):
            rogue.append((dict(cp), sig_list))
    out: list[Equivocation] = []
    alg = verifier.hash_alg
    for cp, sigs in rogue:
        height = cp["height"]
        head = verifier.by_height.get(height)
        if head is None or head.block == cp["block"]:
            # No block of that height in the data (it is missing), or the very block: the
            # mismatch came from shifted positions after a break, reported already.
            continue
        mine = good.get(height)
        if mine is None:
            own = make_checkpoint(verifier.chain_id, height, head.block, head.tree_size,
                                  head.root, head.time)
            mine = (own, [])
        evidence = detect_equivocation(mine[0], cp)
        what = evidence.detail if evidence is not None else "contradicting checkpoints"
        out.append(Equivocation(what, to_file(alg, *mine), to_file(alg, cp, sigs)))
        verifier.problems.append(Problem(height, None, f"equivocation: {what}"))
    return out


def _resume_consistency(
    verifier: ChainVerifier,
    resume: AuditState,
    consistency: Callable[[int, int], Any],
    notes: list[str],
) -> list[Problem]:
    """Ask the node for a consistency proof from the saved checkpoint to the newest one."""
    if resume.checkpoint is None or verifier.last_checkpoint is None:
        notes.append("no consistency proof asked: no checkpoint on one side")
        return []
    old, new = resume.checkpoint[0], verifier.last_checkpoint
    if new["tree_size"] <= old["tree_size"]:
        return []
    proof = consistency(old["tree_size"], new["tree_size"])
    where = new["height"]
    if not isinstance(proof, dict) or not isinstance(proof.get("path"), list):
        return [Problem(where, None, "the node gave no consistency proof from the saved "
                        f"checkpoint (tree size {old['tree_size']})")]
    try:
        path = [bytes.fromhex(p) for p in proof["path"]]
        verify_consistency(verifier.hash_alg, old["tree_size"], new["tree_size"],
                           old["root"], new["root"], path)
    except (ProofError, ValueError, TypeError) as exc:
        return [Problem(where, None, "history rewritten since the saved audit: the "
                        f"consistency proof from tree size {old['tree_size']} fails ({exc})")]
    notes.append(f"consistency proof from tree size {old['tree_size']} to "
                 f"{new['tree_size']} verified (RFC 9162 §2.1.4.2)")
    return []

