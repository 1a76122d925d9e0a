"""The asyncio runtime on virtual time: three runtimes over an in-memory network (budget ~5 s).

The network delivers each message on a later loop iteration, like a socket; the clock is a
:class:`MockClock`, so elections and timeouts take no wall time.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.core import Config, RaftCore
from consensus.framing import FrameError
from consensus.logstore import LogStore
from consensus.runtime import CommitUnknown, MockClock, NotLeader, Runtime
from consensus.types import Entry, HardState, MalformedMessage, Message, Role, SnapshotMeta

IDS = ["a", "b", "c"]

pytestmark = pytest.mark.timeout(60)


class Net:
    """Loopback delivery with partitions (a set of cut node ids)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Runtime] = {}
        self.cut: set[str] = set()
        self.in_flight = 0

    def sender(self, frm: str) -> Callable[[str, dict[str, Any]], None]:
        def send(to: str, m: dict[str, Any]) -> None:
            if frm in self.cut or to in self.cut:
                return
            self.in_flight += 1
            asyncio.get_running_loop().call_soon(self._deliver, frm, to, m)

        return send

    def _deliver(self, frm: str, to: str, m: dict[str, Any]) -> None:
        self.in_flight -= 1
        node = self.nodes.get(to)
        if node is not None and to not in self.cut:
            node.receive(frm, m)


class Recording(LogStore):
    """A log store that records the highest term it has persisted (for persist-before-send)."""

    persisted_term = 0

    def save(
        self, hard_state: HardState | None, entries: list[Entry], *, sync: bool = True
    ) -> None:
        super().save(hard_state, entries, sync=sync)
        if hard_state is not None:
            self.persisted_term = hard_state.term


class Cluster:
    def __init__(self, tmp: Path, **runtime_kw: Any) -> None:
        self.tmp = tmp
        self.clock = MockClock()
        self.net = Net()
        self.applied: dict[str, list[Entry]] = {n: [] for n in IDS}
        self.stores: dict[str, Recording] = {}
        self.violations: list[str] = []
        self.kw = runtime_kw

    def build(self, node: str, apply: Callable[[list[Entry]], None] | None = None) -> Runtime:
        store = Recording(str(self.tmp / node), sync=False)
        store.persisted_term = store.initial_state()[0].term
        self.stores[node] = store
        core = RaftCore(Config(node, IDS, election_tick=10), store, random.Random(IDS.index(node)))
        raw_send = self.net.sender(node)

        def send(to: str, m: dict[str, Any]) -> None:
            # Raft §5.2: nothing of term T leaves before T is on disk.  PreVote messages carry
            # the term the sender *would* campaign in without adopting it (thesis §9.6).
            if m["type"] not in ("pre_vote", "pre_vote_resp") and m["term"] > store.persisted_term:
                self.violations.append(f"{node} sent term {m['term']} before persisting it")
            raw_send(to, m)

        async def install_snapshot(meta: SnapshotMeta) -> None:
            # Stands for the node's verified block transfer: take the leader's applied data.
            source = next(n for n, rt in self.net.nodes.items() if rt.core.role == Role.LEADER)
            self.applied[node][:] = [e for e in self.applied[source] if e.index <= meta.index]

        rt = Runtime(
            core,
            store,
            send,
            apply or (lambda ents: self.applied[node].extend(ents)),
            clock=self.clock,
            install_snapshot=install_snapshot,
            **self.kw,
        )
        self.net.nodes[node] = rt
        return rt

    async def start(self) -> None:
        for node in IDS:
            await self.build(node).start()

    async def stop(self) -> None:
        for node, rt in self.net.nodes.items():
            await rt.stop()
            self.stores[node].close()

    async def advance(self, seconds: float) -> None:
        """Move virtual time in 10 ms steps; before each step wait (in real time) until every
        runtime is idle and no message is in flight, so that fsyncs on the disk thread never
        look slow to the virtual clock."""
        steps = round(seconds / 0.01)
        for _ in range(steps):
            for _ in range(2000):
                await asyncio.sleep(0)
                if self.net.in_flight == 0 and not any(rt.busy for rt in self.net.nodes.values()):
                    break
                await asyncio.sleep(0.0005)
            await self.clock.advance(0.01, 0.01)

    async def leader(self, timeout: float = 10.0) -> Runtime:
        waited = 0.0
        while waited < timeout:
            leaders = [
                rt
                for n, rt in self.net.nodes.items()
                if rt.core.role == Role.LEADER and n not in self.net.cut
            ]
            if leaders:
                return leaders[0]
            await self.advance(0.1)
            waited += 0.1
        raise AssertionError("no leader elected")


