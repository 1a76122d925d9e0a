"""The node's view of its ledger: the store, the consortium state at the head, and the reads the
APIs need, in one place.

* :meth:`Chain.check` is block validity (``ledger.blocks.check_block``) against the applied
  state, the previous header and a shadow of the Merkle log; it touches nothing, so apply runs
  it in a worker thread.
* :meth:`Chain.append` writes the checked block with its Raft index in one synced batch
  (``ledger.store.LedgerStore.append_block``) and moves the state.
* ``failure`` is set by apply when a committed block fails validity; from then on the node
  neither applies nor cosigns (DESIGN §3).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ledger.blocks import block_hash, build_block, check_block
from ledger.checkpoints import to_file
from ledger.consortium import ConsortiumState
from ledger.crypto import Signer
from ledger.encoding import decode
from ledger.entries import VerifiedSignatures
from ledger.errors import LedgerError, ProofError
from ledger.genesis import Genesis
from ledger.store import LedgerStore

log = logging.getLogger("courtledger.chain")

#: Committed entries whose verify-by-hash summary is kept in memory (FIFO beyond this).
MATCH_CACHE = 100_000


class Chain:
    """A node's ledger store plus the consortium state in force after its head."""

    def __init__(self, store: LedgerStore, genesis: Genesis, signer: Signer | None = None,
                 node_id: str = "") -> None:
        self.store = store
        self.genesis = genesis
        self.chain_id: bytes = genesis.chain_id
        self.hash_alg: str = genesis.hash_alg
        self.params = genesis.params
        self.signer = signer
        self.node_id = node_id
        self.failure: str | None = None
        self._lock = threading.Lock()
        # State history: (height after which it is in force, state). Voters of a checkpoint at
        # height h are those of the state that judged block h (in force after h − 1).
        state = ConsortiumState.from_genesis(genesis)
        self._states: list[tuple[int, ConsortiumState]] = [(0, state)]
        height, _, _ = store.head()
        # Rebuild the state at the head from the entries that change it (identity and
        # membership, the store's state-change index): O(changes), not O(blocks).
        by_height: dict[int, list[int]] = {}
        for h, leaf in store.state_change_entries():
            by_height.setdefault(h, []).append(leaf)
        for h in sorted(by_height):
            header = store.header(h)
            assert header is not None
            payloads = [decode(store.entry_bytes(leaf))["payload"] for leaf in by_height[h]]
            state = state.apply_payloads(h, header["time"], payloads)
            self._states.append((h, state))
        self.state: ConsortiumState = state.advance(height)
        self._raft_index = store.applied_raft_index()
        cp = store.latest_checkpoint()
        self.cosigned_height: int = cp[0]["height"] if cp else 0
        self._matches: dict[bytes, dict[str, Any] | None] = {}
        # Signatures checked at admission are not verified a second time on apply (the
        # leader's largest per-entry cost); see ledger.entries.VerifiedSignatures.
        self.verified = VerifiedSignatures()

    @classmethod
    def open(cls, path: Path, genesis: Genesis) -> Chain:
        """Open (creating if needed) the store at ``path`` for ``genesis``."""
        path.mkdir(parents=True, exist_ok=True)
        return cls(LedgerStore.open(path, genesis, create=True), genesis)

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # ------------------------------------------------------------------ head

    @property
    def height(self) -> int:
        """Applied height."""
        return self.store.head()[0]

    @property
    def applied_index(self) -> int:
        """Raft index of the last applied entry (blocks and no-ops)."""
        return self._raft_index

    def note_index(self, index: int) -> None:
        """A no-op Raft entry was applied (it makes no block)."""
        self._raft_index = max(self._raft_index, index)

    def already_holds(self, block: Any) -> bool:
        """Whether ``block`` is exactly one we already applied (same height, same hash)."""
        try:
            height = block["header"]["height"]
            if not isinstance(height, int) or height < 1 or height > self.height:
                return False
            return self.store.block_hash(height) == block_hash(self.hash_alg, block["header"])
        except (KeyError, TypeError, LedgerError):
            return False

    def healthy(self) -> bool:
        """False once a committed block failed validity here."""
        return self.failure is None

    def head_info(self) -> dict[str, Any]:
        """The applied head for ``GET /v1/head``."""
        height, header, bhash = self.store.head()
        return {"height": height, "block": bhash, "tree_size": header["tree_size"],
                "root": header["root"], "time": header["time"],
                "cosigned_tree_size": self._cosigned_tree_size()}

    def _cosigned_tree_size(self) -> int | None:
        if self.cosigned_height == 0:
            return None
        header = self.store.header(self.cosigned_height)
        return header["tree_size"] if header else None

    # ------------------------------------------------------------------ building and applying

    def has_entry(self, eid: bytes) -> bool:
        """Whether the entry id is already in the chain."""
        return self.store.location(eid) is not None

    def build_block(self, envelopes: list[dict[str, Any]], term: int) -> tuple[dict[str, Any],
                                                                           bytes]:
        """Build and sign block h+1 on the applied head (the builder's one block in flight)."""
        assert self.signer is not None
        _, prev, _ = self.store.head()
        # Block time is the leader's clock, never decreasing (DESIGN §2 "Blocks").
        now = max(int(time.time() * 1000), prev["time"])
        block = build_block(self.signer, self.chain_id, prev, envelopes,
                            log=self.store.shadow_log(), time=now, proposer=self.node_id,
                            term=term)
        return block, block_hash(self.hash_alg, block["header"])

    def check(self, block: Any) -> tuple[bytes, list[bytes]]:
        """Validity of a committed block on the head (pure; raises ``ValidityError``)."""
        _, prev, _ = self.store.head()
        ids = check_block(self.state, self.chain_id, prev, block,
                          log=self.store.shadow_log(), is_known=self.has_entry,
                          verified=self.verified)
        return block_hash(self.hash_alg, block["header"]), ids

    def append(self, block: dict[str, Any], bhash: bytes, ids: list[bytes],
               raft_index: int) -> None:
        """Write a checked block with its Raft index; move the state."""
        self.store.append_block(block, raft_index)
        new = self.state.apply_block(block)
        if new is not self.state and any(
            e["payload"]["kind"] in ("identity", "membership") for e in block["entries"]
        ):
            self._states.append((block["header"]["height"], new))
        self.state = new
        self._raft_index = raft_index

    # ------------------------------------------------------------------ voters and checkpoints

    def _state_for(self, height: int) -> ConsortiumState:
        keys = [h for h, _ in self._states]
        i = bisect.bisect_left(keys, height) - 1
        return self._states[max(i, 0)][1]

    def voters_at(self, height: int) -> list[tuple[str, bytes]]:
        """``(node id, node key)`` of the voters in force for block ``height``."""
        return [(n.id, n.public_key) for n in self._state_for(height).voters()]

    def quorum_at(self, height: int) -> int:
        """Signatures a checkpoint at ``height`` needs."""
        return self._state_for(height).quorum_size()

    def is_voter(self, node_id: str) -> bool:
        """Whether ``node_id`` votes now."""
        return any(n.id == node_id for n in self.state.voters())

    def checkpoint_body(self, height: int) -> dict[str, Any] | None:
        """The checkpoint of our own block at ``height``."""
        header = self.store.header(height)
        if header is None or height == 0:
            return None
        return {"v": 1, "chain": self.chain_id, "height": height,
                "block": self.store.block_hash(height), "tree_size": header["tree_size"],
                "root": header["root"], "time": header["time"]}

    def put_checkpoint(self, cp: dict[str, Any], sigs: list[dict[str, Any]]) -> None:
        """Keep a checkpoint that has its quorum."""
        self.store.put_checkpoint(cp, sigs)
        self.cosigned_height = max(self.cosigned_height, cp["height"])

    def cosigned(self, height: int) -> bool:
        """Whether the checkpoint at ``height`` is stored (it is stored once it has a quorum)."""
        return self.store.checkpoint(height) is not None

    def height_of_tree_size(self, tree_size: int) -> int | None:
        """The height whose block ends at ``tree_size`` (binary search over headers)."""
        lo, hi = 0, self.height
        while lo <= hi:
            mid = (lo + hi) // 2
            header = self.store.header(mid)
            assert header is not None
            if header["tree_size"] == tree_size:
                # Several heights never share a tree size after genesis (count ≥ 1).
                return mid
            if header["tree_size"] < tree_size:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    def checkpoint_file(self, tree_size: int | None) -> dict[str, Any] | None:
        """The checkpoint file of the latest cosigned checkpoint, or the one at ``tree_size``."""
        if tree_size is None:
            got = self.store.latest_checkpoint()
        else:
            h = self.height_of_tree_size(tree_size)
            got = self.store.checkpoint(h) if h else None
        if got is None:
            return None
        return to_file(self.hash_alg, got[0], got[1])

    def consistency_file(self, first: int, second: int) -> dict[str, Any]:
        """``courtledger-consistency/1`` between two cosigned tree sizes (RFC 9162 §2.1.4)."""
        from api.service import NotFound

        if first > second:
            raise ProofError(f"first tree size {first} is larger than second {second}")
        a, b = self.checkpoint_file(first), self.checkpoint_file(second)
        if a is None or b is None:
            raise NotFound(f"no cosigned checkpoint at tree size "
                           f"{first if a is None else second}")
        path = self.store.log.consistency_proof(first, second)
        return {"format": "courtledger-consistency/1", "first": a, "second": b,
                "path": [p.hex() for p in path]}

    # ------------------------------------------------------------------ reads

    def entry_location(self, eid: bytes) -> tuple[int, int] | None:
        """``(height, leaf_index)`` of a committed entry."""
        return self.store.location(eid)

    def entry(self, eid: bytes) -> dict[str, Any] | None:
        """``{"envelope", "height", "leaf_index"}`` of a committed entry."""
        got = self.store.entry(eid)
        if got is None:
            return None
        env, height, leaf = got
        return {"envelope": env, "height": height, "leaf_index": leaf}

    def receipt(self, eid: bytes) -> dict[str, Any] | None:
        """The receipt, once the entry's block (or a later one) has a cosigned checkpoint."""
        loc = self.store.location(eid)
        if loc is None or loc[0] > self.cosigned_height:
            return None
        try:
            return self.store.receipt(eid)
        except ImportError:  # ledger/receipts.py not landed yet (issue 4)
            return None
        except LedgerError as exc:
            log.debug("no receipt for %s yet: %s", eid.hex(), exc.detail)
            return None

    def block(self, height: int) -> dict[str, Any] | None:
        """An applied block."""
        return self.store.block(height)

    def verify_document(self, digest: bytes) -> dict[str, Any]:
        """Verify-by-hash over ``document`` entries only (DESIGN §5)."""
        _, header, _ = self.store.head()
        matches = []
        for eid in self.store.entries_by_sha256(digest):
            info = self._match_info(eid)
            if info is None:
                continue  # not a document: a receipt carries the whole payload
            m = dict(info)
            m["receipt_url"] = (f"/v1/verify/receipts/{eid.hex()}"
                                if m["height"] <= self.cosigned_height else None)
            matches.append(m)
        return {"anchored": bool(matches), "sha256": digest.hex(),
                "as_of": {"tree_size": header["tree_size"], "time": header["time"]},
                "matches": matches}

    def _match_info(self, eid: bytes) -> dict[str, Any] | None:
        """What verify-by-hash shows of a committed entry (None if not a document).

        Committed entries never change, so this is kept in a bounded cache; the index is
        still read on every request, so a new anchor is found at once.
        """
        cached = self._matches.get(eid)
        if cached is not None or eid in self._matches:
            return cached
        got = self.store.entry(eid)
        info: dict[str, Any] | None = None
        if got is not None:
            env, height, _ = got
            payload = env["payload"]
            if payload["kind"] == "document":
                bh = self.store.header(height)
                info = {"entry_id": eid.hex(), "kind": "document", "court": payload["court"],
                        "doc_type": payload["body"].get("doc_type"),
                        "anchored_at": bh["time"] if bh else payload["time"],
                        "height": height}
        if got is not None:
            if len(self._matches) >= MATCH_CACHE:
                self._matches.pop(next(iter(self._matches)))
            self._matches[eid] = info
        return info

    def case_entries(self, case_no: str) -> list[dict[str, Any]]:
        """Every committed entry of a 案号, in log order."""
        out = []
        for eid in self.store.entries_by_case(case_no):
            got = self.store.entry(eid)
            if got is not None:
                env, height, leaf = got
                out.append({"entry_id": eid, "envelope": env, "height": height,
                            "leaf_index": leaf})
        return out
