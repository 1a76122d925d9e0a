"""The core's view of the Raft log: stable entries in storage, plus unstable ones in memory.

Like etcd raft's ``raftLog``: entries the core has appended but the runtime has not yet
persisted live in ``unstable`` (starting at index ``offset``); a snapshot received from a
leader but not yet handed to the runtime lives in ``unstable_snap``. ``ready()`` hands both
out; ``advance()`` marks them stable. ``committed`` is the highest index known committed;
``applied`` the highest handed to the application.
"""

from __future__ import annotations

from .storage import LogCompacted, Storage, limit_size
from .types import Entry, SnapshotMeta

__all__ = ["RaftLog"]


class RaftLog:
    """Stable storage plus the unstable tail (see the module doc)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1
        self.unstable_snap: SnapshotMeta | None = None
        self.committed = storage.first_index() - 1
        self.applied = storage.first_index() - 1

    # -- reading -----------------------------------------------------------------------

    def snapshot_meta(self) -> SnapshotMeta:
        """The snapshot the log starts after (pending one first)."""
        if self.unstable_snap is not None:
            return self.unstable_snap
        return self.storage.snapshot_meta()

    def first_index(self) -> int:
        """First index still held (entries before it are in the snapshot)."""
        if self.unstable_snap is not None:
            return self.unstable_snap.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        """Index of the last entry (or of the snapshot when there is none)."""
        if self.unstable:
            return self.offset + len(self.unstable) - 1
        if self.unstable_snap is not None:
            return self.unstable_snap.index
        return self.storage.last_index()

    def term(self, i: int) -> int | None:
        """Term of entry ``i``; ``None`` if compacted or beyond the log."""
        snap = self.unstable_snap
        if snap is not None and i == snap.index:
            return snap.term
        if i >= self.offset:
            k = i - self.offset
            return self.unstable[k].term if k < len(self.unstable) else None
        if snap is not None:
            return None  # a pending snapshot replaces everything stored
        return self.storage.term(i)

    def last_term(self) -> int:
        """Term of the last entry."""
        t = self.term(self.last_index())
        return t if t is not None else 0

    def match_term(self, i: int, term: int) -> bool:
        """Whether entry ``i`` exists with ``term``."""
        return self.term(i) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_bytes`` (at least one); :class:`LogCompacted`
        if ``lo`` is in the snapshot."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise LogCompacted(f"entry {lo} is compacted")
        out: list[Entry] = []
        if lo < self.offset:
            out = self.storage.entries(lo, min(hi, self.offset), max_bytes)
            if len(out) < min(hi, self.offset) - lo:
                return out  # size limit reached inside storage
        if hi > self.offset:
            k0 = max(lo, self.offset) - self.offset
            out = out + self.unstable[k0 : hi - self.offset]
        return limit_size(out, max_bytes)

    def find_conflict(self, ents: list[Entry]) -> int:
        """Index of the first entry of ``ents`` whose term differs from ours (0 if none)."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``(i, term(i))`` with ``i <= index`` and ``term(i) <= term``.

        The follower's half of fast backtracking (Raft §5.3, the optimisation at the end of
        the section; etcd's ``findConflictByTerm``): the leader can skip every entry of a
        term the follower holds but the leader does not.
        """
        i = index
        while i > 0:
            t = self.term(i)
            if t is None:
                return i, 0
            if t <= term:
                return i, t
            i -= 1
        return 0, 0

    # -- writing -----------------------------------------------------------------------

    def append(self, ents: list[Entry]) -> int:
        """Append ``ents``, truncating any entry at or after ``ents[0].index``."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"truncating committed entry {after + 1} (< {self.committed})")
        if after + 1 == self.offset + len(self.unstable):
            self.unstable.extend(ents)
        elif after + 1 <= self.offset:
            # Replaces entries that may already be in storage: the runtime's append
            # truncates from ents[0].index.
            self.offset = after + 1
            self.unstable = list(ents)
        else:
            self.unstable = self.unstable[: after + 1 - self.offset] + list(ents)
        return self.last_index()

    def commit_to(self, index: int) -> None:
        """Raise ``committed`` (never lowers it)."""
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def stable_to(self, index: int, term: int) -> None:
        """The runtime persisted entries up to ``index`` (if still of ``term``)."""
        if index < self.offset:
            return
        if self.term(index) != term:
            return  # replaced since it was handed out: keep the newer entries unstable
        k = index + 1 - self.offset
        if k <= len(self.unstable):
            self.unstable = self.unstable[k:]
            self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        """The runtime installed the pending snapshot at ``index``."""
        if self.unstable_snap is not None and self.unstable_snap.index == index:
            self.unstable_snap = None

    def restore(self, snap: SnapshotMeta) -> None:
        """Replace the whole log by ``snap`` (the follower's side of a snapshot install)."""
        self.committed = snap.index
        self.unstable = []
        self.offset = snap.index + 1
        self.unstable_snap = snap