def run(tmp: Path, body: Callable[[Cluster], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        cluster = Cluster(tmp, **kw)
        await cluster.start()
        try:
            await asyncio.wait_for(body(cluster), 30)
        finally:
            await cluster.stop()
        assert cluster.violations == []

    asyncio.run(main())


async def _settle(c: Cluster, fut: Awaitable[Any]) -> Any:
    task = asyncio.ensure_future(fut)
    while not task.done():
        await c.advance(0.05)
    return task.result()


def test_elect_replicate_and_apply_everywhere(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        indexes = await _settle(
            c, asyncio.gather(*(leader.propose(f"e{i}".encode()) for i in range(200)))
        )
        assert indexes == sorted(indexes) and len(set(indexes)) == 200
        for node in IDS:
            await _settle(c, c.net.nodes[node].wait_applied(indexes[-1]))
            data = [e.data for e in c.applied[node] if e.type == "normal"]
            assert data == [f"e{i}".encode() for i in range(200)]
        assert leader.counters["saves"] < 200  # proposals share fsyncs (batching)

    run(tmp_path, body)


def test_follower_fails_fast_naming_the_leader(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        await _settle(c, leader.propose(b"x"))  # followers learn who leads
        follower = next(rt for rt in c.net.nodes.values() if rt is not leader)
        with pytest.raises(NotLeader) as info:
            await follower.propose(b"y")
        assert info.value.leader == leader.core.id

    run(tmp_path, body)


def test_isolated_leader_fails_pending_with_commit_unknown(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        await _settle(c, leader.propose(b"x"))
        c.net.cut.add(leader.core.id)
        pending = asyncio.ensure_future(leader.propose(b"lost?"))
        # CheckQuorum: the isolated leader steps down within an election timeout.
        with pytest.raises(CommitUnknown):
            await _settle(c, pending)
        assert leader.core.role != Role.LEADER
        c.net.cut.clear()
        new = await c.leader()
        assert await _settle(c, new.propose(b"after")) > 0

    run(tmp_path, body)


def test_slow_apply_holds_back_proposers_not_heartbeats(tmp_path: Path) -> None:
    gate = threading.Event()

    async def body(c: Cluster) -> None:
        leader = await c.leader()
        node = leader.core.id
        term = leader.core.term

        # Replace the leader's apply with one that blocks until the gate opens.
        def slow(entries: list[Entry]) -> None:
            gate.wait(10)
            c.applied[node].extend(entries)

        leader._apply = slow
        # Proposals resolve at commit, so these finish while their apply is stuck...
        await _settle(c, asyncio.gather(*(leader.propose(b"p%d" % i) for i in range(10))))
        # ...and the backlog now holds the next proposer back.
        blocked = asyncio.ensure_future(leader.propose(b"more"))
        await c.advance(3.0)  # 30 ticks: three election timeouts
        assert not blocked.done()
        assert leader.core.role == Role.LEADER and leader.core.term == term  # heartbeats ran
        gate.set()
        await _settle(c, blocked)

    try:
        run(tmp_path, body, max_apply_backlog=8)
    finally:
        gate.set()


def test_spoofed_or_misaddressed_messages_are_refused(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        a = c.net.nodes["a"]
        m = Message("heartbeat", "b", "a", term=1).to_dict()
        with pytest.raises(FrameError, match="claims"):
            a.receive("c", m)
        with pytest.raises(FrameError, match="arrived at"):
            a.receive("b", Message("heartbeat", "b", "c", term=1).to_dict())
        with pytest.raises(FrameError, match="bad raft message"):
            a.receive("b", {"type": "nonsense"})

    run(tmp_path, body)


def test_restart_resumes_from_the_log(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        last = 0
        for i in range(20):
            last = await _settle(c, leader.propose(b"r%d" % i))
        victim = next(n for n in IDS if n != leader.core.id)
        await _settle(c, c.net.nodes[victim].wait_applied(last))
        await c.net.nodes[victim].stop()
        c.stores[victim].close()
        term_before = c.stores[victim].initial_state()[0].term
        c.applied[victim].clear()
        rt = c.build(victim)
        assert rt.core.term == term_before and rt.core.log.last_index() >= last
        await rt.start()
        last = await _settle(c, leader.propose(b"after-restart"))
        await _settle(c, rt.wait_applied(last))
        assert c.applied[victim][-1].data == b"after-restart"

    run(tmp_path, body)


def test_coalesce_folds_contiguous_appends_and_superseded_acks() -> None:
    from consensus.runtime import coalesce

    def app(to: str, prev: int, n: int, commit: int, term: int = 2) -> Message:
        ents = [Entry(term, prev + 1 + k, data=b"x") for k in range(n)]
        return Message(
            "app", "a", to, term=term, index=prev, log_term=term, entries=ents, commit=commit
        )

    msgs = [
        app("b", 10, 1, 9),
        app("c", 10, 1, 9),
        app("b", 11, 2, 10),
        Message("heartbeat", "a", "c", term=2),
        app("c", 11, 1, 10),  # not merged: a heartbeat to c sits between
        app("b", 13, 1, 11),
        app("b", 20, 1, 11),  # not contiguous: kept apart
        Message("app_resp", "a", "d", term=2, index=5),
        Message("app_resp", "a", "d", term=2, index=7),
        Message("app_resp", "a", "d", term=2, index=8, reject=True),
        Message("app_resp", "a", "d", term=2, index=9),
    ]
    out = coalesce(msgs, 1 << 20)
    b = [m for m in out if m.to == "b"]
    assert [(m.index, [e.index for e in m.entries], m.commit) for m in b] == [
        (10, [11, 12, 13, 14], 11),
        (20, [21], 11),
    ]
    assert [m.type for m in out if m.to == "c"] == ["app", "heartbeat", "app"]
    assert [(m.index, m.reject) for m in out if m.to == "d"] == [(7, False), (8, True), (9, False)]
    # A size limit stops the folding.
    assert len(coalesce([app("b", 10, 1, 9), app("b", 11, 1, 9)], 20)) == 2


_values = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.booleans(),
    st.sampled_from(["app", "vote", "normal", "noop", "a", ""]),
    st.binary(max_size=3),
    st.none(),
)


@st.composite
def _entry_dicts(draw: st.DrawFn) -> object:
    e = Entry(draw(st.integers(0, 3)), draw(st.integers(0, 3)), data=draw(st.binary(max_size=2)))
    d: dict[str, object] = e.to_dict()
    if draw(st.booleans()):
        d[draw(st.sampled_from(["term", "index", "type", "data", "x"]))] = draw(_values)
    if draw(st.booleans()):
        d.pop(draw(st.sampled_from(["term", "index", "type", "data"])), None)
    return d


@st.composite
def _message_dicts(draw: st.DrawFn) -> object:
    m = Message(draw(st.sampled_from(["app", "app_resp", "vote", "snap", "bogus"])), "a", "b")
    d: dict[str, object] = m.to_dict()
    d["entries"] = draw(st.lists(_entry_dicts(), max_size=3))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(d) + ["extra"]))
        if draw(st.booleans()):
            d[key] = draw(_values)
        else:
            d.pop(key, None)
    return d


@settings(max_examples=500, deadline=None)
@given(_message_dicts())
def test_fast_decoder_agrees_with_from_dict(d: object) -> None:
    from consensus.runtime import decode_message

    try:
        expected: object = Message.from_dict(d)
    except MalformedMessage:
        expected = MalformedMessage
    try:
        got: object = decode_message(d)
    except MalformedMessage:
        got = MalformedMessage
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["app", "app_resp", "heartbeat", "snap"]),
    st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=3), st.booleans()), max_size=3),
    st.integers(0, 9),
    st.binary(max_size=2),
)
def test_fast_encoder_agrees_with_to_dict(
    kind: str, ents: list[tuple[int, bytes, bool]], n: int, ctx: bytes
) -> None:
    from consensus.runtime import decode_message, encode_message
    from consensus.types import ConfChange, SnapshotMeta

    entries = [
        Entry(t, i + 1, "conf_change", d, ConfChange("remove", "c"))
        if cc
        else Entry(t, i + 1, data=d)
        for i, (t, d, cc) in enumerate(ents)
    ]
    snap = SnapshotMeta(n, n) if kind == "snap" else None
    m = Message(kind, "a", "b", term=n, index=n, entries=entries, context=ctx, snapshot=snap)
    assert encode_message(m) == m.to_dict()
    assert decode_message(encode_message(m)) == m


