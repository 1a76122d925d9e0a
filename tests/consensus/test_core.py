"""Unit tests of RaftCore's contract, each citing the rule it checks."""

from __future__ import annotations

import random

import pytest

from consensus.core import Config, NotLeader, ProposalDropped, RaftCore
from consensus.storage import MemoryStorage
from consensus.types import ConfChange, Entry, HardState, Message, MsgType, Ready, Role


def _core(nid: str = "n1", voters: tuple[str, ...] = ("n1",), **kw: object) -> RaftCore:
    return RaftCore(Config(nid, list(voters), **kw), MemoryStorage(), random.Random(1))  # type: ignore[arg-type]


def _persist(core: RaftCore, st: MemoryStorage, rd: Ready) -> None:
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    st.append(rd.entries)
    if rd.must_sync:
        st.sync()


def _drive(core: RaftCore) -> list[Ready]:
    st = core.log.storage
    assert isinstance(st, MemoryStorage)
    out = []
    while (rd := core.ready()) is not None:
        _persist(core, st, rd)
        core.advance(rd)
        out.append(rd)
    return out


def test_single_voter_elects_itself_and_commits_after_persisting() -> None:
    core = _core()
    core.campaign()
    assert core.role == Role.LEADER and core.term == 1
    rd = core.ready()
    assert rd is not None
    # The no-op of the new term (Raft §8) must be persisted before it counts (module doc).
    assert [e.type for e in rd.entries] == ["noop"] and rd.must_sync
    assert not rd.committed_entries
    with pytest.raises(RuntimeError):
        core.ready()  # ready() twice without advance()
    _persist(core, core.log.storage, rd)  # type: ignore[arg-type]
    core.advance(rd)
    rds = _drive(core)
    assert [e.index for r in rds for e in r.committed_entries] == [1]


def test_not_leader_names_the_leader() -> None:
    core = _core("n2", ("n1", "n2", "n3"))
    with pytest.raises(NotLeader) as ei:
        core.propose(b"x")
    assert ei.value.leader == ""
    core.step(Message(MsgType.HEARTBEAT, "n1", "n2", term=1))
    with pytest.raises(NotLeader) as ei:
        core.propose(b"x")
    assert ei.value.leader == "n1" and "n1" in str(ei.value)


def test_conf_changes_one_at_a_time() -> None:
    core = _core()
    core.campaign()
    _drive(core)
    core.propose_conf_change(ConfChange("add_learner", "n2"), b"")
    with pytest.raises(ProposalDropped, match="in flight"):
        core.propose_conf_change(ConfChange("add_learner", "n3"), b"")
    _drive(core)
    assert core.conf_state().learners == ["n2"]
    with pytest.raises(ProposalDropped, match="last voter"):
        core.propose_conf_change(ConfChange("remove", "n1"), b"")


def test_restart_replays_applied_membership_and_keeps_vote() -> None:
    st = MemoryStorage()
    core = RaftCore(Config("n1", ["n1"]), st, random.Random(1))
    core.campaign()
    _drive(core)
    core.propose_conf_change(ConfChange("add_learner", "n2"), b"")
    _drive(core)
    applied = core.log.applied
    st.crash()
    again = RaftCore(Config("n1", ["n1"], applied=applied), st, random.Random(2))
    assert again.conf_state().learners == ["n2"]
    assert (again.term, again.vote) == (1, "n1")
    assert again.ready() is None or not again.has_ready()  # nothing re-applied


def test_read_index_waits_for_a_commit_in_the_term() -> None:
    core = _core()
    core.campaign()
    core.read_index(b"r1")  # thesis §6.4: not before the leader's no-op commits
    rd = core.ready()
    assert rd is not None and not rd.read_states
    _persist(core, core.log.storage, rd)  # type: ignore[arg-type]
    core.advance(rd)
    states = [rs for r in _drive(core) for rs in r.read_states]
    assert [(rs.index, rs.context) for rs in states] == [(1, b"r1")]


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown bug"):
        _core(bugs=frozenset({"nope"}))
    with pytest.raises(ValueError, match="election_tick"):
        _core(election_tick=1, heartbeat_tick=1)


def test_entries_keep_typed_fields() -> None:
    e = Entry(1, 1, "conf_change", b"blk", ConfChange("promote", "n4"))
    assert e.change is not None and e.change.op == "promote"
    assert HardState(1, "a", 0).to_dict() == {"term": 1, "vote": "a", "commit": 0}
