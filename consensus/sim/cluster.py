"""One seeded run of a simulated cluster: virtual time, faults, and invariants after every step.

A :class:`Simulation` drives real :class:`~consensus.core.RaftCore` instances with a model
of the runtime (persist, then send, then apply, then advance) over a model network. All
randomness comes from ``random.Random(seed)``, so a seed replays exactly.

Faults: message drop, delay, duplication and reordering; symmetric and one-way partitions
that heal; a follower that stops reading its socket for a while; crash and restart that
loses unsynced writes, including crashes between the fsync and the sends; adversarial
ones aimed at leaders (cut off or crashed just after winning or just after committing);
per-node clock-rate skew; and, from the application side,
membership changes (add learner, promote, remove, the leader included), leadership
transfers, ReadIndex reads, and log compaction that forces snapshot catch-up.

Invariants (checked after every step; each violation names the rule it breaks):

- ``election-safety``: at most one leader per term (Raft §5.2, Figure 3).
- ``term-without-candidacy``: a node only adopts a term some node campaigned in; PreVote
  must never raise a term by itself (thesis §9.6).
- ``double-vote``: a node grants at most one vote per term, across crashes (§5.2).
- ``persist-before-send``: no message leaves before the term, vote and entries it depends
  on are on disk (Figure 2, "respond to RPCs only after updating stable storage").
- ``leader-append-only``: a leader never overwrites or deletes its own entries (Figure 3).
- ``log-matching``: two logs holding an entry with the same index and term hold the same
  entries up to it (§5.3); checked with a running hash of each log.
- ``commit-not-durable``: a leader commits an index only when a quorum of the voters in its
  configuration hold that entry *on disk*; a removed node never counts.
- ``commit-conflict`` / ``leader-completeness``: an index is committed with one term only;
  every leader holds every entry committed before its term (§5.4); and at the moment of a
  commit no voter lacking the entry could collect a quorum of votes (§5.4.3, checked on
  the logs as they are, so a Figure 8 commit is caught before the election that loses it).
- ``state-machine-safety``: no two nodes apply different entries at one index, and each node
  applies every index once, in order (§5.4.3); ``apply-uncommitted``: only committed entries
  are applied.
- ``membership``: at most one membership change in flight, and none before the leader
  committed an entry of its term (thesis §4.1; Ongaro, raft-dev 2015).
- ``stale-read``: a ReadIndex read never returns state older than a write acknowledged
  before the read began (thesis §6.4).
- ``lost-ack`` / ``no-convergence`` (at the end, after every fault stopped for a while):
  every proposal acknowledged as committed is in the final log of every member, and the
  members converged.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core import Config, NotLeader, ProposalDropped, RaftCore
from ..progress import REPLICATE
from ..storage import MemoryStorage
from ..types import (
    CONF_ADD_LEARNER,
    CONF_PROMOTE,
    CONF_REMOVE,
    ENTRY_CONF_CHANGE,
    ENTRY_NORMAL,
    ConfChange,
    Entry,
    Message,
    MsgType,
    Ready,
    Role,
    SnapshotMeta,
)

__all__ = ["COUNTERS", "NetworkModel", "Simulation", "SeedResult", "Violation"]


class NetworkModel(Protocol):
    """A latency model the simulation may be given instead of its seeded fault model.

    ``delay`` returns the milliseconds after ``now`` at which message ``m`` from ``frm``
    reaches ``to``, or None if the network loses it. It must draw randomness only from
    ``rng`` (the simulation's), so that a seed still replays exactly.
    """

    def delay(
        self, frm: str, to: str, m: Message, now: int, rng: random.Random
    ) -> float | None: ...

#: Coverage counters reported by every run (each must be > 0 over the CI seeds).
COUNTERS = (
    "elections",
    "leader_changes",
    "entries_truncated",
    "restarts_lost_unsynced",
    "membership_changes",
    "learners_promoted",
    "leaders_removed",
    "snapshots",
    "transfers",
    "transfers_refused",
    "reads",
    "flow_control_pauses",
    "prevote_rejections",
    "partitions",
    "leaders_isolated",
    "one_way_partitions",
    "stalled_readers",
    "crashes",
    "drops",
    "duplicates",
)

TICK_MS = 10
ELECTION_TICK = 10
HEARTBEAT_TICK = 3


@dataclass
class Violation:
    """A broken invariant: which, where, and the last events before it."""

    seed: int
    rule: str
    detail: str
    time: int
    trace: list[str]

    def format(self) -> str:
        """The seed, the rule and a short trace, for a person."""
        lines = [f"VIOLATION seed={self.seed} t={self.time}ms {self.rule}: {self.detail}"]
        lines += [f"    {t}" for t in self.trace]
        return "\n".join(lines)


@dataclass
class SeedResult:
    """What one seed did."""

    seed: int
    steps: int = 0
    commits: int = 0
    faults: int = 0
    violations: list[Violation] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))


class _Stop(Exception):
    """Raised to end a seed at its first violation."""


class _Crashed(Exception):
    """The node crashed in the middle of handling a Ready."""


class SimNode:
    """A node: its core, its storage, and the application state (durable by itself)."""

    def __init__(self, nid: str, genesis: list[str], tick_ms: float) -> None:
        self.id = nid
        self.genesis = genesis
        self.storage = MemoryStorage()
        self.core: RaftCore | None = None
        self.tick_ms = tick_ms
        self.app_applied = 0  # last index the application holds (its own durable state)
        self.chain: dict[int, int] = {}  # index -> running hash of this node's written log
        self.pending_sync = False  # the send-before-persist bug defers the fsync
        self.stalled_until = 0  # "stops reading its socket" until then
        self.lead_view: tuple[int, int, int] | None = None  # (term, last index, its term)
        self.removed = False
        self.applied_removals: set[str] = set()  # removals this node's application applied

    @property
    def alive(self) -> bool:
        return self.core is not None


class Simulation:
    """One seed: build a cluster, run a fault schedule, check invariants, report."""

    def __init__(
        self,
        seed: int,
        nodes: int | None = None,
        bugs: frozenset[str] = frozenset(),
        duration_ms: int = 1800,
        heal_ms: int = 1000,
        membership: bool = True,
        network: NetworkModel | None = None,
    ) -> None:
        self.seed = seed
        # An optional latency model (e.g. WAN round trips for bench/wan_sim.py). None keeps
        # the seeded fault model below exactly as it was, random draws included.
        self.network = network
        self.rng = random.Random(seed)
        rng = self.rng
        self.n = nodes if nodes is not None else rng.choice((3, 3, 5))
        self.bugs = bugs
        self.duration = duration_ms
        self.end = duration_ms + heal_ms
        self.membership = membership
        self.res = SeedResult(seed)
        self.c = self.res.counters
        self.now = 0
        self._seq = 0
        self.q: list[tuple[int, int, str, Any]] = []
        self.trace: deque[tuple[int, str, Any]] = deque(maxlen=24)
        genesis = [f"n{i}" for i in range(1, self.n + 1)]
        self.genesis = genesis
        self.next_id = self.n + 1
        self.nodes: dict[str, SimNode] = {}
        # network model, drawn per seed
        self.drop_p = rng.choice((0.0, 0.01, 0.05, 0.1))
        self.dup_p = rng.choice((0.0, 0.01, 0.05))
        self.delay_max = rng.choice((3, 10, 30))
        self.max_msg = rng.choice((20, 20, 60, 200))
        self.crash_point_p = rng.choice((0.0, 0.002, 0.01))
        self.isolate_leader_p = rng.choice((0.0, 0.3, 0.7))
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs that are cut
        # global knowledge for the invariants
        self.leaders: dict[int, str] = {}
        self.candidacies: set[int] = {0}
        self.votes: dict[tuple[str, int], str] = {}
        self.committed: dict[int, int] = {}  # index -> term
        self.chain_at: dict[tuple[int, int], int] = {(0, 0): 0}
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.acked: dict[int, bytes] = {}
        self.max_acked = 0
        self.proposals: dict[bytes, tuple[str, int, int]] = {}  # data -> (node, term, index)
        self.reads: dict[bytes, int] = {}  # ctx -> highest acked index when the read began
        self.removed: set[str] = set()
        self.leader_removals: dict[int, tuple[int, str]] = {}
        self._prev_commit: dict[str, int] = {}
        self.commit_hi = 0
        self.removal_log: list[tuple[int, str]] = []  # (index, node) of applied removals
        self.last_leader = ""
        self.transfer_target: tuple[str, str, int] | None = None
        self._pseq = 0
        for nid in genesis:
            node = SimNode(nid, genesis, TICK_MS * rng.uniform(0.7, 1.4))
            self.nodes[nid] = node
            self._start(node)

    # -- plumbing --------------------------------------------------------------------

    def _at(self, t: float, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.q, (int(t), self._seq, kind, payload))

    def _fail(self, rule: str, detail: str) -> None:
        trace = [f"t={t} {k} {_fmt(p)}" for t, k, p in self.trace]
        self.res.violations.append(Violation(self.seed, rule, detail, self.now, trace))
        raise _Stop

    def _config(self, node: SimNode) -> Config:
        return Config(
            id=node.id,
            voters=list(node.genesis),
            election_tick=ELECTION_TICK,
            heartbeat_tick=HEARTBEAT_TICK,
            max_size_per_msg=self.max_msg,  # few entries per append: pipelining, probing
            max_inflight_msgs=4,
            max_inflight_bytes=2000,
            applied=node.app_applied,
            bugs=self.bugs,
        )

    def _start(self, node: SimNode) -> None:
        core = RaftCore(self._config(node), node.storage, random.Random(self.rng.random()))
        node.core = core
        node.lead_view = None
        self._rebuild_chain(node)
        self._at(self.now + self.rng.uniform(0, node.tick_ms), "tick", node.id)

    def _rebuild_chain(self, node: SimNode) -> None:
        st = node.storage
        snap = st.snapshot_meta()
        node.chain = {snap.index: self.chain_at.get((snap.index, snap.term), 0)}
        if st.last_index() >= st.first_index():
            for e in st.entries(st.first_index(), st.last_index() + 1, 1 << 62):
                node.chain[e.index] = hash((node.chain[e.index - 1], e.term, e.type, e.data))

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SeedResult:
        """Run the schedule to the end (or the first violation)."""
        rng = self.rng
        t = rng.uniform(50, 150)
        while t < self.duration:
            self._at(t, "chaos", None)
            t += rng.uniform(60, 250)
        t = rng.uniform(0, 40)
        while t < self.end - 300:
            self._at(t, "client", None)
            t += rng.uniform(5, 40)
        self._at(self.duration, "heal", None)
        self._at(self.end, "end", None)
        try:
            while self.q:
                when, _, kind, payload = heapq.heappop(self.q)
                self.now = when
                if kind == "end":
                    self._final_checks()
                    break
                self.res.steps += 1
                self._event(kind, payload)
        except _Stop:
            pass
        return self.res

    def _event(self, kind: str, payload: Any) -> None:
        if kind == "tick":
            node = self.nodes[payload]
            if node.core is None:
                return
            self.trace.append((self.now, "tick", node.id))
            node.core.tick()
            self._after_step(node)
            self._at(self.now + node.tick_ms, "tick", node.id)
        elif kind == "msg":
            m: Message = payload
            node = self.nodes[m.to]
            if node.core is None or (m.frm, m.to) in self.blocked:
                return
            if node.stalled_until > self.now:
                self._at(node.stalled_until + self.rng.uniform(0, 5), "msg", m)
                return
            self.trace.append((self.now, "recv", m))
            node.core.step(m)
            self._after_step(node)
        elif kind == "restart":
            node = self.nodes[payload]
            if node.core is None and not node.removed:
                self.trace.append((self.now, "restart", node.id))
                self._guard(node, lambda: self._start(node))
        elif kind == "chaos":
            self._chaos()
        elif kind == "client":
            self._client()
        elif kind == "isolate":
            if self.now < self.duration:
                self._isolate(payload, self.rng.uniform(100, 500))
        elif kind == "unblock":
            self.blocked.discard(payload)
        elif kind == "heal":
            # Every fault stops: the network delivers everything (still reordered).
            self.trace.append((self.now, "heal", ""))
            self.blocked.clear()
            self.drop_p = self.dup_p = 0.0
            for node in self.nodes.values():
                node.stalled_until = 0
                if node.core is None and not node.removed:
                    self._start(node)

    def _guard(self, node: SimNode, fn: Any) -> None:
        try:
            fn()
        except _Stop:
            raise
        except Exception as e:  # the core refusing its own state is a finding too
            self._fail("core-error", f"{node.id}: {type(e).__name__}: {e}")

    # -- after every step: the runtime model and the invariants ---------------------

    def _after_step(self, node: SimNode) -> None:
        try:
            self._drain(node)
        except _Crashed:
            pass
        except _Stop:
            raise
        except Exception as e:
            self._fail("core-error", f"{node.id}: {type(e).__name__}: {e}")

    def _drain(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        self._observe(node)
        while core.has_ready():
            rd = core.ready()
            assert rd is not None
            self._handle_ready(node, rd)
            core.advance(rd)
            self._observe(node)
        # The application compacts the Raft log up to what it applied (DESIGN §3), so a
        # follower that falls behind the short tail must be caught up by the snapshot hook.
        st = node.storage
        if node.app_applied - st.first_index() > 20 and core.log.applied == node.app_applied:
            st.compact(node.app_applied, core.conf_state())

    def _observe(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        if core.term not in self.candidacies:
            if core.role == Role.CANDIDATE:
                self.candidacies.add(core.term)
                self.c["elections"] += 1
            else:
                self._fail("term-without-candidacy", f"{node.id} is at term {core.term}")
        if core.role != Role.LEADER:
            node.lead_view = None
            return
        term = core.term
        who = self.leaders.setdefault(term, node.id)
        if who != node.id:
            self._fail("election-safety", f"two leaders in term {term}: {who} and {node.id}")
        log = core.log
        lv = node.lead_view
        if lv is None or lv[0] != term:
            # A new leader: it must hold every committed entry (leader completeness, §5.4.1).
            first = log.first_index()
            for i, t in self.committed.items():
                if i >= first and log.term(i) != t:
                    self._fail(
                        "leader-completeness",
                        f"{node.id} leads term {term} without committed entry {i} (term {t})",
                    )
            if self.now < self.duration and self.rng.random() < self.isolate_leader_p:
                # Adversarial: cut a new leader off soon after it wins, so that logs diverge
                # while it holds entries nobody else has (the ground Figure 8 grows on).
                self._at(self.now + self.rng.uniform(0, 40), "isolate", node.id)
            if self.last_leader != node.id:
                self.c["leader_changes"] += 1
                if self.transfer_target and self.transfer_target[1] == node.id:
                    self.c["transfers"] += 1
                self.last_leader = node.id
            self.transfer_target = None
        else:
            tt = self.transfer_target
            if tt and tt[0] == node.id and tt[2] == term and not core.lead_transferee:
                self.c["transfers_refused"] += 1  # aborted: the target did not catch up
                self.transfer_target = None
            li = lv[1]
            if log.last_index() < li or log.term(li) != lv[2]:
                self._fail("leader-append-only", f"{node.id} lost its entry {li} in term {term}")
        li = log.last_index()
        node.lead_view = (term, li, log.last_term())

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        st = node.storage
        if node.pending_sync:
            st.sync()
            node.pending_sync = False
        # 1. snapshot: the application catches up to it through a verified transfer.
        if rd.snapshot is not None:
            self._install_snapshot(node, rd.snapshot)
        # 2. persist hard state and entries.
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.entries:
            self._write_entries(node, rd)
        if rd.must_sync:
            if "send-before-persist" in self.bugs:
                node.pending_sync = True
            else:
                st.sync()
        if rd.hard_state is not None and core.role == Role.LEADER:
            self._check_commit(node, rd.hard_state.commit)
            if (
                rd.hard_state.commit > self._prev_commit.get(node.id, 0)
                and self.now < self.duration
                and self.rng.random() < self.isolate_leader_p * 0.3
            ):
                # Adversarial: cut a leader off right as it commits, before the news spreads.
                self._isolate(node.id, self.rng.uniform(100, 500))
            self._prev_commit[node.id] = rd.hard_state.commit
        if rd.hard_state is not None:
            self._record_commit(node, rd.hard_state.commit)
        # A crash can strike between the fsync and the sends (messages lost, state kept);
        # adversarially, most often right when a node has just become leader.
        p = self.crash_point_p
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            p = max(p, self.isolate_leader_p * 0.3)
        if self.now < self.duration and self.rng.random() < p:
            core.advance(rd)
            self._crash(node)
            raise _Crashed
        # 3. send.
        if core.role == Role.LEADER and rd.entries:
            for nid, pr in core.prs.items():
                if nid != node.id and pr.state == REPLICATE and pr.inflights.full():
                    self.c["flow_control_pauses"] += 1
        for m in rd.messages:
            self._send(node, m)
        # 4. apply.
        for e in rd.committed_entries:
            self._apply(node, e)
        for rs in rd.read_states:
            self._answer_read(node, rs.index, rs.context)

    def _write_entries(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        st = node.storage
        first = rd.entries[0].index
        if first <= st.last_index():
            self.c["entries_truncated"] += 1
        st.append(rd.entries)
        chain = node.chain
        for e in rd.entries:
            if e.index <= st.snapshot_meta().index:
                continue
            h = hash((chain.get(e.index - 1, 0), e.term, e.type, e.data))
            chain[e.index] = h
            prev = self.chain_at.setdefault((e.index, e.term), h)
            if prev != h:
                self._fail(
                    "log-matching",
                    f"{node.id} holds entry {e.index} of term {e.term} after a different log",
                )
            if e.type == ENTRY_CONF_CHANGE and core.role == Role.LEADER and e.term == core.term:
                self._check_conf_append(node, e)

    def _check_conf_append(self, node: SimNode, e: Entry) -> None:
        core = node.core
        assert core is not None
        log = core.log
        lo = max(log.applied + 1, log.first_index())
        for other in log.slice(lo, e.index, 1 << 62):
            if other.type == ENTRY_CONF_CHANGE:
                self._fail(
                    "membership",
                    f"{node.id} appended change {e.index} with change {other.index} in flight",
                )
        if log.term(log.committed) != core.term:
            self._fail(
                "membership",
                f"{node.id} appended change {e.index} before committing an entry of term "
                f"{core.term}",
            )

    def _check_commit(self, node: SimNode, commit: int) -> None:
        """The leader's commit index must be on the disks of a quorum of current voters."""
        core = node.core
        assert core is not None
        if commit <= self.commit_hi:
            return
        term = core.log.term(commit)
        voters = core.voters()
        holders = 0
        for v in voters:
            if v in node.applied_removals:
                # It applied that removal itself: counting the node now would let a quorum
                # of a configuration that no longer exists decide.
                self._fail("membership", f"{node.id} counts removed node {v} as a voter")
            if self.nodes[v].storage.durable_term(commit) == term:
                holders += 1
        if holders < len(voters) // 2 + 1:
            self._fail(
                "commit-not-durable",
                f"{node.id} committed {commit} (term {term}) held on disk by {holders} of "
                f"{len(voters)} voters",
            )
        self._check_electable(node, voters, commit, term)

    def _log_view(self, nid: str) -> tuple[int, int, Any]:
        """(last index, last term, term-of function) of a node's log as it would campaign."""
        n = self.nodes[nid]
        if n.core is not None:
            log = n.core.log
            return log.last_index(), log.last_term(), log.term
        st = n.storage
        li = st.durable_last_index()
        return li, st.durable_term(li) or 0, st.durable_term

    def _check_electable(self, node: SimNode, voters: list[str], commit: int, term: Any) -> None:
        """Raft §5.4.3 in the present tense: once an entry is committed, no voter that lacks
        it can be elected, because a quorum holds it and votes only for logs at least as
        up-to-date (§5.4.1). Checked over every voter against the logs as they are now."""
        views = {v: self._log_view(v) for v in voters}
        q = len(voters) // 2 + 1
        for x, (xi, xt, xterm) in views.items():
            if xterm(commit) == term:
                continue
            votes = [v for v, (vi, vt, _) in views.items() if xt > vt or (xt == vt and xi >= vi)]
            if len(votes) >= q:
                self._fail(
                    "leader-completeness",
                    f"{node.id} committed {commit} (term {term}), yet {x}, which lacks it, "
                    f"could be elected by {votes}",
                )

    def _record_commit(self, node: SimNode, commit: int) -> None:
        core = node.core
        assert core is not None
        log = core.log
        lo = max(log.first_index(), 1)
        i = commit
        while i >= lo and i not in self.committed:
            t = log.term(i)
            if t is None:
                break
            self.committed[i] = t
            i -= 1
        self.commit_hi = max(self.commit_hi, commit)
        t = log.term(commit)
        if t is not None and self.committed.get(commit, t) != t:
            self._fail("commit-conflict", f"index {commit} committed with two terms")

    def _install_snapshot(self, node: SimNode, snap: SnapshotMeta) -> None:
        # The transfer is verified: every index up to the snapshot must be known applied
        # somewhere (the node fetches blocks a peer applied, and checks them).
        for i in range(node.app_applied + 1, snap.index + 1):
            if i not in self.applied:
                self._fail("snapshot", f"{node.id} asked to catch up to {i}, applied nowhere")
        node.app_applied = max(node.app_applied, snap.index)
        node.applied_removals.update(n for i, n in self.removal_log if i <= snap.index)
        node.storage.apply_snapshot(snap)
        node.chain = {snap.index: self.chain_at.get((snap.index, snap.term), 0)}
        self.c["snapshots"] += 1

    def _apply(self, node: SimNode, e: Entry) -> None:
        if e.index != node.app_applied + 1:
            self._fail(
                "state-machine-safety",
                f"{node.id} applies {e.index} after {node.app_applied}: entries skipped",
            )
        t = self.committed.get(e.index)
        if t is None or t != e.term:
            self._fail("apply-uncommitted", f"{node.id} applies uncommitted entry {e.index}")
        prev_first = e.index not in self.applied
        prev = self.applied.setdefault(e.index, (e.term, e.data))
        if prev != (e.term, e.data):
            self._fail("state-machine-safety", f"two different entries applied at {e.index}")
        node.app_applied = e.index
        if e.type == ENTRY_NORMAL:
            p = self.proposals.get(e.data)
            if p is not None and p[0] == node.id:
                # The proposing node applied its own proposal: the client is told "committed".
                self.acked[e.index] = e.data
                self.max_acked = max(self.max_acked, e.index)
                self.res.commits += 1
        if e.type == ENTRY_CONF_CHANGE and e.change is not None and e.change.op == CONF_REMOVE:
            node.applied_removals.add(e.change.node)
        if e.type == ENTRY_CONF_CHANGE and e.change is not None and prev_first:
            self.c["membership_changes"] += 1
            if e.change.op == CONF_REMOVE:
                self.removed.add(e.change.node)
                self.removal_log.append((e.index, e.change.node))
                gone = self.nodes.get(e.change.node)
                if gone is not None:
                    gone.removed = True
                if self.leader_removals.get(e.index) == (e.term, e.change.node):
                    self.c["leaders_removed"] += 1
            elif e.change.op == CONF_PROMOTE:
                self.c["learners_promoted"] += 1

    def _answer_read(self, node: SimNode, index: int, ctx: bytes) -> None:
        need = self.reads.pop(ctx, None)
        if need is None:
            return
        # The read runs once the node has applied ``index``; the sim applies synchronously,
        # so it sees app_applied >= index now.
        value = max(node.app_applied, index)
        self.c["reads"] += 1
        if value < need:
            self._fail(
                "stale-read",
                f"{node.id} answered a read at {value}, but {need} was acknowledged before it",
            )

    def _check_persisted(self, node: SimNode, m: Message) -> None:
        """Raft Figure 2: respond to RPCs only after updating stable storage."""
        st = node.storage
        hs = st.durable_hard_state()
        future = m.type in (MsgType.PRE_VOTE, MsgType.PRE_VOTE_RESP)
        if not future and m.term > hs.term:
            self._fail("persist-before-send", f"{node.id} sent {m.type} of term {m.term} "
                       f"with term {hs.term} on disk")
        if m.type == MsgType.VOTE_RESP and not m.reject and hs.vote != m.to:
            self._fail("persist-before-send", f"{node.id} granted its vote to {m.to} in term "
                       f"{m.term} with vote {hs.vote!r} on disk")
        if m.type == MsgType.APP_RESP and not m.reject and m.index > 0:
            core = node.core
            assert core is not None
            if st.durable_term(m.index) != core.log.term(m.index):
                self._fail("persist-before-send", f"{node.id} acknowledged entry {m.index} "
                           "before it was on disk")

    def _send(self, node: SimNode, m: Message) -> None:
        rng = self.rng
        self._check_persisted(node, m)
        if m.type == MsgType.VOTE_RESP and not m.reject:
            key = (node.id, m.term)
            prev = self.votes.setdefault(key, m.to)
            if prev != m.to:
                self._fail("double-vote", f"{node.id} voted for {prev} and {m.to} in term {m.term}")
        if m.type == MsgType.PRE_VOTE_RESP and m.reject:
            self.c["prevote_rejections"] += 1
        if m.to not in self.nodes:
            return
        if self.network is not None:
            # The model decides: one delivery after its delay, or none (lost).
            d = self.network.delay(node.id, m.to, m, self.now, rng)
            if d is not None:
                self._at(self.now + d, "msg", m)
            return
        if rng.random() < self.drop_p:
            self.c["drops"] += 1
            return
        if rng.random() < 0.02:
            # Exercise the wire form now and then: what the transport frames must round-trip.
            m = Message.from_dict(m.to_dict())
        delay = 1 + rng.random() * self.delay_max
        self._at(self.now + delay, "msg", m)
        if rng.random() < self.dup_p:
            self.c["duplicates"] += 1
            self._at(self.now + delay + rng.random() * 20, "msg", m)

    # -- faults and clients ------------------------------------------------------------

    def _live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None and not n.removed]

    def _leader(self) -> SimNode | None:
        best: SimNode | None = None
        best_term = -1
        for n in self._live():
            assert n.core is not None
            if n.core.role == Role.LEADER and (best is None or n.core.term > best_term):
                best, best_term = n, n.core.term
        return best

    def _chaos(self) -> None:
        rng = self.rng
        self.res.faults += 1
        members = [n for n in self.nodes.values() if not n.removed]
        ids = [n.id for n in members]
        r = rng.random()
        if r < 0.2:
            # symmetric partition into two sides, healing later
            rng.shuffle(ids)
            k = rng.randrange(1, len(ids))
            a, b = ids[:k], ids[k:]
            dur = rng.uniform(100, 600)
            for x in a:
                for y in b:
                    for pair in ((x, y), (y, x)):
                        self.blocked.add(pair)
                        self._at(self.now + dur, "unblock", pair)
            self.c["partitions"] += 1
            self.trace.append((self.now, "partition", f"{a}|{b}"))
        elif r < 0.3:
            # one-way: a node's messages out (or in) are lost
            x = rng.choice(ids)
            dur = rng.uniform(100, 600)
            out = rng.random() < 0.5
            for y in ids:
                if y != x:
                    pair = (x, y) if out else (y, x)
                    self.blocked.add(pair)
                    self._at(self.now + dur, "unblock", pair)
            self.c["one_way_partitions"] += 1
            self.trace.append((self.now, "one-way", f"{x} {'out' if out else 'in'}"))
        elif r < 0.5:
            live = [n for n in members if n.core is not None]
            if live:
                node = rng.choice(live)
                if self.nodes[node.id].core is not None:
                    self._crash(node)
        elif r < 0.57:
            node = rng.choice(members)
            node.stalled_until = int(self.now + rng.uniform(100, 400))
            self.c["stalled_readers"] += 1
            self.trace.append((self.now, "stall", node.id))
        elif r < 0.75 and self.membership:
            self._membership()
        elif r < 0.87:
            self._transfer()
        else:
            node = rng.choice(members)
            node.tick_ms = TICK_MS * rng.uniform(0.7, 1.4)
            self.trace.append((self.now, "skew", f"{node.id} {node.tick_ms:.1f}ms"))

    def _isolate(self, nid: str, dur: float) -> None:
        for other in self.nodes:
            if other != nid:
                for pair in ((nid, other), (other, nid)):
                    self.blocked.add(pair)
                    self._at(self.now + dur, "unblock", pair)
        self.c["leaders_isolated"] += 1
        self.trace.append((self.now, "isolate", nid))

    def _crash(self, node: SimNode) -> None:
        self.c["crashes"] += 1
        lost = node.storage.crash()
        node.pending_sync = False
        if lost:
            self.c["restarts_lost_unsynced"] += 1
        node.core = None
        self.trace.append((self.now, "crash", f"{node.id} lost={lost}"))
        self._at(self.now + self.rng.uniform(20, 400), "restart", node.id)

    def _membership(self) -> None:
        self._one_membership_change()
        if self.rng.random() < 0.3:
            self._one_membership_change()  # an impatient administrator: must be refused

    def _one_membership_change(self) -> None:
        rng = self.rng
        lead = self._leader()
        if lead is None or lead.core is None:
            return
        core = lead.core
        conf = core.conf_state()
        ops: list[ConfChange] = []
        if len(conf.voters) + len(conf.learners) < 6:
            ops.append(ConfChange(CONF_ADD_LEARNER, f"n{self.next_id}"))
        for lr in conf.learners:
            pr = core.prs[lr]
            if pr.match >= core.log.committed:
                ops.append(ConfChange(CONF_PROMOTE, lr))
        if len(conf.voters) > 3:
            ops.append(ConfChange(CONF_REMOVE, rng.choice(conf.voters)))
        if conf.learners:
            ops.append(ConfChange(CONF_REMOVE, rng.choice(conf.learners)))
        if not ops:
            return
        cc = rng.choice(ops)
        try:
            idx = core.propose_conf_change(cc, b"membership:" + cc.node.encode())
        except ProposalDropped:
            return
        if cc.op == CONF_REMOVE and cc.node == lead.id:
            self.leader_removals[idx] = (core.term, cc.node)
        self.trace.append((self.now, "conf", f"{lead.id} {cc.op} {cc.node}"))
        if cc.op == CONF_ADD_LEARNER:
            nid = cc.node
            self.next_id += 1
            node = SimNode(nid, self.genesis, TICK_MS * rng.uniform(0.7, 1.4))
            self.nodes[nid] = node
            self._start(node)
        self._after_step(lead)

    def _transfer(self) -> None:
        lead = self._leader()
        if lead is None or lead.core is None:
            return
        others = [v for v in lead.core.voters() if v != lead.id]
        if not others:
            return
        target = self.rng.choice(others)
        try:
            lead.core.transfer_leadership(target)
        except (NotLeader, ProposalDropped):
            return
        if lead.core.lead_transferee == target:
            self.transfer_target = (lead.id, target, lead.core.term)
        self.trace.append((self.now, "transfer", f"{lead.id}->{target}"))
        self._after_step(lead)

    def _client(self) -> None:
        rng = self.rng
        # Clients talk to whoever believes it leads (a deposed leader may still think so).
        leaders = [
            n for n in self._live() if n.core is not None and n.core.role == Role.LEADER
        ]
        if not leaders:
            return
        node = rng.choice(leaders)
        core = node.core
        assert core is not None
        if rng.random() < 0.3:
            self._pseq += 1
            ctx = b"r%d" % self._pseq
            try:
                core.read_index(ctx)
            except NotLeader:
                return
            self.reads[ctx] = self.max_acked
        else:
            self._pseq += 1
            data = b"p%d" % self._pseq
            try:
                idx = core.propose(data)
            except (NotLeader, ProposalDropped):
                return  # e.g. a transfer in progress: the client retries elsewhere
            self.proposals[data] = (node.id, core.term, idx)
        self._after_step(node)

    # -- the end -----------------------------------------------------------------------

    def _final_checks(self) -> None:
        lead = self._leader()
        if lead is None or lead.core is None:
            self._fail("no-convergence", "no leader after the faults healed")
        assert lead is not None and lead.core is not None
        members = set(lead.core.prs)
        target = lead.core.log.committed
        for nid in sorted(members):
            node = self.nodes.get(nid)
            if node is None or node.core is None:
                self._fail("no-convergence", f"member {nid} is not running")
            assert node is not None
            if node.app_applied < self.max_acked:
                self._fail(
                    "no-convergence",
                    f"{nid} applied {node.app_applied} < acknowledged {self.max_acked} "
                    f"(leader commit {target})",
                )
            for i, data in self.acked.items():
                if self.applied.get(i, (0, b""))[1] != data:
                    self._fail("lost-ack", f"acknowledged entry {i} is not what was applied")
                t = node.storage.term(i)
                if t is not None and t != self.applied[i][0]:
                    self._fail("lost-ack", f"{nid}'s final log differs at acknowledged {i}")


def _fmt(p: Any) -> str:
    if isinstance(p, Message):
        s = f"{p.type} {p.frm}->{p.to} t{p.term} i{p.index} lt{p.log_term} c{p.commit}"
        if p.entries:
            s += f" ents={p.entries[0].index}..{p.entries[-1].index}"
        if p.reject:
            s += f" reject hint={p.reject_hint}"
        return s
    return str(p)
