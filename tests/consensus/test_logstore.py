"""The LevelDB Raft log: the storage protocol, one synced batch per save, restart, compaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.core import Config, RaftCore
from consensus.logstore import LogStore, LogStoreError
from consensus.storage import LogCompacted, LogUnavailable
from consensus.types import ConfState, Entry, HardState


def _ents(lo: int, hi: int, term: int) -> list[Entry]:
    return [Entry(term, i, data=f"d{i}".encode()) for i in range(lo, hi)]


def test_new_log_is_empty(tmp_path: Path) -> None:
    s = LogStore(str(tmp_path / "raft"), ConfState(["a", "b", "c"]))
    assert s.initial_state() == (HardState(), ConfState(["a", "b", "c"]))
    assert (s.first_index(), s.last_index(), s.term(0), s.term(1)) == (1, 0, 0, None)
    s.close()


def test_save_restart_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "raft")
    s = LogStore(path)
    s.save(HardState(2, "b", 0), _ents(1, 6, 2))
    s.save(HardState(2, "b", 4), [])
    s.close()
    s = LogStore(path)
    assert s.initial_state()[0] == HardState(2, "b", 4)
    assert s.last_index() == 5
    assert [e.data for e in s.entries(2, 5, 1 << 20)] == [b"d2", b"d3", b"d4"]
    assert len(s.entries(1, 6, 1)) == 1  # at least one entry within the size limit
    with pytest.raises(LogUnavailable):
        s.entries(1, 8, 1 << 20)
    s.close()


def test_conflicting_suffix_is_replaced_in_the_same_batch(tmp_path: Path) -> None:
    """Raft §5.3: entries after a conflict are deleted; nothing of the old suffix survives."""
    path = str(tmp_path / "raft")
    s = LogStore(path)
    s.save(HardState(1, "a", 0), _ents(1, 8, 1))
    s.save(HardState(3, "", 0), [Entry(3, 4, data=b"new")])
    s.close()
    s = LogStore(path)
    assert s.last_index() == 4
    assert [(e.term, e.data) for e in s.entries(3, 5, 1 << 20)] == [(1, b"d3"), (3, b"new")]
    with pytest.raises(LogStoreError, match="gap"):
        s.save(None, [Entry(3, 9)])
    s.close()


def test_compaction_is_durable(tmp_path: Path) -> None:
    path = str(tmp_path / "raft")
    s = LogStore(path, ConfState(["a"]))
    s.save(HardState(1, "a", 10), _ents(1, 11, 1))
    s.compact(6, ConfState(["a", "b"]))
    s.close()
    s = LogStore(path)
    assert (s.first_index(), s.last_index(), s.term(6), s.term(5)) == (7, 10, 1, None)
    assert s.initial_state()[1] == ConfState(["a", "b"])
    with pytest.raises(LogCompacted):
        s.entries(5, 8, 1 << 20)
    s.close()


def test_corrupt_log_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import plyvel

    path = str(tmp_path / "raft")
    LogStore(path).close()
    db = plyvel.DB(path)
    db.put(b"h", b"\xc1")
    db.close()
    with pytest.raises(LogStoreError, match="corrupt"):
        LogStore(path)


def test_core_restarts_from_the_store(tmp_path: Path) -> None:
    """A single-voter core writes through the store; a new core over it resumes."""
    import random

    path = str(tmp_path / "raft")
    store = LogStore(path, ConfState(["a"]))
    core = RaftCore(Config("a", ["a"]), store, random.Random(1))
    for _ in range(30):
        core.tick()
        rd = core.ready()
        if rd is not None:
            store.save(rd.hard_state, rd.entries, sync=rd.must_sync)
            core.advance(rd)
    assert core.status()["role"] == "leader"
    core.propose(b"x")
    while (rd := core.ready()) is not None:
        store.save(rd.hard_state, rd.entries, sync=rd.must_sync)
        core.advance(rd)
    term = core.term
    store.close()
    store = LogStore(path)
    again = RaftCore(Config("a", ["a"]), store, random.Random(2))
    assert again.term == term
    assert [e.data for e in store.entries(1, store.last_index() + 1, 1 << 20)][-1] == b"x"
    store.close()