def test_read_index_on_the_leader_and_not_on_a_follower(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        written = await _settle(c, leader.propose(b"w"))
        # Raft thesis §6.4: the read point covers every write acknowledged before the read.
        assert await _settle(c, leader.read_index()) >= written
        follower = next(rt for rt in c.net.nodes.values() if rt is not leader)
        with pytest.raises(NotLeader):
            await follower.read_index()

    run(tmp_path, body)


def test_far_behind_follower_catches_up_through_the_snapshot_hook(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        leader = await c.leader()
        lagging = next(n for n in IDS if n != leader.core.id)
        c.net.cut.add(lagging)
        last = 0
        for i in range(60):
            last = await _settle(c, leader.propose(b"s%d" % i))
        await _settle(c, leader.wait_applied(last))
        await c.advance(0.2)
        assert leader.counters["compactions"] >= 1
        assert c.stores[leader.core.id].first_index() > 2  # the entries the lagger needs are gone
        c.net.cut.clear()
        last = await _settle(c, leader.propose(b"healed"))
        rt = c.net.nodes[lagging]
        await _settle(c, rt.wait_applied(last))
        assert rt.counters["snapshots"] == 1
        got = [e.data for e in c.applied[lagging] if e.type == "normal"]
        assert got == [b"s%d" % i for i in range(60)] + [b"healed"]

    run(tmp_path, body, compact_threshold=20, compact_retain=0)


def test_apply_failure_stops_applying_and_refuses_proposals(tmp_path: Path) -> None:
    from consensus.runtime import ApplyFailed

    async def body(c: Cluster) -> None:
        leader = await c.leader()
        node = leader.core.id

        def picky(entries: list[Entry]) -> None:
            for e in entries:
                if e.data == b"bad":
                    raise ValueError("block fails validity")
                c.applied[node].append(e)

        leader._apply = picky
        await _settle(c, leader.propose(b"good"))
        bad = await _settle(c, leader.propose(b"bad"))  # committed: Raft does not judge data
        await c.advance(0.5)
        assert isinstance(leader.apply_error, ValueError)
        assert leader.applied_index < bad  # never skipped
        with pytest.raises(ApplyFailed):
            await leader.propose(b"more")
        with pytest.raises(ApplyFailed):
            await leader.wait_applied(bad)

    run(tmp_path, body)
