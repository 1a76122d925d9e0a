"""The block builder on the leader (DESIGN §3).

* It builds block ``h+1`` on the last block in its Raft log, committed or not, and keeps **one
  block in flight**: ``h+1`` is built only once ``h`` is applied and the log holds no other
  unapplied entry, so identity and membership changes in ``h`` bind from ``h+1`` and the node's
  applied state is exactly the state that judges the new block.
* It batches by count, bytes and a few milliseconds (``[builder]`` config, always within the
  genesis ``params``); it signs the header with the node key and proposes the block as one
  ``normal`` Raft entry.
* **Pending** is the queue plus every entry of the in-flight block. A replay of a pending entry
  answers as the original (the caller checks :meth:`BlockBuilder.is_pending`).
* A block that Raft truncated (another block was applied at its height) has its entries
  re-queued here, on the node that accepted them; entries already in the chain are dropped at
  build time, so a client retry during a leader change never anchors an entry twice (validity
  refuses a known entry id too, DESIGN §2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ledger.encoding import canonical
from ledger.entries import entry_claims
from node.config import BuilderConfig

log = logging.getLogger("courtledger.builder")

#: Room kept in ``max_block_bytes`` for the header, signature and framing of a block.
BLOCK_OVERHEAD = 1024


@dataclass
class InFlight:
    """The block proposed and not yet applied."""

    height: int
    block_hash: bytes
    raft_index: int
    entries: dict[bytes, dict[str, Any]]
    proposed_at: float


class BlockBuilder:
    """Queue, batch, build, sign and propose blocks on the leader."""

    def __init__(
        self,
        *,
        chain: Any,
        replicator: Any,
        config: BuilderConfig,
        forward: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.replicator = replicator
        self.config = config
        self.forward = forward
        self.clock = clock
        self.queue: dict[bytes, tuple[dict[str, Any], int]] = {}
        self.inflight: InFlight | None = None
        self._wake = asyncio.Event()
        self._first_queued: float | None = None
        self.blocks_built = 0

    # ------------------------------------------------------------------ submissions

    def is_pending(self, eid: bytes) -> bool:
        """Whether ``eid`` waits in the queue or in the in-flight block."""
        return eid in self.queue or (self.inflight is not None and eid in self.inflight.entries)

    def add(self, eid: bytes, envelope: dict[str, Any], size: int) -> None:
        """Queue an admitted entry (no-op if already pending)."""
        if self.is_pending(eid):
            return
        if not self.queue:
            self._first_queued = self.clock()
        self.queue[eid] = (envelope, size)
        self._wake.set()

    def pending_count(self) -> int:
        """Entries in the queue and in flight."""
        return len(self.queue) + (len(self.inflight.entries) if self.inflight else 0)

    def wake(self) -> None:
        """Re-check whether a block can be built (leadership or apply progressed)."""
        self._wake.set()

    # ------------------------------------------------------------------ apply feedback

    def on_applied(self, height: int, block_hash: bytes, entry_ids: list[bytes]) -> None:
        """A block was applied: clear what it anchored; re-queue a truncated in-flight block."""
        for eid in entry_ids:
            self.queue.pop(eid, None)
        fl = self.inflight
        if fl is not None and fl.height <= height:
            if fl.height == height and fl.block_hash == block_hash:
                self.inflight = None
            else:
                # Raft truncated our block: another block took its height (DESIGN §3,
                # "re-queued by the node that accepted them"). Entries that made it into the
                # chain by another block are filtered at build time.
                applied = set(entry_ids)
                requeue = {e: v for e, v in fl.entries.items() if e not in applied}
                log.warning("block %d truncated; re-queueing %d entries", fl.height, len(requeue))
                self.inflight = None
                merged = {e: (env, len(canonical(env))) for e, env in requeue.items()}
                merged.update(self.queue)
                self.queue = merged
                if self.queue and self._first_queued is None:
                    self._first_queued = self.clock()
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    def _can_build(self) -> bool:
        r = self.replicator
        return (
            r.is_leader()
            and self.inflight is None
            and bool(self.queue)
            and self.chain.healthy()
            # After an update_keys of this node, its old key may no longer sign blocks (they
            # would fail validity everywhere): build nothing until restarted with the new key.
            and self._key_current()
            # The last block in the Raft log must be applied: then the applied head *is* the
            # last block in the log (Raft §5.4.2: a new leader first commits its no-op).
            and self.chain.applied_index >= r.last_index()
        )

    def _key_current(self) -> bool:
        signer = getattr(self.chain, "signer", None)
        state = getattr(self.chain, "state", None)
        node_id = getattr(self.chain, "node_id", "")
        if signer is None or state is None or not node_id:
            return True
        me = state.node(node_id)
        return me is None or me.public_key == signer.public_key()

    async def run(self) -> None:
        """Build and propose blocks until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.replicator.is_leader() and self.queue and self.forward is not None:
                await self._hand_over()
                continue
            if not self._can_build():
                continue
            # Batch: wait until the block is full or max_delay_ms has passed since the first
            # queued entry, whichever is first.
            if self._first_queued is not None and len(self.queue) < self._max_entries():
                delay = self._first_queued + self.config.max_delay_ms / 1000 - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if not self._can_build():
                        self._wake.set()
                        continue
            try:
                await self._build_one()
            except Exception:  # noqa: BLE001 - one bad build must not stop the builder
                log.exception("building a block failed")
                await asyncio.sleep(0.05)
            if self.queue:
                self._wake.set()

    def _max_entries(self) -> int:
        return min(self.config.max_entries, int(self.chain.params.max_block_entries))

    async def _build_one(self) -> None:
        budget = min(self.config.max_bytes, self.chain.params.max_block_bytes - BLOCK_OVERHEAD)
        limit = self._max_entries()
        taken: dict[bytes, dict[str, Any]] = {}
        claims: set[str] = set()
        size = 0
        dropped: list[bytes] = []
        for eid, (env, esize) in self.queue.items():
            if len(taken) >= limit or size + esize > budget:
                break
            if self.chain.has_entry(eid):
                dropped.append(eid)  # already anchored (a replay across a leader change)
                continue
            # Entries of one block are judged against one state, so two that claim the same
            # new id or key (or change one identity) cannot share a block (ledger.entries).
            mine = set(entry_claims(env["payload"]))
            if env["payload"].get("kind") == "membership":
                mine.add("membership")  # DESIGN §2: at most one membership entry per block
            if mine & claims:
                continue
            claims |= mine
            taken[eid] = env
            size += esize
        for eid in dropped:
            self.queue.pop(eid, None)
        if not taken:
            return
        for eid in taken:
            del self.queue[eid]
        self._first_queued = self.clock() if self.queue else None
        block, block_hash = self.chain.build_block(list(taken.values()), self.replicator.term())
        data = canonical(block)
        height = block["header"]["height"]
        fl = InFlight(height, block_hash, 0, taken, self.clock())
        self.inflight = fl
        self.blocks_built += 1
        # The proposal resolves when committed (or fails); apply clears the in-flight block.
        # A block with an add_learner/promote/remove entry is Raft's membership change and
        # travels as a conf_change entry (DESIGN §3); update_keys travels as a normal one.
        conf = _conf_change_of(taken.values())
        if conf is not None and hasattr(self.replicator, "propose_conf_change"):
            coro = self.replicator.propose_conf_change(conf[0], conf[1], data)
        else:
            coro = self.replicator.propose(data)
        task = asyncio.create_task(coro, name=f"propose-{height}")
        task.add_done_callback(lambda t: self._proposal_done(t, fl))

    def _proposal_done(self, task: asyncio.Task[int | None], fl: InFlight) -> None:
        """A proposal that did not commit here (not leader, leadership lost): its entries go
        back to the queue. If the block commits after all under the next leader, apply removes
        them again, and the build-time filter keeps them from being anchored twice."""
        failed = task.cancelled() or task.exception() is not None or task.result() is None
        if failed and self.inflight is fl:
            self.inflight = None
            merged = {e: (env, len(canonical(env))) for e, env in fl.entries.items()
                      if not self.chain.has_entry(e)}
            merged.update(self.queue)
            self.queue = merged
            if self.queue and self._first_queued is None:
                self._first_queued = self.clock()
            self._wake.set()
        elif not failed and self.inflight is fl:
            fl.raft_index = task.result() or 0

    async def _hand_over(self) -> None:
        """Not leader any more: send what this node accepted to the leader, which dedupes."""
        assert self.forward is not None
        batch = [env for env, _ in list(self.queue.values())[: self._max_entries()]]
        try:
            await self.forward(batch)
        except Exception as exc:  # noqa: BLE001 - retried on the next wake
            log.info("hand-over of %d queued entries failed: %s", len(batch), exc)
            await asyncio.sleep(0.2)
            self._wake.set()
            return
        for env in batch:
            for eid, (e, _) in list(self.queue.items()):
                if e is env:
                    del self.queue[eid]
        if self.queue:
            self._wake.set()


def _conf_change_of(envelopes: Any) -> tuple[str, str] | None:
    """``(op, node id)`` of the block's membership entry when Raft must see it as a
    ``conf_change`` (``add_learner``, ``promote``, ``remove``), else None."""
    for env in envelopes:
        payload = env["payload"]
        if payload.get("kind") == "membership" and payload["body"].get("op") in (
                "add_learner", "promote", "remove"):
            return str(payload["body"]["op"]), str(payload["body"]["id"])
    return None
