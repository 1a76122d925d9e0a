"""How the node orders blocks: the :class:`Replicator` seam between the ledger and consensus.

The node proposes one block as one typed Raft entry and applies committed entries in log order
(DESIGN §3). Two implementations share the node's builder, apply and cosign path:

* :class:`SoloReplicator` — a consortium with a single voter: a proposal is committed as soon as
  it is appended (Raft with one voter commits on its own append, Raft §5.3). Nothing else is
  persisted: the ledger store is the durable state, and a block lost in a crash before apply was
  never acknowledged as committed.
* ``node.raftlink.RaftReplicator`` — the consensus runtime over the mTLS transport.

Peers also exchange application frames (cosignatures, forwarded submissions, block transfer) on
the same links; :meth:`Replicator.send_app` and the ``on_app`` callback carry them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Committed:
    """One committed Raft entry handed to apply: ``kind`` is ``normal``, ``noop`` or
    ``conf_change``; ``data`` is the block's canonical bytes (empty for a no-op)."""

    index: int
    term: int
    kind: str
    data: bytes
    #: For a ``conf_change``: the parsed change ``(op, node id)`` the core applies; apply
    #: checks it against the block's one ``membership`` entry (DESIGN §3).
    change: tuple[str, str] | None = None


ApplyFn = Callable[[Committed], Coroutine[Any, Any, None]]
AppFn = Callable[[str, str, bytes], Awaitable[None]]


class Replicator(Protocol):
    """What the node needs from consensus."""

    node_id: str

    def is_leader(self) -> bool:
        """Whether this node leads now."""
        ...

    def leader(self) -> str | None:
        """The leader's id as far as this node knows."""
        ...

    def term(self) -> int:
        """The current term."""
        ...

    def commit_index(self) -> int:
        """The highest committed Raft index known here."""
        ...

    def last_index(self) -> int:
        """The last index in this node's Raft log (committed or not)."""
        ...

    def members(self) -> list[dict[str, object]]:
        """Members with their role and, where known, their progress."""
        ...

    async def propose(self, data: bytes) -> int | None:
        """Append a ``normal`` entry on the leader; its index, or None when not leader."""
        ...

    async def send_app(self, peer: str, channel: str, data: bytes) -> None:
        """Send an application frame to ``peer`` (best effort)."""
        ...

    def peers(self) -> list[str]:
        """The other members' ids."""
        ...

    async def start(self, on_commit: ApplyFn, on_app: AppFn, applied_index: int) -> None:
        """Start; committed entries above ``applied_index`` flow to ``on_commit`` in order."""
        ...

    async def stop(self) -> None:
        """Stop cleanly."""
        ...


class SoloReplicator:
    """A single-voter consortium: every proposal commits on append (single-node mode)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._index = 0
        self._on_commit: ApplyFn | None = None
        self._queue: asyncio.Queue[Committed] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def is_leader(self) -> bool:
        return self._on_commit is not None

    def leader(self) -> str | None:
        return self.node_id if self._on_commit is not None else None

    def term(self) -> int:
        return 1

    def commit_index(self) -> int:
        return self._index

    def last_index(self) -> int:
        return self._index

    def members(self) -> list[dict[str, object]]:
        return [{"id": self.node_id, "role": "voter", "match": self._index}]

    def peers(self) -> list[str]:
        return []

    async def propose(self, data: bytes) -> int | None:
        if self._on_commit is None:
            return None
        self._index += 1
        await self._queue.put(Committed(self._index, 1, "normal", data))
        return self._index

    async def send_app(self, peer: str, channel: str, data: bytes) -> None:
        return None

    async def start(self, on_commit: ApplyFn, on_app: AppFn, applied_index: int) -> None:
        self._index = applied_index
        self._on_commit = on_commit
        self._task = asyncio.create_task(self._pump(), name="solo-commit")

    async def _pump(self) -> None:
        while True:
            entry = await self._queue.get()
            assert self._on_commit is not None
            await self._on_commit(entry)

    async def stop(self) -> None:
        self._on_commit = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
