"""The Raft log on disk: a LevelDB (plyvel) implementation of the core's storage protocol.

Layout (one LevelDB directory per node, used for nothing else):

- ``b"h"``                     → msgpack of :class:`HardState` (term, vote, commit)
- ``b"s"``                     → msgpack of :class:`SnapshotMeta` (last compaction)
- ``b"e" + index (8 bytes BE)`` → msgpack of one :class:`Entry`; big-endian so that LevelDB's
  byte order is index order.

The durability rule (Raft §5.2 and Figure 2, "updated on stable storage before responding to
RPCs"; etcd's ``Ready`` contract) is kept by :meth:`LogStore.save`: the hard state, the new
entries and the deletion of any entries they replace go in **one** ``WriteBatch`` written with
``sync=True``, and the runtime sends the messages of that ``Ready`` only after ``save`` returns.
One batch means a crash leaves either all of it or none of it: never a vote without its term,
nor a truncated log without the entries that replaced it.

Reads are served from an in-memory copy of the stored log (bounded by compaction, which the
runtime does up to the applied index), so the core never waits on LevelDB.  plyvel's errors are
mapped to :class:`LogStoreError` here and never escape raw.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack
import plyvel

from .storage import LogCompacted, LogUnavailable, StorageError, limit_size
from .types import ConfState, Entry, HardState, MalformedMessage, SnapshotMeta

__all__ = ["LogStore", "LogStoreError"]

_HARD = b"h"
_SNAP = b"s"
_ENTRY = b"e"
_IDX = struct.Struct(">Q")


class LogStoreError(StorageError):
    """The on-disk log cannot be opened, read or written, or is not what we wrote."""


def _key(index: int) -> bytes:
    return _ENTRY + _IDX.pack(index)


def _pack(obj: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise LogStoreError(f"corrupt {what} in the Raft log: {exc}") from exc


class LogStore:
    """A durable Raft log: the core's read protocol plus the runtime's synced write side."""

    def __init__(self, path: str, conf: ConfState | None = None, *, sync: bool = True) -> None:
        """Open (creating if missing) the log at ``path``.

        ``conf`` is the initial membership, used only when the log is new.  ``sync=False``
        turns fsync off: for tests only, it breaks the durability rule.
        """
        self._sync = sync
        #: Test-only failure injection (issue 11), set by the node from its failpoints: called
        #: with ``"before-save"`` before a save's synced batch, then ``"after-save"`` (or
        #: ``"after-vote"`` when the save recorded a new vote, whose reply leaves only after
        #: it) once it returned. None in production; ``consensus`` imports nothing of ours.
        self.sync_hook: Callable[[str], None] | None = None
        try:
            self._db = plyvel.DB(path, create_if_missing=True)
        except (plyvel.Error, OSError) as exc:
            raise LogStoreError(f"cannot open the Raft log at {path}: {exc}") from exc
        try:
            self._load(conf)
        except Exception:
            self._db.close()
            raise

    def _load(self, conf: ConfState | None) -> None:
        raw_hs = self._db.get(_HARD)
        raw_snap = self._db.get(_SNAP)
        try:
            self._hs = HardState.from_dict(_unpack(raw_hs, "hard state")) if raw_hs else HardState()
            if raw_snap:
                self._snap = SnapshotMeta.from_dict(_unpack(raw_snap, "snapshot meta"))
            else:
                self._snap = SnapshotMeta(0, 0, conf.copy() if conf else ConfState())
                self._db.put(_SNAP, _pack(self._snap.to_dict()), sync=self._sync)
            self._ents: list[Entry] = []
            expected = self._snap.index + 1
            for key, value in self._db.iterator(prefix=_ENTRY):
                (index,) = _IDX.unpack(key[1:])
                entry = Entry.from_dict(_unpack(value, f"entry {index}"))
                if index != expected or entry.index != index:
                    raise LogStoreError(
                        f"Raft log is not contiguous: found entry {index}, expected {expected}"
                    )
                self._ents.append(entry)
                expected += 1
        except (MalformedMessage, struct.error) as exc:
            raise LogStoreError(f"corrupt Raft log: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        if not self._db.closed:
            self._db.close()

    # -- the read side (consensus.storage.Storage) -------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Persisted hard state and the membership at the last compaction."""
        hs = self._hs
        return HardState(hs.term, hs.vote, hs.commit), self._snap.conf.copy()

    def first_index(self) -> int:
        """First stored index (snapshot index + 1)."""
        return self._snap.index + 1

    def last_index(self) -> int:
        """Last stored index (the snapshot index if no entry is stored)."""
        return self._snap.index + len(self._ents)

    def term(self, i: int) -> int | None:
        """Term of entry ``i``; ``None`` if compacted away or beyond the log."""
        if i == self._snap.index:
            return self._snap.term
        k = i - self._snap.index - 1
        if k < 0 or k >= len(self._ents):
            return None
        return self._ents[k].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``[lo, hi)``, within ``max_bytes`` but at least one."""
        if lo < self.first_index():
            raise LogCompacted(f"entry {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise LogUnavailable(f"entry {hi - 1} is beyond the last index {self.last_index()}")
        base = self._snap.index + 1
        return limit_size(self._ents[lo - base : hi - base], max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        """Index, term and membership of the last compaction."""
        s = self._snap
        return SnapshotMeta(s.index, s.term, s.conf.copy())

    # -- the write side ------------------------------------------------------------------------

    def save(
        self, hard_state: HardState | None, entries: list[Entry], *, sync: bool = True
    ) -> None:
        """Write the hard state and new entries (replacing any at index ≥ the first new one)
        in one batch, fsynced when ``sync`` (see the module doc for why one batch)."""
        if hard_state is None and not entries:
            return
        base = self._snap.index + 1
        if entries:
            first = entries[0].index
            if first < base:
                entries = entries[base - first :]
                first = base
            if entries and first > self.last_index() + 1:
                raise LogStoreError(
                    f"append at {first} would leave a gap after {self.last_index()}"
                )
        if self.sync_hook is not None:
            self.sync_hook("before-save")
        try:
            with self._db.write_batch(sync=sync and self._sync) as batch:
                if entries:
                    # Raft §5.3: a conflicting suffix is deleted before the new entries land;
                    # in the same batch, so no crash can leave the log half replaced.
                    for index in range(entries[0].index, self.last_index() + 1):
                        batch.delete(_key(index))
                    for entry in entries:
                        batch.put(_key(entry.index), _pack(entry.to_dict()))
                if hard_state is not None:
                    batch.put(_HARD, _pack(hard_state.to_dict()))
        except plyvel.Error as exc:
            raise LogStoreError(f"cannot write the Raft log: {exc}") from exc
        if entries:
            del self._ents[entries[0].index - base :]
            self._ents.extend(entries)
        new_vote = hard_state is not None and (hard_state.term, hard_state.vote) != (
            self._hs.term, self._hs.vote) and bool(hard_state.vote)
        if hard_state is not None:
            self._hs = HardState(hard_state.term, hard_state.vote, hard_state.commit)
        if self.sync_hook is not None:
            self.sync_hook("after-vote" if new_vote else "after-save")

    def compact(self, index: int, conf: ConfState) -> None:
        """Drop entries up to ``index`` (the application has applied them; DESIGN §3: the
        ledger store is the snapshot).  ``conf`` is the membership in force at ``index``."""
        if index <= self._snap.index:
            return
        if index > self.last_index():
            raise LogStoreError(f"cannot compact to {index}: last index is {self.last_index()}")
        k = index - self._snap.index
        snap = SnapshotMeta(index, self._ents[k - 1].term, conf.copy())
        try:
            with self._db.write_batch(sync=self._sync) as batch:
                for i in range(self._snap.index + 1, index + 1):
                    batch.delete(_key(i))
                batch.put(_SNAP, _pack(snap.to_dict()))
        except plyvel.Error as exc:
            raise LogStoreError(f"cannot compact the Raft log: {exc}") from exc
        self._snap = snap
        del self._ents[:k]

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by ``meta`` (the application has caught up to it)."""
        try:
            with self._db.write_batch(sync=self._sync) as batch:
                for i in range(self._snap.index + 1, self.last_index() + 1):
                    batch.delete(_key(i))
                batch.put(_SNAP, _pack(meta.to_dict()))
                if self._hs.commit < meta.index:
                    hs = HardState(self._hs.term, self._hs.vote, meta.index)
                    batch.put(_HARD, _pack(hs.to_dict()))
                    self._hs = hs
        except plyvel.Error as exc:
            raise LogStoreError(f"cannot install the snapshot: {exc}") from exc
        self._snap = SnapshotMeta(meta.index, meta.term, meta.conf.copy())
        self._ents = []
