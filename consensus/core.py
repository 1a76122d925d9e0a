"""The Raft state machine: pure, deterministic, no I/O.

:class:`RaftCore` is shaped like etcd raft's ``RawNode``. The runtime (or the simulator)
drives it with four inputs and one output:

- ``tick()``: one unit of logical time passed (the runtime's clock decides how long);
- ``step(msg)``: a :class:`~consensus.types.Message` arrived from a peer;
- ``propose(data)`` / ``propose_conf_change(change, data)`` / ``read_index(ctx)`` /
  ``transfer_leadership(node)``: requests from the application; on a node that is not the
  leader they raise :class:`NotLeader` naming the leader it knows (or ``""``), and a proposal
  the leader cannot take now raises :class:`ProposalDropped` with the reason;
- ``ready()`` returns a :class:`~consensus.types.Ready` (or ``None``) to act on, in the order
  its docstring gives (persist, then send, then apply), followed by ``advance(ready)``.
  ``ready()`` may not be called again before that ``advance()``; ``tick``/``step``/proposals
  may be, and their output waits for the next ``Ready``.

The core never awaits, reads a clock, touches a socket or a disk, or uses the global
``random``: randomness comes from the seeded ``random.Random`` it is given, so one seed
replays one run exactly.

Rules and where they come from:

- Elections: randomized timeouts in ``[election_tick, 2 * election_tick)`` (Raft §5.2);
  PreVote (Raft thesis §9.6) so a node that was cut off cannot bump the term and depose a
  working leader when it comes back; CheckQuorum (thesis §6.2, etcd ``CheckQuorum``) so a
  leader that cannot reach a quorum for an election timeout steps down, and a node that has
  heard from a leader within that time ignores vote requests (the leader lease).
- A new leader appends a ``noop`` entry at once (thesis §6.4, Raft §8) and commits only by
  counting replicas of an entry of its own term (Raft §5.4.2, Figure 8).
- The leader counts itself towards a quorum only after its own entries are persisted
  (``advance``), so every commit is on the disks of a majority.
- Followers check log matching (Raft §5.3) and answer a mismatch with a conflict hint so
  the leader skips a whole term at a time (fast backtracking, etcd ``findConflictByTerm``).
- Membership: single-server changes (thesis §4.1): one at a time (a change is refused while
  another is not yet applied) and only once the leader has committed an entry of its term
  (Ongaro, raft-dev 2015, "bug in single-server membership changes"). Learners replicate
  but neither vote nor count. A change takes effect when applied (``advance``); a leader
  that applies its own removal steps down.
- Log compaction: the runtime compacts storage up to the applied index (``compact(applied,
  core.conf_state())``); when a follower needs compacted entries the leader sends a
  ``snap`` message with metadata only (the runtime may take it as the hook to start
  offering stored blocks to that peer), and the follower's ``Ready.snapshot`` asks its
  application to catch up to it, pulling blocks from the leader (``core.lead``) and
  verifying them, before anything else in that ``Ready``. If the snapshot or its answer is
  lost, the leader retries after the follower's next heartbeat answer.
- Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target
  up to date, then sends it ``timeout_now``; a target that does not catch up within an
  election timeout is refused (the transfer is aborted).
- ReadIndex (thesis §6.4): a read is released only after a quorum answered a heartbeat sent
  after the read arrived, and only once the leader committed an entry of its term; a deposed
  leader never releases it.
- Flow control: appends of at most ``max_size_per_msg`` bytes; at most ``max_inflight_msgs``
  and ``max_inflight_bytes`` unacknowledged per follower (see :mod:`consensus.progress`).

``Config.bugs`` deliberately breaks named rules. Only the simulator sets it, to prove that its
invariants catch each broken rule (see :mod:`consensus.sim`).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from .log import RaftLog
from .progress import PROBE, REPLICATE, SNAPSHOT, Progress
from .storage import LogCompacted, Storage
from .types import (
    CONF_ADD_LEARNER,
    CONF_PROMOTE,
    CONF_REMOVE,
    ENTRY_CONF_CHANGE,
    ENTRY_NOOP,
    ENTRY_NORMAL,
    ConfChange,
    ConfState,
    Entry,
    HardState,
    Message,
    MsgType,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
)

__all__ = ["BUGS", "Config", "NotLeader", "ProposalDropped", "RaftCore"]

#: Deliberate bugs the simulator can switch on (``send-before-persist`` lives in the runtime
#: model of the simulator, the rest here).
BUGS = frozenset(
    {
        "figure8",
        "no-persist-vote",
        "send-before-persist",
        "prevote-bumps-term",
        "no-log-matching-check",
        "apply-uncommitted",
        "double-membership-change",
        "conf-change-before-term-commit",
        "readindex-without-heartbeat",
        "snapshot-skips-entries",
    }
)

TRANSFER_CONTEXT = b"transfer"


class NotLeader(Exception):
    """This node is not the leader; ``leader`` is the one it knows of (``""`` if none)."""

    def __init__(self, node: str, leader: str) -> None:
        super().__init__(f"node {node} is not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(Exception):
    """The leader cannot take this proposal now; the message says why."""


@dataclass
class Config:
    """How to build a :class:`RaftCore`.

    ``voters`` and ``learners`` are the bootstrap membership (the genesis file's nodes), used
    only while the log has never been compacted: conf changes in the log are replayed on top.
    ``applied`` is the index the application already holds (entries up to it are not handed
    out again after a restart); it may not exceed the stored log's last index. A node whose
    application is ahead of an empty Raft log (restored from a backup, DESIGN §4) passes
    ``min(applied, storage.last_index())`` and skips entries it already holds by their Raft
    index (the store records each block's). Ticks are logical: the runtime picks their
    length. ``max_size_per_msg`` bounds one append; ``max_inflight_msgs`` and
    ``max_inflight_bytes`` (0: no byte limit) bound what one follower may have unacknowledged.
    """

    id: str
    voters: list[str]
    learners: list[str] = field(default_factory=list)
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 64 << 20
    max_committed_size_per_ready: int = 64 << 20
    check_quorum: bool = True
    pre_vote: bool = True
    applied: int = 0
    bugs: frozenset[str] = frozenset()


class RaftCore:
    """One Raft node's protocol state (see the module doc for the contract)."""

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        if config.election_tick <= config.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        unknown = set(config.bugs) - BUGS
        if unknown:
            raise ValueError(f"unknown bug switch(es): {sorted(unknown)}")
        self.id = config.id
        self.cfg = config
        self.rng = rng
        self.bugs = config.bugs
        self.log = RaftLog(storage)
        hs, cs = storage.initial_state()
        snap = storage.snapshot_meta()
        if snap.index == 0 and not cs.voters and not cs.learners:
            cs = ConfState(sorted(config.voters), sorted(config.learners))
        self.prs: dict[str, Progress] = {}
        self._set_conf(cs)
        applied = max(config.applied, snap.index)
        if applied > self.log.last_index():
            raise ValueError(f"applied {applied} is beyond the last log index")
        # Replay membership changes the application already applied (see Config).
        for e in self.log.slice(snap.index + 1, applied + 1, 1 << 62):
            if e.type == ENTRY_CONF_CHANGE and e.change is not None:
                self._apply_change(e.change)
        # The commit index may lag on disk (it is written without fsync), but what the
        # application applied was committed.
        self.log.committed = max(hs.commit, snap.index, applied)
        self.log.applied = applied
        self._applying = applied

        self.term = hs.term
        self.vote = hs.vote
        self.lead = ""
        self.role = Role.FOLLOWER
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.votes: dict[str, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee = ""
        self.pending_conf_index = 0
        self._pending_reads: OrderedDict[bytes, tuple[int, set[str]]] = OrderedDict()
        self._postponed_reads: list[bytes] = []
        self._prev_hs = HardState(hs.term, hs.vote, hs.commit)
        self._prev_ss = SoftState("", Role.FOLLOWER)
        self._ready_out = False
        self._become_follower(self.term, "")

    # -- membership ----------------------------------------------------------------------

    def _set_conf(self, cs: ConfState) -> None:
        last = self.log.last_index()
        old = self.prs
        self.prs = {}
        for nid in cs.voters:
            self.prs[nid] = old.get(nid) or self._new_progress(last, False)
            self.prs[nid].is_learner = False
        for nid in cs.learners:
            self.prs[nid] = old.get(nid) or self._new_progress(last, True)
            self.prs[nid].is_learner = True

    def _new_progress(self, last: int, learner: bool) -> Progress:
        pr = Progress(last + 1, self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes, learner)
        pr.recent_active = True
        return pr

    def conf_state(self) -> ConfState:
        """The membership in force (as applied)."""
        voters = sorted(n for n, p in self.prs.items() if not p.is_learner)
        learners = sorted(n for n, p in self.prs.items() if p.is_learner)
        return ConfState(voters, learners)

    def voters(self) -> list[str]:
        """Voting members, sorted."""
        return sorted(n for n, p in self.prs.items() if not p.is_learner)

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter of the membership in force."""
        pr = self.prs.get(self.id)
        return pr is not None and not pr.is_learner

    def _quorum(self) -> int:
        return len(self.voters()) // 2 + 1

    def _apply_change(self, cc: ConfChange) -> None:
        last = self.log.last_index()
        if cc.op == CONF_ADD_LEARNER:
            if cc.node not in self.prs:
                self.prs[cc.node] = self._new_progress(last, True)
        elif cc.op == CONF_PROMOTE:
            if cc.node in self.prs:
                self.prs[cc.node].is_learner = False
        elif cc.op == CONF_REMOVE:
            self.prs.pop(cc.node, None)

    def _apply_conf_change_entry(self, cc: ConfChange) -> None:
        self._apply_change(cc)
        if self.role != Role.LEADER:
            return
        if cc.op == CONF_REMOVE and cc.node == self.id:
            # A leader that applied its own removal stops leading (thesis §4.2.2): it no
            # longer belongs to the configuration whose quorum it would be counting.
            self._become_follower(self.term, "")
            return
        if self.lead_transferee and self.lead_transferee not in self.prs:
            self.lead_transferee = ""
        if self._maybe_commit():
            self._bcast_append()
        elif cc.op == CONF_ADD_LEARNER and cc.node != self.id:
            self._send_append(cc.node)  # start probing the new member now

    # -- role changes --------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = ""
        self.lead = ""
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        et = self.cfg.election_tick
        self.randomized_election_timeout = et + self.rng.randrange(et)
        self.lead_transferee = ""
        self.votes = {}
        self._pending_reads.clear()
        self._postponed_reads.clear()
        last = self.log.last_index()
        stable_last = min(last, self.log.offset - 1)
        for nid, pr in self.prs.items():
            fresh = self._new_progress(last, pr.is_learner)
            if nid == self.id:
                fresh.match = stable_last
            self.prs[nid] = fresh

    def _become_follower(self, term: int, lead: str) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # PreVote changes neither term nor vote (thesis §9.6).
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.lead = ""

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        me = self.prs.get(self.id)
        if me is not None:
            me.become_replicate()
            me.match = min(self.log.last_index(), self.log.offset - 1)
        # No membership change until everything already in the log is applied (etcd).
        self.pending_conf_index = self.log.last_index()
        # The no-op of the new term (Raft §8): committing it commits every earlier entry.
        self._append([Entry(0, 0, ENTRY_NOOP)])

    # -- inputs ----------------------------------------------------------------------------

    def tick(self) -> None:
        """One logical tick of time."""
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                # CheckQuorum: a leader cut off from a quorum steps down (thesis §6.2).
                self._become_follower(self.term, "")
                return
            if self.lead_transferee:
                self.lead_transferee = ""  # the target did not catch up in time: refused
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            ctx = next(reversed(self._pending_reads)) if self._pending_reads else b""
            self._bcast_heartbeat(ctx)

    def _quorum_active(self) -> bool:
        active = 0
        for nid, pr in self.prs.items():
            if nid == self.id:
                if not pr.is_learner:
                    active += 1
                continue
            if pr.recent_active and not pr.is_learner:
                active += 1
            pr.recent_active = False
        return active >= self._quorum()

    def campaign(self) -> None:
        """Start an election now (as if the election timeout elapsed)."""
        self._hup(transfer=False)

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable():
            return
        # A committed but unapplied membership change may change who votes: wait (etcd).
        if self.log.committed > self.log.applied:
            try:
                pending = self.log.slice(self.log.applied + 1, self.log.committed + 1, 1 << 62)
            except LogCompacted:
                pending = []
            if any(e.type == ENTRY_CONF_CHANGE for e in pending):
                return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            mtype, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            mtype, term = MsgType.VOTE, self.term
        if self._poll(self.id, True) == "won":
            if pre:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for nid in self.voters():
            if nid == self.id:
                continue
            self._send(
                Message(
                    mtype,
                    self.id,
                    nid,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=ctx,
                )
            )

    def _poll(self, nid: str, granted: bool) -> str:
        if nid in self.prs and not self.prs[nid].is_learner:
            self.votes.setdefault(nid, granted)
        yes = sum(1 for g in self.votes.values() if g)
        no = len(self.votes) - yes
        q = self._quorum()
        if yes >= q:
            return "won"
        if no > len(self.voters()) - q:
            return "lost"
        return "pending"

    def step(self, m: Message) -> None:
        """Process one message from a peer."""
        if m.to != self.id:
            return
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                force = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != ""
                    and self.election_elapsed < self.cfg.election_tick
                )
                if not force and in_lease:
                    # The leader lease (thesis §4.2.3 / §6.2): we heard from a live leader
                    # less than an election timeout ago, so ignore a would-be disrupter.
                    return
            if m.type == MsgType.PRE_VOTE and "prevote-bumps-term" not in self.bugs:
                pass  # PreVote never changes our term (thesis §9.6)
            elif m.type == MsgType.PRE_VOTE_RESP and not m.reject:
                pass  # a granted pre-vote carries the term we would campaign in
            elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, "")
        elif m.term < self.term:
            if m.type in (MsgType.APP, MsgType.HEARTBEAT):
                # A stale leader (e.g. one that was partitioned): tell it our term so it
                # steps down; with PreVote and CheckQuorum it would otherwise never learn.
                self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term))
            elif m.type == MsgType.PRE_VOTE:
                self._send(
                    Message(MsgType.PRE_VOTE_RESP, self.id, m.frm, term=self.term, reject=True)
                )
            return

        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote(m)
            return
        if self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote(self, m: Message) -> None:
        # Raft §5.2: at most one vote per term, first come first served; §5.4.1: only for a
        # candidate whose log is at least as up-to-date as ours.
        can_vote = (
            self.vote == m.frm
            or (self.vote == "" and self.lead == "")
            or (m.type == MsgType.PRE_VOTE and m.term > self.term)
        )
        resp = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, self.id, m.frm, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, self.id, m.frm, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        if m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            # A leader of our term exists (Raft §5.2): recognise it.
            self._become_follower(self.term, m.frm)
            self._step_follower(m)
            return
        want = MsgType.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if m.type != want:
            return
        result = self._poll(m.frm, not m.reject)
        if result == "won":
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
        elif result == "lost":
            self._become_follower(self.term, "")

    def _step_follower(self, m: Message) -> None:
        if m.type == MsgType.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif m.type == MsgType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            if m.commit > self.log.committed:
                self.log.commit_to(min(m.commit, self.log.last_index()))
            self._send(
                Message(MsgType.HEARTBEAT_RESP, self.id, m.frm, term=self.term, context=m.context)
            )
        elif m.type == MsgType.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif m.type == MsgType.TIMEOUT_NOW:
            # Leadership transfer: campaign at once, skipping PreVote (thesis §3.10).
            self._hup(transfer=True)

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(
                Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=log.committed)
            )
            return
        matched = log.match_term(m.index, m.log_term)
        if not matched and "no-log-matching-check" in self.bugs:
            matched = m.index <= log.last_index()
        if matched:
            last_new = m.index + len(m.entries)
            ci = log.find_conflict(m.entries)
            if ci:
                log.append(m.entries[ci - (m.index + 1) :])
            log.commit_to(min(m.commit, last_new))
            self._send(Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=last_new))
            return
        # Log matching failed (Raft §5.3): refuse, with a hint for fast backtracking.
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.index, log.last_index()), m.log_term
        )
        self._send(
            Message(
                MsgType.APP_RESP,
                self.id,
                m.frm,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        snap = m.snapshot
        log = self.log
        if snap.index <= log.committed:
            pass  # already have it
        elif log.match_term(snap.index, snap.term):
            log.commit_to(snap.index)  # our log already holds it: just fast-forward
        else:
            log.restore(SnapshotMeta(snap.index, snap.term, snap.conf.copy()))
            self._set_conf(snap.conf)
            applied = snap.index + (1 if "snapshot-skips-entries" in self.bugs else 0)
            log.applied = applied
            self._applying = applied
        self._send(
            Message(MsgType.APP_RESP, self.id, m.frm, term=self.term, index=log.last_index())
        )

    # -- the leader --------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if m.type == MsgType.APP_RESP:
            pr.recent_active = True
            if m.reject:
                hint = m.reject_hint
                if m.log_term > 0:
                    hint, _ = self.log.find_conflict_by_term(hint, m.log_term)
                if pr.maybe_decr_to(m.index, hint):
                    if pr.state == REPLICATE:
                        pr.become_probe()
                    self._send_append(m.frm)
                return
            old_paused = pr.is_paused()
            if pr.maybe_update(m.index):
                if pr.state == PROBE:
                    pr.become_replicate()
                elif pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot:
                    pr.become_probe()
                    pr.become_replicate()
                elif pr.state == REPLICATE:
                    pr.inflights.free_le(m.index)
                if self._maybe_commit():
                    self._bcast_append()
                elif old_paused:
                    self._send_append(m.frm)
                while self._send_append(m.frm, send_if_empty=False):
                    pass  # pipeline as far as the window allows
                if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                    self._send_timeout_now(m.frm)
        elif m.type == MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == SNAPSHOT:
                pr.become_probe()  # retry: the snapshot (or its answer) may have been lost
            if pr.state == REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()  # let one more through (etcd)
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.frm, m.context)

    def _maybe_commit(self) -> bool:
        matches = sorted((p.match for p in self.prs.values() if not p.is_learner), reverse=True)
        if not matches:
            return False
        mci = matches[self._quorum() - 1]
        if mci <= self.log.committed:
            return False
        # Raft §5.4.2 (Figure 8): only an entry of the leader's own term is committed by
        # counting replicas; earlier ones are committed indirectly, by the Log Matching rule.
        if self.log.term(mci) != self.term and "figure8" not in self.bugs:
            return False
        first_in_term = self.log.term(self.log.committed) != self.term
        self.log.commit_to(mci)
        if first_in_term and self.log.term(self.log.committed) == self.term:
            postponed, self._postponed_reads = self._postponed_reads, []
            for ctx in postponed:
                self._start_read(ctx)
        return True

    def _send_append(self, to: str, send_if_empty: bool = True) -> bool:
        pr = self.prs.get(to)
        if pr is None or to == self.id or pr.is_paused():
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        ents: list[Entry] | None
        try:
            ents = log.slice(pr.next, log.last_index() + 1, self.cfg.max_size_per_msg)
        except LogCompacted:
            ents = None
        if prev_term is None or ents is None:
            # The follower needs compacted entries: ask its application to catch up from
            # ours (the snapshot hook). Only to a follower that answers, so a dead one does
            # not keep the application busy.
            if not pr.recent_active:
                return False
            meta = log.snapshot_meta()
            pr.become_snapshot(meta.index)
            snap = SnapshotMeta(meta.index, meta.term, meta.conf.copy())
            self._send(Message(MsgType.SNAP, self.id, to, term=self.term, snapshot=snap))
            return True
        if not ents and not send_if_empty:
            return False
        self._send(
            Message(
                MsgType.APP,
                self.id,
                to,
                term=self.term,
                index=prev,
                log_term=prev_term,
                entries=ents,
                commit=log.committed,
            )
        )
        if ents:
            pr.sent_entries(ents[-1].index, sum(e.size() for e in ents))
        elif pr.state == PROBE:
            pr.probe_sent = True
        return True

    def _bcast_append(self) -> None:
        for nid in self.prs:
            if nid != self.id:
                self._send_append(nid)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        for nid, pr in self.prs.items():
            if nid == self.id:
                continue
            commit = min(pr.match, self.log.committed)
            self._send(
                Message(MsgType.HEARTBEAT, self.id, nid, term=self.term, commit=commit, context=ctx)
            )

    def _send_timeout_now(self, to: str) -> None:
        self._send(Message(MsgType.TIMEOUT_NOW, self.id, to, term=self.term))

    def _append(self, ents: list[Entry]) -> int:
        li = self.log.last_index()
        for i, e in enumerate(ents):
            e.term = self.term
            e.index = li + 1 + i
        self.log.append(ents)
        self._bcast_append()
        return self.log.last_index()

    # -- application requests ----------------------------------------------------------

    def _check_leader(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.id, self.lead)

    def propose(self, data: bytes) -> int:
        """Append a ``normal`` entry carrying ``data``; returns its index (its term is
        ``self.term``). It is committed once a later ``Ready`` hands it out to apply."""
        self._check_leader()
        if self.lead_transferee:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        return self._append([Entry(0, 0, ENTRY_NORMAL, bytes(data))])

    def propose_conf_change(self, change: ConfChange, data: bytes) -> int:
        """Append a ``conf_change`` entry; returns its index.

        Refused (:class:`ProposalDropped`) unless: no other change is in flight, the leader
        has committed an entry of its term, and the change makes sense for the membership.
        """
        self._check_leader()
        change._validate()
        if self.lead_transferee:
            raise ProposalDropped(f"leadership is being transferred to {self.lead_transferee}")
        if (
            self.pending_conf_index > self.log.applied
            and "double-membership-change" not in self.bugs
        ):
            # One single-server change at a time (thesis §4.1): two in flight could let
            # disjoint majorities form.
            raise ProposalDropped("a membership change is already in flight")
        if (
            self.log.term(self.log.committed) != self.term
            and "conf-change-before-term-commit" not in self.bugs
        ):
            # Ongaro, raft-dev 2015: a leader must commit an entry of its own term before
            # changing membership, or a change from a previous term may be lost.
            raise ProposalDropped("the leader has not yet committed an entry of its term")
        pr = self.prs.get(change.node)
        if change.op == CONF_ADD_LEARNER and pr is not None:
            raise ProposalDropped(f"{change.node} is already a member")
        if change.op == CONF_PROMOTE and (pr is None or not pr.is_learner):
            raise ProposalDropped(f"{change.node} is not a learner")
        if change.op == CONF_REMOVE:
            if pr is None:
                raise ProposalDropped(f"{change.node} is not a member")
            if not pr.is_learner and len(self.voters()) == 1:
                raise ProposalDropped("cannot remove the last voter")
        e = Entry(0, 0, ENTRY_CONF_CHANGE, bytes(data), ConfChange(change.op, change.node))
        idx = self._append([e])
        self.pending_conf_index = idx
        return idx

    def transfer_leadership(self, target: str) -> None:
        """Hand leadership to voter ``target`` once it is up to date (thesis §3.10)."""
        self._check_leader()
        pr = self.prs.get(target)
        if target == self.id or pr is None or pr.is_learner:
            raise ProposalDropped(f"{target} is not another voter")
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        if pr.match == self.log.last_index():
            self._send_timeout_now(target)
        else:
            self._send_append(target)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; ``ctx`` (unique, non-empty) comes back in a
        ``ReadState`` once it is safe to read at that index (thesis §6.4)."""
        self._check_leader()
        if not ctx:
            raise ValueError("read context must not be empty")
        if "readindex-without-heartbeat" in self.bugs:
            self.read_states.append(ReadState(self.log.committed, ctx))
            return
        if self.log.term(self.log.committed) != self.term:
            # Until an entry of our term commits we do not know the true commit index.
            self._postponed_reads.append(ctx)
            return
        self._start_read(ctx)

    def _start_read(self, ctx: bytes) -> None:
        if len(self.voters()) == 1 and self.promotable():
            self.read_states.append(ReadState(self.log.committed, ctx))
            return
        self._pending_reads[ctx] = (self.log.committed, {self.id})
        self._bcast_heartbeat(ctx)

    def _ack_read(self, frm: str, ctx: bytes) -> None:
        req = self._pending_reads.get(ctx)
        if req is None:
            return
        pr = self.prs.get(frm)
        if pr is None or pr.is_learner:
            return
        req[1].add(frm)
        voters = set(self.voters())
        if len(req[1] & voters) < self._quorum():
            return
        # Confirmed: this and every earlier pending read (they are older) may proceed.
        while self._pending_reads:
            c, (idx, _) = self._pending_reads.popitem(last=False)
            self.read_states.append(ReadState(idx, c))
            if c == ctx:
                break

    # -- output -------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _committed_to_apply(self) -> list[Entry]:
        log = self.log
        hi = log.committed
        if "apply-uncommitted" in self.bugs:
            hi = log.last_index()
        if hi <= self._applying:
            return []
        return log.slice(self._applying + 1, hi + 1, self.cfg.max_committed_size_per_ready)

    def has_ready(self) -> bool:
        """Whether :meth:`ready` would return something."""
        if self._ready_out:
            return False
        log = self.log
        ps, ph = self._prev_ss, self._prev_hs
        return bool(
            self.msgs
            or self.read_states
            or log.unstable
            or log.unstable_snap is not None
            or log.committed > self._applying
            or ps.leader != self.lead
            or ps.role != self.role
            or ph.term != self.term
            or ph.vote != self.vote
            or ph.commit != log.committed
            or ("apply-uncommitted" in self.bugs and log.last_index() > self._applying)
        )

    def ready(self) -> Ready | None:
        """What to persist, send and apply now (``None`` if nothing); see :class:`Ready`."""
        if self._ready_out:
            raise RuntimeError("ready() called again before advance()")
        if not self.has_ready():
            return None
        log = self.log
        rd = Ready()
        ss = self._soft_state()
        if ss != self._prev_ss:
            rd.soft_state = ss
        hs = self._hard_state()
        if hs != self._prev_hs:
            rd.hard_state = hs
        rd.entries = list(log.unstable)
        if log.unstable_snap is not None:
            s = log.unstable_snap
            rd.snapshot = SnapshotMeta(s.index, s.term, s.conf.copy())
        rd.committed_entries = self._committed_to_apply()
        if rd.committed_entries:
            self._applying = rd.committed_entries[-1].index
        rd.messages, self.msgs = self.msgs, []
        rd.read_states, self.read_states = self.read_states, []
        # Term and vote must reach the disk before the vote or any message of the new term
        # leaves (Raft §5.2 / Figure 2); so must new entries (§5.3). A commit index alone
        # need not: it can be learned again.
        prev = self._prev_hs
        vote_changed = hs.term != prev.term or hs.vote != prev.vote
        if "no-persist-vote" in self.bugs:
            vote_changed = False
        rd.must_sync = vote_changed or bool(rd.entries) or rd.snapshot is not None
        self._ready_out = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The runtime has done everything ``rd`` asked for."""
        self._ready_out = False
        log = self.log
        if rd.soft_state is not None:
            self._prev_ss = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
            if self.role == Role.LEADER:
                # The leader's own copy is now on disk: count it (see the module doc).
                me = self.prs.get(self.id)
                if me is not None and me.maybe_update(min(last.index, log.offset - 1)):
                    if self._maybe_commit():
                        self._bcast_append()
        if rd.committed_entries:
            log.applied = max(log.applied, rd.committed_entries[-1].index)
            for e in rd.committed_entries:
                if e.type == ENTRY_CONF_CHANGE and e.change is not None:
                    self._apply_conf_change_entry(e.change)

    # -- introspection -------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """A summary for ``/v1/cluster`` and for tests."""
        return {
            "id": self.id,
            "role": self.role,
            "term": self.term,
            "vote": self.vote,
            "leader": self.lead,
            "commit": self.log.committed,
            "applied": self.log.applied,
            "last_index": self.log.last_index(),
            "conf": self.conf_state().to_dict(),
        }
