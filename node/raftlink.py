"""Raft ↔ ledger wiring: the consensus runtime over the mTLS transport as a node Replicator.

* Members and trust anchors come from the consortium state (genesis nodes; their certificates
  are the only anchors, pinned by fingerprint, DESIGN §3); ``[peers]`` overrides addresses.
* The Raft log lives in LevelDB under ``<data_dir>/raft`` (``consensus.logstore``), separate from
  the ledger store: a restore may bring blocks back, never Raft state (DESIGN §4).
* The runtime hands committed entries to an apply callback on its own worker thread; that
  callback runs the node's :class:`node.apply.Applier` on the event loop and waits for it, so
  entries apply strictly in order and the runtime's back-pressure covers apply.
* The Raft log is compacted up to the applied index (``[raft] compact_threshold``): the ledger
  store is the snapshot (DESIGN §3). A node that needs compacted entries catches up by a
  **verified transfer of stored blocks** (:meth:`RaftReplicator._install`, channel ``xfer``):
  it asks a peer for the blocks above its head and checks each one exactly as apply does
  (validity against its own state, hash link, proposer signature, Merkle root), and each
  batch's checkpoint against a quorum of voter signatures, before it writes it. A peer that
  sends anything else is dropped and another asked; nothing unverified is ever stored.
* A node that lost its Raft state (restored from a backup, or started with its storage wiped)
  neither votes nor campaigns until it has heard a leader and caught up with it, never votes in
  a term it may have voted in before, and asks the leader to ``rejoin`` it: see "lost Raft
  state" below. A ledger folder lost under a kept Raft log is refilled by transfer first.

Test-only failpoint ``equivocate``: the leader re-signs every block it sends to one follower
with a different time, so two followers hold different (individually valid) blocks at one
height; their cosignature exchange must catch it (issue 6 e2e).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from pathlib import Path
from typing import Any

from consensus.core import Config, NotLeader, ProposalDropped, RaftCore
from consensus.logstore import LogStore
from consensus.runtime import CommitUnknown, Runtime
from consensus.transport import Member, Transport
from consensus.types import ConfChange, ConfState, Entry, Role, SnapshotMeta
from ledger.blocks import sign_block
from ledger.checkpoints import check_checkpoint, verify_checkpoint_signatures
from ledger.encoding import canonical, decode
from ledger.errors import LedgerError
from node.config import NodeConfig
from node.replicator import AppFn, ApplyFn, Committed

log = logging.getLogger("courtledger.raft")

XFER = "xfer"
XFER_REPLY = "xfer_r"
#: A follower whose log does not reach where the leader appends tells it its last index; the
#: leader probes it from index 1 if that is below what it acknowledged (it lost entries).
REJOIN = "rejoin"
#: The leader's answer to a ``rejoin`` from a node that believes it is new although the leader
#: counted acknowledgements from it: ``{"acked": index, "term": term}`` (see ``_on_rejoin``).
REJOIN_REPLY = "rejoin_r"
#: Raft messages only a leader sends: hearing one is "having heard a leader".
_FROM_LEADER = frozenset({"app", "heartbeat", "snap"})
#: One transfer answer holds at most this many blocks and (about) this many bytes.
XFER_MAX_BLOCKS = 256
XFER_MAX_BYTES = 16 * 1024 * 1024


def _keep_floor(data_dir: Path, floor: int) -> None:
    """Make the vote floor fixed at the first leader durable in the ``RESTORED`` marker, so
    that a restart before the guard lifts does not forget the terms seen before that leader."""
    from node.backup import RESTORED_MARKER, read_marker, write_marker

    marker = read_marker(data_dir) or {}
    if int(marker.get("term_floor", 0)) < floor:
        write_marker(data_dir / RESTORED_MARKER, {**marker, "term_floor": floor})


_withheld_logged: set[tuple[str, str, int]] = set()


def _log_withheld(guard: str, kind: str, term: int, peer: object, floor: int | None) -> None:
    """Log a withheld vote once per guard, kind and term (a candidate retries every few
    hundred milliseconds; the ``votes_withheld`` counter has them all)."""
    key = (guard, kind, term)
    if key in _withheld_logged:
        return
    if len(_withheld_logged) > 1024:
        _withheld_logged.clear()
    _withheld_logged.add(key)
    log.info("lost Raft state (%s%s): withholding %s for term %d from %s and its retries",
             guard, f" {floor}" if floor is not None else "", kind, term, peer)


class RaftReplicator:
    """A :class:`node.replicator.Replicator` on ``consensus.runtime.Runtime``."""

    def __init__(self, config: NodeConfig, chain: Any, metrics: Any) -> None:
        self.node_id = config.node_id
        self.config = config
        self.chain = chain
        state = chain.state
        voters = [n.id for n in state.voters()]
        learners = [n.id for n in state.nodes() if n.role == "learner"]
        raft_dir = config.data_dir / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        self.logstore = LogStore(str(raft_dir), ConfState(voters, learners))
        applied = min(chain.applied_index, self.logstore.last_index())
        #: Set when the ledger lost blocks that the Raft log has compacted away (its LevelDB
        #: folder was wiped, the Raft state kept): they come back by verified block transfer
        #: up to the compaction point before anything later is applied (``start``).
        self._ledger_gap: SnapshotMeta | None = self._find_ledger_gap(chain)
        self._ledger_ready = threading.Event()
        self._gap_task: asyncio.Task[None] | None = None
        self._stopping = False
        if self._ledger_gap is None:
            self._ledger_ready.set()
        else:
            applied = self._ledger_gap.index
        self.core = RaftCore(
            Config(id=self.node_id, voters=voters, learners=learners,
                   election_tick=config.raft.election_ticks,
                   heartbeat_tick=config.raft.heartbeat_ticks, applied=applied),
            self.logstore, random.Random(),
        )
        members = [
            Member(n.id, str(config.peers[n.id]) if n.id in config.peers else n.raft_addr,
                   n.tls_certificate.encode("ascii"))
            for n in state.nodes()
        ]
        self.transport = Transport(
            self.node_id, str(config.tls_cert), str(config.tls_key), members,
            on_raft=self._on_raft, on_app=self._on_app, listen=str(config.listen.raft),
        )
        self.runtime = Runtime(
            self.core, self.logstore, self._send, self._apply_sync,
            tick_interval=config.raft.tick_ms / 1000,
            compact_threshold=config.raft.compact_threshold,
            compact_retain=config.raft.compact_retain,
            install_snapshot=self._install,
        )
        #: Set by the node: called for each block written by a transfer (like after apply).
        self.after_block: Any = None
        #: Set by the node: the applier's lock, held while a transferred block is written.
        self.apply_lock: asyncio.Lock = asyncio.Lock()
        self.snapshots_installed = 0
        self._xfer: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._xfer_rid = 0
        self._on_commit: ApplyFn | None = None
        self._app: AppFn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._equivocate = "equivocate" in config.failpoints
        self._init_recovery(config)
        self._members_key: tuple[tuple[str, str, str], ...] = tuple(
            (n.id, n.raft_addr, n.tls_certificate) for n in state.nodes())
        self._tampered: dict[bytes, bytes] = {}

    # ------------------------------------------------------------------ status

    def is_leader(self) -> bool:
        return self.runtime.role == Role.LEADER and self._on_commit is not None

    def leader(self) -> str | None:
        return self.runtime.leader or None

    def term(self) -> int:
        return self.core.term

    def commit_index(self) -> int:
        return self.core.log.committed

    def last_index(self) -> int:
        return self.core.log.last_index()

    def log_status(self) -> dict[str, Any]:
        """The Raft log's extent and the runtime's counters (for /v1/cluster)."""
        return {"first_index": self.logstore.first_index(),
                "last_index": self.logstore.last_index(),
                "compactions": self.runtime.counters["compactions"],
                "snapshots": self.runtime.counters["snapshots"],
                "recovery": self.recovery_status()}

    def peers(self) -> list[str]:
        return sorted(n for n in self.transport.members if n != self.node_id)

    def members(self) -> list[dict[str, object]]:
        conf = self.core.conf_state()
        out: list[dict[str, object]] = []
        for nid in [*conf.voters, *conf.learners]:
            item: dict[str, object] = {
                "id": nid, "role": "voter" if nid in conf.voters else "learner",
                "connected": nid == self.node_id or self.transport.connected(nid),
            }
            pr = self.core.prs.get(nid)
            if pr is not None and self.runtime.role == Role.LEADER:
                item["match"] = pr.match
            out.append(item)
        return out

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_commit: ApplyFn, on_app: AppFn, applied_index: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_commit = on_commit
        self._app = on_app
        await self.transport.start()
        if self._ledger_gap is not None:
            self._gap_task = asyncio.create_task(self._fill_ledger_gap(self._ledger_gap))
            self._gap_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        await self.runtime.start()

    def _find_ledger_gap(self, chain: Any) -> SnapshotMeta | None:
        """Whether the ledger lacks blocks the Raft log no longer holds.

        The store records the Raft index of each block; no-ops leave no trace there, so a
        ledger index below the compaction point alone proves nothing (the gap may be no-ops of
        a few leader changes). The ledger lacks blocks if the first block kept in the log does
        not follow its head, or, with no block kept, if the ledger is empty while the log was
        compacted (a ledger folder wiped while the Raft folder stayed)."""
        meta = self.logstore.snapshot_meta()
        if meta.index == 0 or chain.applied_index >= meta.index:
            return None
        first, last = self.logstore.first_index(), self.logstore.last_index()
        for e in self.logstore.entries(first, last + 1, 1 << 62) if last >= first else []:
            if e.type == "noop" or not e.data:
                continue
            try:
                height = decode(e.data, max_size=len(e.data) + 1)["header"]["height"]
            except (LedgerError, KeyError, TypeError):
                return None  # apply will judge this entry and raise the alarm if need be
            if isinstance(height, int) and height > chain.height + 1:
                break
            return None
        else:
            if chain.height > 0:
                return None
        log.warning("the ledger (height %d, Raft index %d) lacks blocks the Raft log compacted "
                    "away (its log starts after index %d): its store was lost; catching up by "
                    "verified block transfer before applying anything later",
                    chain.height, chain.applied_index, meta.index)
        return meta

    async def _fill_ledger_gap(self, meta: SnapshotMeta) -> None:
        """Bring the ledger to the compaction point by verified transfer, then let apply go."""
        await self._install(meta)
        self._ledger_ready.set()

    async def stop(self) -> None:
        self._stopping = True
        if self._gap_task is not None:
            self._gap_task.cancel()
        await self.runtime.stop()
        await self.transport.stop()
        self.logstore.close()

    # ------------------------------------------------------------------ proposing and applying

    async def propose(self, data: bytes) -> int | None:
        """Propose one block; its index once committed, None if this node cannot propose."""
        try:
            return await self.runtime.propose(data)
        except (NotLeader, ProposalDropped, CommitUnknown) as exc:
            log.info("proposal not committed here: %s", exc)
            return None

    async def propose_conf_change(self, op: str, node: str, data: bytes) -> int | None:
        """Propose the block holding a ``membership`` entry as Raft's ``conf_change`` for
        ``(op, node)`` (DESIGN §3); its index once committed, None if not committed here."""
        try:
            return await self.runtime.propose_conf_change(ConfChange(op, node), data)
        except (NotLeader, ProposalDropped, CommitUnknown) as exc:
            log.info("membership proposal not committed here: %s", exc)
            return None

    def sync_members(self) -> None:
        """Make the transport's trusted set and addresses the consortium state's nodes.

        Called after every applied or transferred block: a membership entry (add_learner,
        remove, update_keys) changes whom we dial and whose certificate we accept, from the
        block after it on (DESIGN §3: peers' trusted certificates follow the chain).
        """
        nodes = self.chain.state.nodes()
        key = tuple((n.id, n.raft_addr, n.tls_certificate) for n in nodes)
        if key == self._members_key:
            return
        self._members_key = key
        members = [
            Member(n.id, str(self.config.peers[n.id]) if n.id in self.config.peers
                   else n.raft_addr, n.tls_certificate.encode("ascii"))
            for n in nodes
        ]
        log.info("trusted set now %s", [m.node_id for m in members])
        self.transport.update_members(members)

    def _apply_sync(self, entries: list[Entry]) -> None:
        """Runtime's apply thread: run the node's apply on the loop, in order, and wait."""
        assert self._loop is not None and self._on_commit is not None
        # Entries after a ledger gap apply only once the transfer filled it (``start``).
        while not self._ledger_ready.wait(0.2):
            if self._stopping:
                raise RuntimeError("stopped before the ledger's lost blocks were transferred")
        for e in entries:
            change = (e.change.op, e.change.node) if e.change is not None else None
            fut: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                self._on_commit(Committed(e.index, e.term, e.type, e.data, change)), self._loop
            )
            fut.result()
            if change is not None or e.type == "normal":
                self._loop.call_soon_threadsafe(self.sync_members)

    # ------------------------------------------------------------------ transport

    def _on_raft(self, peer: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in _FROM_LEADER:
            self._leader_seen = True
            index = message.get("index")
            if kind == "app" and isinstance(index, int) and index > self.core.log.last_index():
                # The leader appends after an index our log does not reach: we lag, or we
                # lost entries it counted as ours (storage wiped, restored, or a whole data
                # dir replaced). Only the leader knows which: tell it how far our durable log
                # goes (``_on_rejoin``; at most once a second). Our in-memory log is compared
                # here, so that pipelined appends still being written do not trigger it.
                self._ask_rejoin(peer)
        elif kind == "app_resp" and message.get("reject"):
            self._note_refusal(peer, message)
        elif (kind in ("vote", "pre_vote") and self.recovery_state == "first"
              and not self._leader_seen and not self._first_may_vote(peer, message)):
            return
        if self._catching_up and not self._catch_up_may_take(peer, message):
            return
        if self._vote_floor is not None and not self._restored_may_take(message):
            return
        self.runtime.receive(peer, message)

    # ------------------------------------------------------------------ lost Raft state
    #
    # Raft assumes stable storage: the current term, the vote and the log survive every crash
    # (Raft §5, Figure 2 "persistent state on all servers"). A node whose storage is lost breaks
    # that assumption twice: it forgets whom it voted for (two votes in one term could elect two
    # leaders, §5.2), and it forgets entries it acknowledged, which a leader counted towards a
    # commit (a candidate lacking a committed entry could then win with its vote, §5.4.1).
    # It must not come back as if new. ``node restore`` (node/backup.py) and a start that finds
    # the storage wiped (``start_kind`` == "wiped") both leave it under two guards:
    #
    # * the vote floor (``RESTORED`` marker, ``_restored_may_take``): no vote or pre-vote until a
    #   leader was heard, none at a term at or below the highest term seen until then;
    # * the catch-up guard (``CATCHING_UP`` marker, ``_catch_up_may_take``): the first leader
    #   heard (term T, commit index C in its message) holds every committed entry (Leader
    #   Completeness, §5.4.2), each earlier committed one before its term-T no-op, and every
    #   entry this leader committed with our lost acknowledgements at or below C. Until our
    #   *durable* log ends at a term ≥ T and an index ≥ C we hold all of them only partly, so
    #   we neither vote nor campaign (our own candidacy is a vote for a log just as short).
    #   A leader of a higher term heard meanwhile replaces the target, and every term seen
    #   meanwhile joins the vote floor.
    #
    # While a guard holds, our own vote and pre-vote requests are not sent (``_send``): etcd's
    # answer to the same question is a node that is not "promotable" never campaigns.
    # The node also asks the leader to ``rejoin`` it: see ``_on_rejoin`` for why the leader
    # does not work this out from the follower's refusals alone.

    def _init_recovery(self, config: NodeConfig) -> None:
        """At start: tell a genuine first start from a node that lost its Raft state, and set
        the guards above for the latter (node/backup.py ``start_kind`` decides)."""
        from node.backup import (
            CATCHUP_MARKER,
            HAS_RUN_MARKER,
            mark_has_run,
            mark_wiped,
            read_marker,
            start_kind,
        )

        data_dir = config.data_dir
        hard, _ = self.logstore.initial_state()
        raft_empty = hard.term == 0 and self.logstore.last_index() == 0
        kind = start_kind(data_dir, raft_empty=raft_empty, ledger_height=self.chain.height)
        if kind == "wiped":
            # Terms only grow along the chain: the head's is the highest any stored block names.
            head_term = self.chain.store.head()[1].get("term", 0)
            floor = head_term if isinstance(head_term, int) else 0
            mark_wiped(data_dir, floor)
            log.warning(
                "node %s: its storage was empty after it had run (no Raft state under %s, ledger "
                "at height %d): catching up from the leader. It casts no vote and does not "
                "campaign until it has heard a leader and holds what that leader held, and "
                "never votes at a term up to %d or any term seen before that leader "
                "(Raft §5.2, §5.4); `courtledger node restore` from a backup is the faster path",
                self.node_id, data_dir / "raft", self.chain.height, floor)
        marker = read_marker(data_dir)
        #: "first", "resume", "restored" or "wiped" (a restart before the guards lifted keeps
        #: the cause recorded in the marker).
        self.recovery_state: str = kind
        if marker is not None:
            self.recovery_state = "wiped" if marker.get("cause") == "wiped" else "restored"
        # A node restored from a backup (node/backup.py) or found wiped lost its Raft state and
        # with it whom it voted for: it withholds votes until it has heard a leader, and never
        # votes in a term at or below the highest it has seen since (Raft §5.2).
        self._vote_floor: int | None = (
            int(marker.get("term_floor", 0)) if marker is not None else None)
        self._heard_leader = False
        target = read_marker(data_dir, CATCHUP_MARKER)
        self._catching_up = marker is not None or target is not None
        self._catch_up: tuple[int, int] | None = None
        if (target is not None and isinstance(target.get("term"), int)
                and isinstance(target.get("index"), int)):
            self._catch_up = (target["term"], target["index"])
        self._leader_seen = False
        self._rejoin_asked = -1e9
        self.votes_withheld = 0
        self.votes_granted_before_leader = 0
        self.campaigns_suppressed = 0
        self.stale_refusals: dict[str, int] = {}
        self._stale_warned: dict[str, float] = {}
        self._has_run = (data_dir / HAS_RUN_MARKER).exists()
        if not self._has_run and not raft_empty:
            mark_has_run(data_dir, self.node_id)  # a data dir from before the marker existed
            self._has_run = True

    def _first_may_vote(self, peer: str, message: dict[str, Any]) -> bool:
        """A node on its first start, before it has heard any leader, votes only for a
        candidate whose log is empty too.

        At a consortium's genesis every log is empty until a first leader appends its no-op,
        so this costs the first election nothing. A candidate with entries means the
        consortium has run; a node that has never heard a leader and has an empty log may
        then be one whose whole data dir was lost (nothing on disk says otherwise): its vote
        could be a second vote in a term, or elect a candidate that lacks entries it once
        acknowledged (Raft §5.2, §5.4.1). It waits for a leader instead; the leader tells it
        if it was a member before (``_on_rejoin``). The price: a node started for the first
        time while the consortium has no leader cannot help elect one."""
        index, log_term = message.get("index", 0), message.get("log_term", 0)
        if index == 0 and log_term == 0:
            return True
        self.votes_withheld += 1
        _log_withheld("first start, no leader heard yet", str(message.get("type")),
                      int(message.get("term") or 0), peer, None)
        return False

    def recovery_status(self) -> dict[str, Any]:
        """How this node stands after a loss of Raft state (for /v1/cluster ``raft``)."""
        return {
            "state": self.recovery_state,
            "vote_floor": self._vote_floor,
            "catching_up": self._catching_up,
            "catch_up_to": list(self._catch_up) if self._catch_up is not None else None,
            "heard_leader": self._leader_seen,
            "votes_withheld": self.votes_withheld,
            "votes_granted_before_leader": self.votes_granted_before_leader,
            "campaigns_suppressed": self.campaigns_suppressed,
            "stale_refusals": dict(self.stale_refusals),
        }

    def _may_campaign(self, term: int) -> bool:
        """Whether our own (pre-)vote request for ``term`` may leave (see the guards above)."""
        if self._catching_up:
            return False
        floor = self._vote_floor
        return floor is None or (self._heard_leader and term > floor)

    def _log_reaches(self, term: int, index: int) -> bool:
        """Our durable Raft log ends at a term ≥ ``term`` and an index ≥ ``index``."""
        last = self.logstore.last_index()
        return last >= index and (self.logstore.term(last) or 0) >= term

    def _catch_up_may_take(self, peer: str, message: dict[str, Any]) -> bool:
        """The catch-up guard: fix the target at the first word from a leader (durably, before
        the message reaches the core), drop vote and pre-vote requests until our durable log
        reaches it, then lift the guard."""
        from node.backup import CATCHUP_MARKER, write_marker

        term = message.get("term")
        if not isinstance(term, int):
            return True
        kind = message.get("type")
        if (self._vote_floor is not None and self._heard_leader and term > self._vote_floor
                and kind not in _FROM_LEADER):
            # A term above the floor seen while we cannot yet vote (a candidate's): it may be
            # a term we voted in before the loss, so it joins the floor (never lowered).
            self._vote_floor = term
            _keep_floor(self.config.data_dir, term)
        if kind in _FROM_LEADER:
            if self._catch_up is None or term > self._catch_up[0]:
                # The first leader heard, or a later one (the first may have been deposed
                # without knowing it): a newer leader's log holds every committed entry, so
                # the target only grows stronger.
                commit = message.get("commit", 0)
                self._catch_up = (term, commit if isinstance(commit, int) else 0)
                write_marker(self.config.data_dir / CATCHUP_MARKER,
                             {"term": self._catch_up[0], "index": self._catch_up[1]})
                log.info("lost Raft state: leader %s heard at term %d (commit %d); no vote and "
                         "no campaign until our log holds term ≥ %d and index ≥ %d", peer, term,
                         self._catch_up[1], term, self._catch_up[1])
        if self._catch_up is not None and self._log_reaches(*self._catch_up):
            self._catching_up = False
            (self.config.data_dir / CATCHUP_MARKER).unlink(missing_ok=True)
            log.info("caught up: the Raft log holds what leader %s held when first heard "
                     "(term %d, index %d); votes follow the vote floor from now on",
                     peer, *self._catch_up)
            return True
        if kind in ("vote", "pre_vote"):
            self.votes_withheld += 1
            _log_withheld("catching up", str(kind), term, peer, None)
            return False
        return True

    def _note_refusal(self, peer: str, message: dict[str, Any]) -> None:
        """Leader side: count a follower's refusals at or below its recorded match index.

        Raft treats them as stale (etcd raft ``tracker/progress.go`` ``MaybeDecrTo``: in
        replicate state a rejection at or below the match is dropped): messages are reordered,
        and under Raft's stable-storage assumption a follower's log never loses what it
        acknowledged. We keep that rule: the refusal of a follower that really lost its log
        cannot be told from a delayed one, and silently lowering the match would also hide that
        commits were counted with acknowledgements now lost. A follower that knows it lost its
        state says so (``rejoin``) after setting its vote guards; etcd's own answer to a member
        with lost data is to remove it and add it back. Refusals that keep arriving are logged
        (every 30 s per peer) so that an operator sees a follower that lost its disk without
        knowing it (e.g. its whole data dir, markers included, was replaced).
        """
        if self.runtime.role != Role.LEADER:
            return
        pr = self.core.prs.get(peer)
        index = message.get("index")
        if pr is None or not isinstance(index, int) or index > pr.match:
            return  # a current refusal: the core backs off (Raft §5.3)
        n = self.stale_refusals[peer] = self.stale_refusals.get(peer, 0) + 1
        now = asyncio.get_running_loop().time()
        if now - self._stale_warned.get(peer, -1e9) >= 30.0:
            self._stale_warned[peer] = now
            log.warning("peer %s refuses entries at index %d though it acknowledged up to %d "
                        "(%d such refusals): stale, or its storage was lost; a node that finds "
                        "its storage gone asks to rejoin by itself, else restore it "
                        "(docs/operations.md)", peer, index, pr.match, n)

    def _on_rejoin(self, peer: str, data: bytes) -> None:
        """A follower's ``rejoin``: ``{"state": how it started, "last": its last log index}``.

        If its log ends below the match index we recorded, it lost entries it acknowledged
        (restored from a backup, found wiped, or a whole data dir replaced): as leader, forget
        what we counted as replicated there and probe it from the start. Raft ignores a
        follower's refusals at or below its recorded match index as stale
        (``_note_refusal``), so without this the leader would never resend the lost entries.
        Lowering a match index only delays commits, never makes one (the frame comes over the
        peer's pinned mTLS link). A follower that merely lags (log at or past the match) is
        left to Raft's own backtracking.

        A follower that says it starts for the first time although we counted its
        acknowledgements lost its whole data dir, markers included, and came back without
        ``node restore``: we tell it (``rejoin_r``) so that it takes the guards of a wiped node
        instead of voting as if new, and say so in our log."""
        pr = self.core.prs.get(peer)
        if self.runtime.role != Role.LEADER or pr is None:
            return
        try:
            msg = decode(data, max_size=256) if data else {"state": "lost", "last": 0}
            state, last = msg["state"], msg["last"]
            if not isinstance(state, str) or not isinstance(last, int):
                raise TypeError("state is a string and last an integer")
        except (LedgerError, KeyError, TypeError) as exc:
            log.warning("dropping a rejoin request from %s: %s", peer, exc)
            return
        if pr.match <= last:
            return
        acked = pr.match
        log.info("peer %s rejoins with a Raft log ending at %d below the %d it acknowledged: "
                 "probing it from index 1", peer, last, acked)
        pr.match = 0
        pr.pending_snapshot = 0  # a snapshot in flight names an index it may no longer reach
        pr.become_probe()
        if state == "first":
            log.warning("peer %s starts as a new node although it acknowledged entries up to "
                        "index %d: its whole data dir was lost and it was started without "
                        "`courtledger node restore`; telling it to act as a wiped node",
                        peer, acked)
            task = asyncio.create_task(self.transport.send_app(
                peer, REJOIN_REPLY, canonical({"acked": acked, "term": self.core.term})))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _on_rejoin_reply(self, peer: str, data: bytes) -> None:
        """The leader counted acknowledgements from us, yet we started as new: our whole data
        dir was lost. Take the guards of a wiped node from now on (durably), with a vote floor
        at the leader's term at least: we may have voted in any term up to it."""
        from node.backup import mark_wiped

        # Only our own recorded state is checked: the sender is a member (pinned mTLS), and a
        # false claim can only make us more careful, never less.
        if self.recovery_state != "first":
            return
        try:
            msg = decode(data, max_size=256)
            acked, term = msg["acked"], msg["term"]
            if not isinstance(acked, int) or not isinstance(term, int):
                raise TypeError("acked and term are integers")
        except (LedgerError, KeyError, TypeError) as exc:
            log.warning("dropping a rejoin answer from %s: %s", peer, exc)
            return
        floor = max(term, self.core.term)
        mark_wiped(self.config.data_dir, floor)
        self.recovery_state = "wiped"
        self._vote_floor = floor
        self._heard_leader = False
        self._catching_up = True
        self._catch_up = None
        log.warning("node %s: its storage was empty after it had run (leader %s counted its "
                    "acknowledgements up to index %d; the whole data dir was lost): catching up "
                    "from the leader, with no vote and no campaign until caught up and never "
                    "at a term up to %d (Raft §5.2, §5.4); restore it from a backup next time",
                    self.node_id, peer, acked, floor)

    def _ask_rejoin(self, leader: str) -> None:
        """Tell the leader how far our log goes (at most once a second): see ``_on_rejoin``."""
        now = asyncio.get_running_loop().time()
        if now - self._rejoin_asked < 1.0:
            return
        self._rejoin_asked = now
        state = "first" if self.recovery_state == "first" else "lost"
        body = canonical({"state": state, "last": self.logstore.last_index()})
        task = asyncio.create_task(self.transport.send_app(leader, REJOIN, body))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _restored_may_take(self, message: dict[str, Any]) -> bool:
        """The vote floor, after a restore or a wipe (empty Raft state): drop vote and pre-vote
        requests until a leader was heard, and any at a term ≤ the highest term seen until
        then; lift the guard once our own durable term is past that floor (from then on the
        hard state remembers votes)."""
        term = message.get("term")
        if not isinstance(term, int):
            return True
        kind = message.get("type")
        assert self._vote_floor is not None
        if not self._heard_leader:
            # The floor is every term seen up to the first word from a leader: terms the node
            # may have voted in before the loss. Later terms are new and the durable hard
            # state records any vote in them.
            self._vote_floor = max(self._vote_floor, term)
            if kind in _FROM_LEADER:
                self._heard_leader = True
                _keep_floor(self.config.data_dir, self._vote_floor)
        if kind in ("vote", "pre_vote"):
            if not self._heard_leader or term <= self._vote_floor:
                self.votes_withheld += 1
                _log_withheld("vote floor", str(kind), term, message.get("frm"),
                              self._vote_floor)
                return False
            return True
        if self._heard_leader and self.core.term > self._vote_floor:
            self._vote_floor = None
            (self.config.data_dir / "RESTORED").unlink(missing_ok=True)
            log.info("lost Raft state: durable term %d is past every term seen; votes resume",
                     self.core.term)
        return True

    async def _on_app(self, peer: str, channel: str, data: bytes) -> None:
        if self._app is not None:
            await self._app(peer, channel, data)

    async def send_app(self, peer: str, channel: str, data: bytes) -> None:
        await self.transport.send_app(peer, channel, data)

    # ------------------------------------------------------------------ block transfer

    async def on_app(self, peer: str, channel: str, data: bytes) -> None:
        """Block-transfer frames: requests (served from the store) and their answers; and a
        restored peer's ``rejoin``."""
        if channel == REJOIN:
            self._on_rejoin(peer, data)
            return
        if channel == REJOIN_REPLY:
            self._on_rejoin_reply(peer, data)
            return
        try:
            msg = decode(data, max_size=XFER_MAX_BYTES + (1 << 20))
            if not isinstance(msg, dict) or not isinstance(msg.get("rid"), int):
                raise ValueError("a transfer frame is a map with an integer rid")
        except (LedgerError, ValueError) as exc:
            log.warning("dropping a transfer frame from %s: %s", peer, exc)
            return
        if channel == XFER:
            reply = await asyncio.to_thread(self._serve, msg)
            await self.transport.send_app(peer, XFER_REPLY, canonical(reply))
        elif channel == XFER_REPLY:
            fut = self._xfer.get(msg["rid"])
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def _serve(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Stored blocks from ``msg["from"]`` (bounded), with our checkpoint of the last."""
        start = msg.get("from")
        if not isinstance(start, int) or start < 1:
            return {"rid": msg["rid"], "error": "bad request"}
        store = self.chain.store
        # Raft index first, then the head: a block applied in between makes us claim a lower
        # index for it, and the log re-delivering that block is harmless (already held).
        head_raft = store.applied_raft_index()
        head_height = store.head()[0]
        blocks: list[bytes] = []
        size = 0
        h = start
        while h <= head_height and len(blocks) < XFER_MAX_BLOCKS and size < XFER_MAX_BYTES:
            block = store.block(h)
            if block is None:
                break
            data = canonical(block)
            blocks.append(data)
            size += len(data)
            h += 1
        reply: dict[str, Any] = {"rid": msg["rid"], "blocks": blocks,
                                 "head_height": head_height, "head_raft": head_raft}
        if blocks:
            got = store.checkpoint(h - 1)
            if got is not None:
                reply["checkpoint"] = {"cp": got[0], "sigs": got[1]}
        return reply

    async def _install(self, meta: SnapshotMeta) -> None:
        """Runtime hook: bring the ledger up to Raft index ``meta.index`` by verified block
        transfer from the leader (or any peer) before the log records the snapshot."""
        log.info("catching up to Raft index %d by verified block transfer", meta.index)
        while True:
            leader = self.leader()
            order = ([leader] if leader and leader != self.node_id else []) + [
                p for p in self.peers() if p != leader]
            for peer in order:
                try:
                    if await self._transfer_from(peer):
                        self.chain.note_index(max(self.chain.applied_index, meta.index))
                        self.snapshots_installed += 1
                        log.info("caught up to height %d from %s", self.chain.height, peer)
                        return
                except (TimeoutError, KeyError, ConnectionError, LedgerError, ValueError) as exc:
                    log.warning("block transfer from %s failed: %s", peer, exc)
            await asyncio.sleep(0.5)

    async def _transfer_from(self, peer: str) -> bool:
        """Pull, verify and write blocks from ``peer`` until its head; True when done."""
        while True:
            self._xfer_rid += 1
            rid = self._xfer_rid
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._xfer[rid] = fut
            try:
                await self.transport.send_app(
                    peer, XFER, canonical({"rid": rid, "from": self.chain.height + 1}))
                resp = await asyncio.wait_for(fut, 20)
            finally:
                self._xfer.pop(rid, None)
            if "error" in resp:
                raise ValueError(f"peer refused: {resp['error']}")
            blocks, head_h, head_raft = resp["blocks"], resp["head_height"], resp["head_raft"]
            for data in blocks:
                block = decode(data, max_size=self.chain.params.max_block_bytes + 4096)
                # Apply's lock: a transfer and the apply of already committed entries must
                # never write the store at once.
                async with self.apply_lock:
                    if self.chain.already_holds(block):
                        continue
                    if not self.chain.healthy():
                        raise ValueError(f"this node stopped applying: {self.chain.failure}")
                    bhash, ids = await asyncio.to_thread(self.chain.check, block)
                    height = block["header"]["height"]
                    raft_index = max(self.chain.applied_index,
                                     head_raft if height == head_h else 0)
                    await asyncio.to_thread(self.chain.append, block, bhash, ids, raft_index)
                    if self.after_block is not None:
                        await self.after_block(block["header"], bhash, ids, False)
            self.sync_members()
            if "checkpoint" in resp:
                self._adopt_checkpoint(resp["checkpoint"])
            if self.chain.height >= head_h:
                return True
            if not blocks:
                return False

    def _adopt_checkpoint(self, item: Any) -> None:
        """A peer's cosigned checkpoint of a block we now hold: it must describe our block
        and carry a quorum of the voters in force (else the peer fed us a fork)."""
        cp, sigs = item["cp"], item["sigs"]
        check_checkpoint(cp)
        h = cp["height"]
        if cp != self.chain.checkpoint_body(h):
            raise ValueError(f"the peer's checkpoint at height {h} is not of the blocks it sent")
        need = self.chain.quorum_at(h)
        valid = verify_checkpoint_signatures(cp, sigs, self.chain.voters_at(h))
        if len(valid) < need:
            raise ValueError(f"the peer's checkpoint at height {h} has {len(valid)} of {need} "
                             "voter signatures")
        self.chain.put_checkpoint(cp, [s for s in sigs if s.get("node") in valid])

    def _send(self, peer: str, message: dict[str, Any]) -> object:
        if not self._has_run and (self.logstore.last_index() > 0
                                  or self.logstore.initial_state()[0].term > 0):
            # Before the first message that can depend on durable Raft state (a vote, an
            # acknowledgement: Raft persists both before answering) leaves: from now on an
            # empty Raft store means lost state, not a first start (node/backup.py). A node
            # that only granted pre-votes at term 0 has promised nothing and stays "first".
            from node.backup import mark_has_run

            mark_has_run(self.config.data_dir, self.node_id)
            self._has_run = True
        kind = message.get("type")
        if kind in ("vote", "pre_vote") and (self._catching_up or self._vote_floor is not None):
            term = message.get("term")
            if not isinstance(term, int) or not self._may_campaign(term):
                self.campaigns_suppressed += 1
                return None
        elif (kind in ("vote_resp", "pre_vote_resp") and not message.get("reject")
              and not self._leader_seen):
            self.votes_granted_before_leader += 1
        if self._equivocate and message.get("type") == "app" and message.get("entries"):
            peers = self.peers()
            if peers and peer == peers[-1]:
                message = self._tamper(message)
        return self.transport.send(peer, message)

    def _tamper(self, message: dict[str, Any]) -> dict[str, Any]:
        """Failpoint: the same block re-signed with time + 1 ms, for one follower only."""
        out = dict(message)
        ents = []
        for e in message["entries"]:
            if e.get("type", "normal") == "normal" and e.get("data"):
                data = e["data"]
                alt = self._tampered.get(data)
                if alt is None:
                    block = decode(data, max_size=len(data) + 1)
                    header = dict(block["header"])
                    header["time"] += 1
                    alt = canonical(sign_block(self.chain.signer, self.chain.chain_id, header,
                                               block["entries"]))
                    self._tampered[data] = alt
                e = {**e, "data": alt}
            ents.append(e)
        out["entries"] = ents
        return out
