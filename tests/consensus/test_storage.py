"""MemoryStorage: the read protocol, compaction, and the fsync model."""

from __future__ import annotations

import pytest

from consensus.storage import LogCompacted, LogUnavailable, MemoryStorage
from consensus.types import ConfState, Entry, HardState, SnapshotMeta


def _ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(term, i, "normal", b"x" * 10) for i in range(lo, hi)]


def test_read_protocol() -> None:
    st = MemoryStorage(ConfState(["n1", "n2", "n3"]))
    assert (st.first_index(), st.last_index(), st.term(0)) == (1, 0, 0)
    st.append(_ents(1, 6, 1))
    assert st.last_index() == 5 and st.term(5) == 1 and st.term(6) is None
    assert [e.index for e in st.entries(2, 5, 1 << 20)] == [2, 3, 4]
    # the size limit still returns at least one entry
    assert [e.index for e in st.entries(2, 5, 1)] == [2]
    with pytest.raises(LogUnavailable):
        st.entries(2, 8, 1 << 20)
    hs, cs = st.initial_state()
    assert hs == HardState() and cs.voters == ["n1", "n2", "n3"]


def test_append_truncates_conflicting_suffix() -> None:
    st = MemoryStorage()
    st.append(_ents(1, 6, 1))
    st.append(_ents(3, 4, 2))
    assert st.last_index() == 3 and st.term(3) == 2 and st.term(2) == 1


def test_crash_loses_exactly_what_was_not_synced() -> None:
    st = MemoryStorage()
    st.set_hard_state(HardState(1, "n1", 0))
    st.append(_ents(1, 4, 1))
    st.sync()
    st.set_hard_state(HardState(2, "n2", 3))
    st.append(_ents(3, 6, 2))  # overwrites 3, adds 4 and 5
    assert st.has_unsynced()
    assert st.crash() is True
    assert st.initial_state()[0] == HardState(1, "n1", 0)
    assert st.last_index() == 3 and st.term(3) == 1
    assert st.crash() is False  # nothing left to lose


def test_compaction_and_snapshot() -> None:
    st = MemoryStorage(ConfState(["n1"]))
    st.append(_ents(1, 11, 1))
    st.sync()
    st.compact(6, ConfState(["n1", "n2"]))
    assert st.first_index() == 7 and st.term(6) == 1 and st.term(5) is None
    assert st.snapshot_meta() == SnapshotMeta(6, 1, ConfState(["n1", "n2"]))
    with pytest.raises(LogCompacted):
        st.entries(5, 8, 1 << 20)
    st.apply_snapshot(SnapshotMeta(20, 3, ConfState(["n1"])))
    assert (st.first_index(), st.last_index(), st.term(20)) == (21, 20, 3)
    st.sync()
    st.crash()
    assert st.snapshot_meta().index == 20
