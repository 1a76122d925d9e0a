"""Raft for courtledger: a pure, deterministic core, and what drives it.

Layout (DESIGN §1, §3; shaped like etcd raft):

- :mod:`consensus.types`: entries (``normal`` / ``noop`` / ``conf_change``), messages, hard
  state, membership, and the :class:`~consensus.types.Ready` hand-off; strict
  ``to_dict``/``from_dict`` for the wire.
- :mod:`consensus.core`: :class:`~consensus.core.RaftCore`, the protocol. It never awaits,
  reads a clock, touches a socket or a disk, or uses the global ``random``.
- :mod:`consensus.storage`: the read-only storage protocol the core uses, and
  :class:`~consensus.storage.MemoryStorage`, which models fsync.
- :mod:`consensus.sim`: the deterministic simulator (``python -m consensus.sim``).
- The asyncio runtime, the LevelDB log store and the mTLS transport drive the same core.

The one ordering rule every driver must keep (Raft §5, Figure 2: "respond to RPCs only
after updating stable storage"): for each ``Ready``, first make the application catch up to
``ready.snapshot`` if there is one, then write ``ready.hard_state`` and ``ready.entries`` and
fsync them when ``ready.must_sync`` is set, and only **then** send ``ready.messages``, apply
``ready.committed_entries``, and call ``advance(ready)``. A message sent before the term,
vote or entries it depends on are durable can make a node vote twice in a term or
acknowledge an entry it then loses, and a committed entry can vanish.
"""
