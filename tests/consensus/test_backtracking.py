"""Fast backtracking (Raft §5.3, last paragraphs; etcd's findConflictByTerm) and flow control."""

from __future__ import annotations

import random

from consensus.core import Config, RaftCore
from consensus.progress import Inflights, Progress
from consensus.storage import MemoryStorage
from consensus.types import Entry, HardState, Message, MsgType


def _node(nid: str, terms: list[int], term: int) -> tuple[RaftCore, MemoryStorage]:
    st = MemoryStorage()
    st.append([Entry(t, i + 1) for i, t in enumerate(terms)])
    st.set_hard_state(HardState(term, "", 0))
    st.sync()
    cfg = Config(nid, ["n1", "n2"], pre_vote=False, check_quorum=False)
    return RaftCore(cfg, st, random.Random(nid)), st


def _exchange(a: RaftCore, b: RaftCore, stores: dict[str, MemoryStorage]) -> list[Message]:
    """Run both nodes until quiet; return every message sent."""
    sent: list[Message] = []
    cores = {"n1": a, "n2": b}
    for _ in range(200):
        moved = False
        for nid, core in cores.items():
            rd = core.ready()
            if rd is None:
                continue
            moved = True
            st = stores[nid]
            if rd.hard_state is not None:
                st.set_hard_state(rd.hard_state)
            st.append(rd.entries)
            st.sync()
            core.advance(rd)
            for m in rd.messages:
                sent.append(m)
                cores[m.to].step(m)
        if not moved:
            return sent
    raise AssertionError("did not settle")


def test_conflicting_follower_is_repaired_a_term_at_a_time() -> None:
    # Raft Figure 7-like logs: the follower holds a long run of terms the leader never had.
    leader, ls = _node("n1", [1, 1, 1, 4, 4, 5, 5, 6, 6, 6], 6)
    follower, fs = _node("n2", [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 3)
    leader.campaign()
    sent = _exchange(leader, follower, {"n1": ls, "n2": fs})
    rejects = [m for m in sent if m.type == MsgType.APP_RESP and m.reject]
    # One refusal, not one per entry (there are 8 to undo): the follower answers "my entry
    # at 10 has term 3", and the leader skips straight past every entry of terms above 3.
    assert [(m.index, m.reject_hint, m.log_term) for m in rejects] == [(10, 10, 3)]
    repair = [m for m in sent if m.type == MsgType.APP and m.entries][1]
    assert (repair.index, repair.log_term, len(repair.entries)) == (3, 1, 8)
    assert [fs.term(i) for i in range(1, 12)] == [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7]
    assert follower.log.committed == leader.log.committed == 11


def test_inflight_window_counts_messages_and_bytes() -> None:
    w = Inflights(max_msgs=3, max_bytes=100)
    w.add(5, 40)
    w.add(6, 40)
    assert not w.full()
    w.add(7, 40)
    assert w.full() and w.bytes == 120
    w.free_le(6)
    assert not w.full() and w.count() == 1
    w.free_first_one()
    assert w.count() == 0 and w.bytes == 0


def test_progress_probe_pauses_until_answered() -> None:
    pr = Progress(next_index=10, max_msgs=2, max_bytes=0, is_learner=False)
    assert not pr.is_paused()
    pr.sent_entries(12, 30)
    assert pr.is_paused()  # probing: one append at a time
    assert pr.maybe_decr_to(9, hint=4)  # refused at 9; follower hints 4
    assert pr.next == 5 and not pr.is_paused()
    assert not pr.maybe_decr_to(9, hint=4)  # a stale refusal changes nothing
    assert pr.maybe_update(7)
    pr.become_replicate()
    pr.sent_entries(9, 10)
    pr.sent_entries(11, 10)
    assert pr.is_paused() and pr.next == 12  # window of two full: pipelining stops
