"""A node that finds its Raft storage empty: a genuine first start, or lost state?

The decision (``node.backup.start_kind``) and what a real node's replicator does with it:
markers, withheld votes, suppressed campaigns, the rejoin request, the catch-up target fixed at
the first leader heard and the guards lifting (Raft §5.2 one vote per term, §5.4 a lost
acknowledgement). The peer link is replaced by recorders; nothing is started. Budget: < 5 s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consensus.types import Entry, HardState, Role
from ledger.encoding import canonical
from node.backup import (
    CATCHUP_MARKER,
    HAS_RUN_MARKER,
    RESTORED_MARKER,
    mark_has_run,
    read_marker,
    start_kind,
    write_marker,
)
from node.config import load_config
from node.init import init_consortium
from node.process import Node


def test_start_kind_tells_a_first_start_from_lost_state(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    # Made by init (or by hand for a new consortium), never run: a genuine first start.
    assert start_kind(d, raft_empty=True, ledger_height=0) == "first"
    assert start_kind(d, raft_empty=False, ledger_height=0) == "resume"
    mark_has_run(d, "ji")
    assert json.loads((d / HAS_RUN_MARKER).read_text())["node"] == "ji"
    # It has spoken Raft before: empty Raft storage now means the storage was lost.
    assert start_kind(d, raft_empty=True, ledger_height=0) == "wiped"
    assert start_kind(d, raft_empty=False, ledger_height=9) == "resume"
    (d / HAS_RUN_MARKER).unlink()
    # A ledger with blocks but no Raft state comes only from a node that ran (or a restore,
    # which leaves its own marker): also lost state, even from a data dir older than the marker.
    assert start_kind(d, raft_empty=True, ledger_height=3) == "wiped"
    # A restore marker wins, and keeps winning after a restart until its guard is lifted.
    write_marker(d / RESTORED_MARKER, {"term_floor": 4, "cause": "restore"})
    assert start_kind(d, raft_empty=True, ledger_height=3) == "restored"
    assert start_kind(d, raft_empty=False, ledger_height=3) == "restored"
    assert read_marker(d) == {"term_floor": 4, "cause": "restore"}
    # An unreadable marker errs on the safe side: votes withheld for every term.
    (d / RESTORED_MARKER).write_text("{torn")
    assert read_marker(d) == {"term_floor": 1 << 62}


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wiped") / "c"
    init_consortium(out, 3, base_port=38400)
    return out


class Wire:
    """Recorders in place of the runtime's inbox and the transport's outbox."""

    def __init__(self, node: Node) -> None:
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.app: list[tuple[str, str]] = []
        rep = node.replicator
        rep.runtime.receive = lambda peer, m: self.received.append(m)  # type: ignore[method-assign]
        rep.transport.send = lambda peer, m: self.sent.append(m)  # type: ignore[method-assign]

        async def send_app(peer: str, channel: str, data: bytes) -> None:
            self.app.append((peer, channel))

        rep.transport.send_app = send_app  # type: ignore[method-assign]


def open_node(folder: Path, data: Path, node_id: str = "ji") -> Node:
    return Node(load_config(folder / f"{node_id}.toml",
                            env={"COURTLEDGER_DATA_DIR": str(data)}))


def close(node: Node) -> None:
    node.replicator.logstore.close()
    node.chain.close()


def vote(kind: str, term: int, frm: str = "ji01") -> dict[str, Any]:
    return {"type": kind, "frm": frm, "to": "ji", "term": term, "index": 5, "log_term": term}


def test_first_start_votes_then_a_wiped_start_withholds_until_caught_up(
        consortium: Path, tmp_path: Path) -> None:
    data = tmp_path / "ji"

    async def first_run() -> None:
        node = open_node(consortium, data)
        try:
            rep, wire = node.replicator, Wire(node)
            assert rep.recovery_state == "first"
            assert not (data / HAS_RUN_MARKER).exists()  # nothing said yet
            # Genesis: a first-start node votes at once (every log is empty, no leader yet).
            rep._on_raft("ji01", {**vote("pre_vote", 1), "index": 0, "log_term": 0})
            assert len(wire.received) == 1 and rep.votes_withheld == 0
            # A candidate with entries means the consortium ran: with no leader heard yet we
            # may be a node whose whole data dir was lost, so no vote.
            rep._on_raft("ji01", vote("vote", 3))
            assert len(wire.received) == 1 and rep.votes_withheld == 1
            # Once a leader was heard, the leader would have told us (rejoin_r): votes as usual.
            rep._on_raft("spc", {"type": "heartbeat", "frm": "spc", "to": "ji", "term": 3})
            rep._on_raft("ji01", vote("vote", 4))
            assert len(wire.received) == 3 and rep.votes_withheld == 1
            # A pre-vote granted at term 0 promises nothing: still a first start after it.
            rep._send("ji01", {"type": "pre_vote_resp", "frm": "ji", "to": "ji01", "term": 1})
            assert wire.sent and not (data / HAS_RUN_MARKER).exists()
            # A vote is made durable before it is sent (Raft §5.2); the marker is written
            # before it leaves.
            rep.logstore.save(HardState(1, "ji01", 0), [])
            rep._send("ji01", {"type": "vote_resp", "frm": "ji", "to": "ji01", "term": 1})
            assert (data / HAS_RUN_MARKER).exists() and len(wire.sent) == 2
            rep.logstore.save(None, [Entry(1, 1, "noop")])
        finally:
            close(node)

    asyncio.run(first_run())
    # The disk fails: both LevelDB folders are gone; keys, certificate, config stay.
    for sub in ("ledger", "raft"):
        shutil.rmtree(data / sub)

    async def wiped_run() -> None:
        node = open_node(consortium, data)
        try:
            rep, wire = node.replicator, Wire(node)
            assert rep.recovery_state == "wiped"
            assert read_marker(data) == {"term_floor": 0, "cause": "wiped"}
            assert (data / CATCHUP_MARKER).exists()
            # No vote before a leader was heard, at any term.
            for kind, term in (("pre_vote", 2), ("vote", 2), ("vote", 7)):
                rep._on_raft("ji01", vote(kind, term))
            assert wire.received == [] and rep.votes_withheld == 3
            # Nor its own campaign: its (pre-)vote requests do not leave.
            rep._send("ji01", vote("pre_vote", 1, frm="ji"))
            assert wire.sent == [] and rep.campaigns_suppressed == 1
            # The first word from a leader (term 7, commit 2): the target and floor are fixed,
            # durably.
            hb = {"type": "heartbeat", "frm": "spc", "to": "ji", "term": 7, "commit": 2}
            rep._on_raft("spc", hb)
            assert wire.received == [hb]
            # Its appends after an index our empty log lacks: tell it where our log ends.
            rep._on_raft("spc", {**hb, "type": "app", "index": 40, "log_term": 7,
                                 "entries": []})
            await asyncio.sleep(0)
            assert wire.app == [("spc", "rejoin")]
            assert json.loads((data / CATCHUP_MARKER).read_text()) == {"term": 7, "index": 2}
            assert read_marker(data) == {"term_floor": 7, "cause": "wiped"}
            # Still short of what that leader held: a vote at a new term is refused too, and
            # that term joins the floor (we may have voted in it before the loss).
            rep._on_raft("ji01", vote("vote", 8))
            assert rep.votes_withheld == 4 and rep._vote_floor == 8
            assert read_marker(data) == {"term_floor": 8, "cause": "wiped"}
            # A later leader (the first may have been deposed without knowing it): the target
            # becomes its term and commit index.
            hb8 = {"type": "heartbeat", "frm": "ji01", "to": "ji", "term": 8, "commit": 3}
            rep._on_raft("ji01", hb8)
            assert json.loads((data / CATCHUP_MARKER).read_text()) == {"term": 8, "index": 3}
            rep.logstore.save(HardState(8, "", 0), [Entry(6, 1, "noop"), Entry(7, 2)])
            rep._on_raft("ji01", {**hb8, "type": "app", "index": 2, "log_term": 7,
                                  "entries": []})
            assert rep._catching_up  # term 7 at index 2 is not yet what leader 8 held
            rep.logstore.save(None, [Entry(8, 3, "noop")])
            # Caught up (durable log ends at term ≥ 8, index ≥ 3): that guard lifts; the vote
            # floor still refuses terms 7 and 8 (we may have voted in them), and allows 9.
            rep._on_raft("ji01", {**hb8, "type": "app", "index": 3, "log_term": 8,
                                  "entries": []})
            assert not rep._catching_up and not (data / CATCHUP_MARKER).exists()
            rep._on_raft("ji01", vote("vote", 8))
            assert rep.votes_withheld == 5
            rep._on_raft("ji01", vote("vote", 9))
            assert wire.received[-1]["term"] == 9 and rep.votes_withheld == 5
            status = rep.recovery_status()
            assert status["state"] == "wiped" and status["heard_leader"]
            assert status["votes_granted_before_leader"] == 0
        finally:
            close(node)

    asyncio.run(wiped_run())

    async def restart_before_lift() -> None:
        # A restart before the floor lifted keeps it (the marker outlives the process).
        node = open_node(consortium, data)
        try:
            rep, wire = node.replicator, Wire(node)
            assert rep.recovery_state == "wiped" and rep._vote_floor == 8
            rep._on_raft("ji01", vote("vote", 10))
            assert wire.received == [] and rep.votes_withheld == 1
        finally:
            close(node)

    asyncio.run(restart_before_lift())


def test_the_leader_resets_a_rejoining_peer_and_counts_stale_refusals(
        consortium: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = open_node(consortium, tmp_path / "ji")
        try:
            rep = node.replicator
            Wire(node)
            core = rep.core
            core._become_candidate()
            core._become_leader()
            rep.runtime.role = Role.LEADER  # what the runtime learns from the next Ready
            pr = core.prs["spc"]
            pr.match = 40
            pr.become_replicate()
            # A refusal at or below the match is stale for Raft (etcd MaybeDecrTo): the leader
            # keeps its match, and counts the refusal for the operator.
            rep._on_raft("spc", {"type": "app_resp", "frm": "spc", "to": "ji",
                                 "term": core.term, "index": 40, "reject": True,
                                 "reject_hint": 0})
            assert rep.stale_refusals == {"spc": 1}
            # A follower that merely lags (its log reaches the match) is left to Raft.
            await rep.on_app("spc", "rejoin", canonical({"state": "resume", "last": 45}))
            assert pr.match == 40
            # One whose log ends below what it acknowledged lost entries: probe from index 1.
            await rep.on_app("spc", "rejoin", canonical({"state": "lost", "last": 0}))
            assert pr.match == 0 and pr.next == 1
            # Malformed requests are dropped.
            pr.match = 40
            await rep.on_app("spc", "rejoin", canonical({"state": 1, "last": 0}))
            await rep.on_app("spc", "rejoin", b"\xc1")
            assert pr.match == 40
        finally:
            close(node)

    asyncio.run(main())


def test_a_ledger_lost_below_the_raft_compaction_point_is_found(
        consortium: Path, tmp_path: Path) -> None:
    """Only the ledger folder lost: the blocks the Raft log compacted away must come back by
    transfer before apply resumes; a gap of mere no-ops (they leave no trace in the ledger) is
    not a loss."""
    data = tmp_path / "ji"
    node = open_node(consortium, data)
    try:
        ls = node.replicator.logstore
        block5 = canonical({"header": {"height": 5}, "entries": []})
        ls.save(HardState(2, "", 0), [Entry(1, i) if i != 7 else Entry(2, 7, data=block5)
                                      for i in range(1, 8)])
        ls.save(None, [])
        ls.compact(4, node.replicator.core.conf_state())
        assert node.chain.height == 0
        # The first block kept in the log is at height 5 but the ledger is empty: a loss.
        gap = node.replicator._find_ledger_gap(node.chain)
        assert gap is not None and gap.index == 4
        # A ledger at height 4 (as the fake chain below says) is followed by block 5: no loss.
        fake = SimpleNamespace(applied_index=2, height=4)
        assert node.replicator._find_ledger_gap(fake) is None
        # No block kept and a ledger with blocks: the gap is no-ops, nothing lost.
        ls.compact(7, node.replicator.core.conf_state())
        assert node.replicator._find_ledger_gap(fake) is None
        assert node.replicator._find_ledger_gap(SimpleNamespace(applied_index=0, height=0))
        # Applied past the compaction point: nothing to look for.
        assert node.replicator._find_ledger_gap(SimpleNamespace(applied_index=7, height=0)) \
            is None
    finally:
        close(node)


def test_a_whole_data_dir_lost_is_recognised_through_the_leader(
        consortium: Path, tmp_path: Path) -> None:
    """No marker survives a data dir lost as a whole, so the node starts as new; the leader,
    which counted its acknowledgements, tells it, and it takes the wiped node's guards."""
    async def main() -> None:
        leader = open_node(consortium, tmp_path / "spc", "spc")
        node = open_node(consortium, tmp_path / "ji")
        try:
            lw, nw = Wire(leader), Wire(node)
            rep = node.replicator
            assert rep.recovery_state == "first"
            # A leader's append after index 12 reaches an empty log: ask.
            rep._on_raft("spc", {"type": "app", "frm": "spc", "to": "ji", "term": 5,
                                 "index": 12, "log_term": 5, "commit": 12, "entries": []})
            await asyncio.sleep(0)
            assert nw.app == [("spc", "rejoin")]
            # The leader had ji at match 12: it resets and answers.
            core = leader.replicator.core
            core._become_candidate()
            core._become_leader()
            leader.replicator.runtime.role = Role.LEADER
            core.prs["ji"].match = 12
            await leader.replicator.on_app("ji", "rejoin",
                                           canonical({"state": "first", "last": 0}))
            await asyncio.sleep(0)
            assert core.prs["ji"].match == 0 and lw.app == [("ji", "rejoin_r")]
            reply = canonical({"acked": 12, "term": core.term})
            await rep.on_app("spc", "rejoin_r", reply)
            assert rep.recovery_state == "wiped" and rep._catching_up
            assert read_marker(tmp_path / "ji") == {"term_floor": core.term, "cause": "wiped"}
            rep._on_raft("ji01", vote("vote", core.term + 1))
            assert rep.votes_withheld == 1 and nw.received[-1]["type"] == "app"
            # A node that knows it lost state gets the probe and no answer to act on.
            core.prs["ji"].match = 12
            await leader.replicator.on_app("ji", "rejoin", canonical({"state": "lost",
                                                                      "last": 0}))
            await asyncio.sleep(0)
            assert core.prs["ji"].match == 0 and lw.app == [("ji", "rejoin_r")]
        finally:
            close(leader)
            close(node)

    asyncio.run(main())
