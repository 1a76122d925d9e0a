"""The storage the core reads, and an in-memory implementation that models fsync.

The core only *reads* storage (etcd raft's ``Storage`` interface); the runtime writes what a
:class:`~consensus.types.Ready` hands it, then calls ``advance``. The protocol is small on
purpose, so the LevelDB log store (``consensus/logstore.py``) implements the same one:

- ``initial_state() -> (HardState, ConfState)``: what was persisted; ``ConfState`` is the
  membership at the last compaction (the core replays ``conf_change`` entries after it).
- ``first_index()``: index of the first entry still stored (= snapshot index + 1).
- ``last_index()``: index of the last stored entry (= snapshot index when the log is empty).
- ``term(i) -> int | None``: term of entry ``i``; the snapshot's term for ``i`` = snapshot
  index; ``None`` when ``i`` is compacted away (below the snapshot) or beyond the last entry.
- ``entries(lo, hi, max_bytes) -> list[Entry]``: entries ``[lo, hi)``, stopping once their
  total :meth:`Entry.size` would pass ``max_bytes`` but always at least one; raises
  :class:`LogCompacted` if ``lo < first_index()`` and :class:`LogUnavailable` if
  ``hi > last_index() + 1``.
- ``snapshot_meta() -> SnapshotMeta``: index, term and membership of the last compaction.

:class:`MemoryStorage` adds the write side the runtime (or the simulator) uses, and keeps
two copies of everything: what was written and what was synced. :meth:`MemoryStorage.crash`
throws away what was not synced, which is how the simulator checks that the core asks for
an fsync wherever Raft needs one.
"""

from __future__ import annotations

from typing import Protocol

from .types import ConfState, Entry, HardState, SnapshotMeta

__all__ = ["LogCompacted", "LogUnavailable", "MemoryStorage", "Storage", "StorageError"]


class StorageError(Exception):
    """Root of the errors storage raises to the core."""


class LogCompacted(StorageError):
    """The requested entries were compacted into the snapshot."""


class LogUnavailable(StorageError):
    """The requested entries are beyond the last stored entry."""


class Storage(Protocol):
    """The read-only view of the persisted log that the core uses (see the module doc)."""

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Persisted hard state and the membership at the last compaction."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_bytes`` (at least one)."""
        ...

    def term(self, i: int) -> int | None:
        """Term of entry ``i``, or ``None`` if compacted or beyond the log."""
        ...

    def first_index(self) -> int:
        """First stored index (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """Last stored index (snapshot index if empty)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta:
        """Index, term and membership of the last compaction."""
        ...


