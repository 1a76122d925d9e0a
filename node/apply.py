"""Verified apply (DESIGN §3): every node checks every committed block before it writes it.

Committed Raft entries arrive in log order. A ``normal`` entry carries one block: it is decoded
and checked with :func:`ledger.blocks.check_block` against the applied state **in a worker
thread**, so signature checks never stall the Raft loop's heartbeats; then it is written to the
store with its Raft index in the same batch. A ``noop`` makes no block. A ``conf_change`` is
not produced by this node yet (membership is issue 7) and, like any committed block that fails
validity, stops applying.

A committed block that fails validity is never skipped: the node stops applying and
cosigning, ``/readyz`` fails, and the alarm names the height, entry and reason. Entries
committed after it wait in order, so an operator who fixes the cause (or an auditor who
inspects the evidence) sees exactly where the chain stopped on this node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ledger.encoding import decode
from ledger.errors import LedgerError
from node.replicator import Committed

log = logging.getLogger("courtledger.apply")


class Applier:
    """Apply committed entries in order; stop at the first invalid block."""

    def __init__(
        self,
        *,
        chain: Any,
        after_apply: Callable[[dict[str, Any], bytes, list[bytes], bool], Awaitable[None]],
        alarm: Callable[[str, str], None],
        caught_up: Callable[[int], bool],
        metrics: Any,
    ) -> None:
        self.chain = chain
        self.after_apply = after_apply
        self.alarm = alarm
        self.caught_up = caught_up
        self.metrics = metrics
        self.lock = asyncio.Lock()

    async def on_commit(self, entry: Committed) -> None:
        """One committed Raft entry, in log order."""
        async with self.lock:
            if not self.chain.healthy():
                return  # stopped: never skip a block, never apply past a bad one
            if entry.index <= self.chain.applied_index:
                return  # already applied (restart replays the log above the snapshot)
            if entry.kind == "noop":
                self.chain.note_index(entry.index)
                return
            if entry.kind not in ("normal", "conf_change"):
                self._fail(None, f"raft entry {entry.index}: unknown entry kind {entry.kind}")
                return
            t0 = time.perf_counter()
            try:
                block = decode(entry.data, max_size=self.chain.params.max_block_bytes + 4096)
                mismatch = conf_change_mismatch(entry, block)
                if mismatch is not None:
                    height = block.get("header", {}).get("height") if isinstance(
                        block, dict) and isinstance(block.get("header"), dict) else None
                    self._fail(height, f"raft entry {entry.index}: {mismatch}")
                    return
                if self.chain.already_holds(block):
                    # Brought here by a verified block transfer before the log re-delivered
                    # it (node/raftlink.py): the same block, already checked and stored.
                    self.chain.note_index(entry.index)
                    return
                # Off the event loop: signature checks and hashing (DESIGN §3).
                checked = await asyncio.to_thread(self.chain.check, block)
            except LedgerError as exc:
                self._fail(getattr(exc, "height", None), exc.diagnostics())
                return
            header = block["header"]
            bhash, ids = checked
            try:
                await asyncio.to_thread(self.chain.append, block, bhash, ids, entry.index)
            except LedgerError as exc:
                self._fail(header["height"], f"store: {exc.diagnostics()}")
                return
            self.metrics.blocks_applied.inc()
            self.metrics.entries_applied.inc(len(ids))
            self.metrics.apply_seconds.observe(time.perf_counter() - t0)
            await self.after_apply(header, bhash, ids, self.caught_up(entry.index))

    def _fail(self, height: int | None, reason: str) -> None:
        self.chain.failure = reason if height is None else f"height {height}: {reason}"
        log.error("committed block failed validity; applying and cosigning stop: %s",
                  self.chain.failure)
        self.alarm("invalid_block", self.chain.failure)


#: Membership ops that Raft must see as a ``conf_change`` (``update_keys`` travels as normal).
CONF_OPS = ("add_learner", "promote", "remove")


def conf_change_mismatch(entry: Committed, block: Any) -> str | None:
    """Why a committed entry's Raft type and its block's membership entry disagree, or None.

    DESIGN §3: ``add_learner``, ``promote`` and ``remove`` travel only as a ``conf_change``
    whose parsed change equals the block's one ``membership`` entry; a parsed change that
    does not match, or such an entry inside a ``normal`` entry, fails validity.
    """
    ops = []
    if isinstance(block, dict) and isinstance(block.get("entries"), list):
        for env in block["entries"]:
            payload = env.get("payload") if isinstance(env, dict) else None
            if isinstance(payload, dict) and payload.get("kind") == "membership":
                body = payload.get("body")
                if isinstance(body, dict):
                    ops.append((body.get("op"), body.get("id")))
    conf = [o for o in ops if o[0] in CONF_OPS]
    if entry.kind == "normal":
        return (f"membership {conf[0][0]} of {conf[0][1]} in a normal entry"
                if conf else None)
    if entry.change is None:
        return "a conf_change entry without its parsed change"
    if len(conf) != 1 or tuple(conf[0]) != tuple(entry.change):
        return (f"conf_change {entry.change[0]} {entry.change[1]} does not match the block's "
                f"membership entries {ops}")
    return None