def limit_size(ents: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix of ``ents`` within ``max_bytes`` (but at least one entry)."""
    total = 0
    for i, e in enumerate(ents):
        total += e.size()
        if total > max_bytes and i > 0:
            return ents[:i]
    return ents


class _Image:
    """One copy of the stored state (written, or synced)."""

    __slots__ = ("hs", "snap", "ents")

    def __init__(self, hs: HardState, snap: SnapshotMeta, ents: list[Entry]) -> None:
        self.hs = hs
        self.snap = snap
        self.ents = ents  # ents[k].index == snap.index + 1 + k

    def copy(self) -> _Image:
        return _Image(
            HardState(self.hs.term, self.hs.vote, self.hs.commit),
            SnapshotMeta(self.snap.index, self.snap.term, self.snap.conf.copy()),
            list(self.ents),
        )


class MemoryStorage:
    """In-memory :class:`Storage` with a write side and an fsync model.

    Writes (``set_hard_state``, ``append``, ``apply_snapshot``) change the *written* image at
    once, as a page cache would; ``sync()`` makes them durable; ``crash()`` reverts to the last
    synced image. ``compact()`` drops entries the application already holds, and is durable
    at once (it loses nothing the application needs).
    """

    def __init__(self, conf: ConfState | None = None) -> None:
        snap = SnapshotMeta(0, 0, conf.copy() if conf is not None else ConfState())
        self._w = _Image(HardState(), snap, [])
        self._d = self._w.copy()
        self._dirty_from: int | None = None  # lowest entry index written since the last sync
        self._meta_dirty = False  # hard state or snapshot written since the last sync

    # -- the read side (Storage) ---------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """See :class:`Storage`."""
        hs = self._w.hs
        return HardState(hs.term, hs.vote, hs.commit), self._w.snap.conf.copy()

    def first_index(self) -> int:
        """See :class:`Storage`."""
        return self._w.snap.index + 1

    def last_index(self) -> int:
        """See :class:`Storage`."""
        return self._w.snap.index + len(self._w.ents)

    def term(self, i: int) -> int | None:
        """See :class:`Storage`."""
        snap = self._w.snap
        if i == snap.index:
            return snap.term
        k = i - snap.index - 1
        if k < 0 or k >= len(self._w.ents):
            return None
        return self._w.ents[k].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """See :class:`Storage`."""
        if lo < self.first_index():
            raise LogCompacted(f"entry {lo} is compacted (first index {self.first_index()})")
        if hi > self.last_index() + 1:
            raise LogUnavailable(f"entry {hi - 1} is beyond the last index {self.last_index()}")
        base = self._w.snap.index + 1
        return limit_size(self._w.ents[lo - base : hi - base], max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        """See :class:`Storage`."""
        s = self._w.snap
        return SnapshotMeta(s.index, s.term, s.conf.copy())

    # -- the write side (runtime / simulator) --------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        """Write the hard state (durable after the next ``sync``)."""
        self._w.hs = HardState(hs.term, hs.vote, hs.commit)
        self._meta_dirty = True

    def append(self, ents: list[Entry]) -> None:
        """Write ``ents``, replacing any stored entry at index ≥ ``ents[0].index``."""
        if not ents:
            return
        first = ents[0].index
        base = self._w.snap.index + 1
        if first < base:
            # Entries already covered by the snapshot: skip them.
            ents = ents[base - first :]
            if not ents:
                return
            first = base
        if first > base + len(self._w.ents):
            raise LogUnavailable(f"append at {first} leaves a gap after {self.last_index()}")
        del self._w.ents[first - base :]
        self._w.ents.extend(ents)
        self._dirty_from = first if self._dirty_from is None else min(self._dirty_from, first)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by ``meta`` (the application already caught up to it)."""
        self._w.snap = SnapshotMeta(meta.index, meta.term, meta.conf.copy())
        self._w.ents = []
        self._meta_dirty = True
        self._dirty_from = 0

    def sync(self) -> None:
        """fsync: everything written so far becomes durable."""
        if self._dirty_from == 0 or self._d.snap.index != self._w.snap.index:
            self._d = self._w.copy()
        else:
            if self._meta_dirty:
                self._d.hs = HardState(self._w.hs.term, self._w.hs.vote, self._w.hs.commit)
            if self._dirty_from is not None:
                base = self._w.snap.index + 1
                k = max(0, self._dirty_from - base)
                del self._d.ents[k:]
                self._d.ents.extend(self._w.ents[k:])
        self._dirty_from = None
        self._meta_dirty = False

    def compact(self, index: int, conf: ConfState) -> None:
        """Drop entries up to ``index``, which the application has applied; ``conf`` is the
        membership in force at ``index``. Durable at once (see the class doc)."""
        for img in (self._w, self._d):
            snap = img.snap
            if index <= snap.index:
                continue
            k = index - snap.index  # entries to drop
            if k > len(img.ents):
                continue  # the synced copy does not hold it yet: leave it alone
            term = img.ents[k - 1].term
            img.snap = SnapshotMeta(index, term, conf.copy())
            del img.ents[:k]

    def durable_hard_state(self) -> HardState:
        """The hard state in the synced image."""
        hs = self._d.hs
        return HardState(hs.term, hs.vote, hs.commit)

    def durable_last_index(self) -> int:
        """Last index in the synced image."""
        return self._d.snap.index + len(self._d.ents)

    def durable_term(self, i: int) -> int | None:
        """Term of entry ``i`` in the synced image (what would survive a crash now)."""
        snap = self._d.snap
        if i == snap.index:
            return snap.term
        k = i - snap.index - 1
        if k < 0 or k >= len(self._d.ents):
            return None
        return self._d.ents[k].term

    def has_unsynced(self) -> bool:
        """Whether a crash now would lose something."""
        return self._meta_dirty or self._dirty_from is not None

    def crash(self) -> bool:
        """Simulate a power cut: forget unsynced writes. Returns whether anything was lost."""
        lost = self.has_unsynced()
        self._w = self._d.copy()
        self._dirty_from = None
        self._meta_dirty = False
        return lost
