"""The asyncio runtime around the pure core: clock, disk, network and the application.

One :class:`Runtime` drives one :class:`~consensus.core.RaftCore`, in etcd's ``raft.Node``
shape.  Inputs reach the core as they arrive, on the event loop: ticks from an injected
:class:`Clock`, messages from the transport (:meth:`Runtime.receive`), proposals
(:meth:`Runtime.propose`).  One loop task takes each ``Ready`` and does, strictly in this order
(the contract written in :class:`consensus.types.Ready`):

1. **persist** the hard state and new entries in one synced batch (:class:`LogStore.save`), on
   a disk thread so that the loop keeps taking messages and proposals meanwhile (they batch into
   the next ``Ready``: many entries per fsync and per AppendEntries);
2. **send** the messages, only once step 1 has returned (Raft §5.2 / Figure 2: term, vote and
   log are on stable storage before any message that depends on them leaves).  One exception,
   the leader's own appends, which do not depend on its copy being durable (Raft thesis
   §10.2.1): see :meth:`Runtime._handle_ready`;
3. **apply**: resolve the proposals that are now committed and queue the committed entries for
   the ``apply`` callback, which runs on its own thread (DESIGN §3: validity checks run off the
   Raft loop so signature checks never stall heartbeats);
4. ``advance``.

Back-pressure goes to the proposers, never to the Raft loop: :meth:`Runtime.propose` waits while
too many proposals are pending or the application is too far behind, and heartbeats continue.

A proposal resolves with its index once committed; fails at once with :class:`NotLeader`
(naming the leader this node knows) on a follower; and fails with :class:`CommitUnknown` when
this node loses leadership before it saw the entry commit (it may still commit: the client
retries the same request, which the node makes idempotent).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .core import NotLeader, ProposalDropped, RaftCore
from .framing import FrameError
from .storage import Storage
from .types import (
    ConfChange,
    Entry,
    HardState,
    MalformedMessage,
    Message,
    MsgType,
    Ready,
    Role,
    SnapshotMeta,
)

__all__ = [
    "ApplyFailed",
    "Clock",
    "CommitUnknown",
    "coalesce",
    "decode_message",
    "encode_message",
    "MockClock",
    "NotLeader",
    "ProposalDropped",
    "RealClock",
    "Runtime",
]

log = logging.getLogger(__name__)


class CommitUnknown(Exception):
    """This node lost leadership (or its entry was replaced) before it saw the commit.

    The entry may or may not be committed; the caller retries the same request (DESIGN §5:
    503 ``commit_unknown``).
    """


class ApplyFailed(Exception):
    """The application's ``apply`` raised; this node applies nothing more (DESIGN §3: a
    committed entry is never skipped), so it takes no more proposals."""


class Clock(Protocol):
    """Time for the runtime, injected so tests can run it virtually (trio's ``MockClock``)."""

    def now(self) -> float:
        """Seconds on this clock's own scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class RealClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        """``loop.time()``."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)


class MockClock:
    """Virtual time: sleepers wake only when a test calls :meth:`advance`.

    Timeout-heavy code (elections, heartbeats) runs instantly and deterministically under it.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._seq = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        """The virtual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time reaches ``now + seconds``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), self._seq, fut))
        await fut

    async def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move time forward by ``seconds`` in ``step``s, letting the loop run between steps."""
        target = self._now + seconds
        while self._now < target:
            self._now = min(self._now + step, target)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)


class WriteStore(Storage, Protocol):
    """The write side the runtime needs (implemented by :class:`~consensus.logstore.LogStore`)."""

    def save(
        self, hard_state: HardState | None, entries: list[Entry], *, sync: bool = True
    ) -> None:
        """Write hard state and entries in one batch; fsync if ``sync``."""
        ...

    def compact(self, index: int, conf: Any) -> None:
        """Drop entries up to ``index``."""
        ...

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by ``meta``."""
        ...


def coalesce(messages: list[Message], max_bytes: int) -> list[Message]:
    """Merge runs of messages to one peer that a Ready produced piecemeal.

    The core, like etcd's, sends an AppendEntries per proposal; under load one Ready holds
    hundreds of one-entry appends to each follower, and answers to each.  Per peer, and only
    across messages with nothing else to that peer between them (so each link still sees its
    messages in order):

    - an append whose ``index``/``log_term`` is the last entry of the previous append (same
      term) is folded into it, up to ``max_bytes`` of entries; the follower checks log matching
      once at the first entry (Raft §5.3) and the rest follow by construction, and its single
      answer frees every in-flight slot up to its index (etcd's ``inflights.FreeLE``);
    - of consecutive accepting append responses of one term only the last (highest index) is
      kept: the leader's progress only moves forward (``maybe_update``), so an earlier accept
      says nothing a later one does not.
    """
    out: list[Message | None] = []
    last: dict[str, int] = {}  # peer -> position in ``out`` of its last mergeable message
    sizes: dict[int, int] = {}
    for m in messages:
        j = last.get(m.to)
        prev = out[j] if j is not None else None
        if m.type == MsgType.APP and m.entries:
            size = sum(e.size() for e in m.entries)
            if (
                prev is not None
                and j is not None
                and prev.type == MsgType.APP
                and prev.term == m.term
                and prev.entries
                and prev.entries[-1].index == m.index
                and prev.entries[-1].term == m.log_term
                and sizes[j] + size <= max_bytes
            ):
                out[j] = Message(
                    MsgType.APP,
                    prev.frm,
                    prev.to,
                    term=prev.term,
                    index=prev.index,
                    log_term=prev.log_term,
                    entries=prev.entries + m.entries,
                    commit=max(prev.commit, m.commit),
                )
                sizes[j] += size
                continue
            last[m.to] = len(out)
            sizes[len(out)] = size
            out.append(m)
        elif m.type == MsgType.APP_RESP and not m.reject:
            if (
                prev is not None
                and j is not None
                and prev.type == MsgType.APP_RESP
                and not prev.reject
                and prev.term == m.term
                and prev.index <= m.index
            ):
                out[j] = None
            last[m.to] = len(out)
            out.append(m)
        else:
            last.pop(m.to, None)
            out.append(m)
    return [m for m in out if m is not None]


_MSG_INT = ("term", "log_term", "index", "commit", "reject_hint")
_MSG_KEYS = frozenset({"type", "frm", "to", "entries", "reject", "context", *_MSG_INT})
_ENTRY_KEYS = frozenset({"term", "index", "type", "data"})


def _nat(v: object) -> bool:
    return type(v) is int and v >= 0


def decode_message(d: object) -> Message:
    """``Message.from_dict`` with a fast path for the common shapes (appends, votes, answers).

    A follower decodes every replicated entry; the generic, reflective ``from_dict`` costs
    ~25 µs an entry, this ~2 µs.  It accepts exactly what ``from_dict`` accepts (same required
    fields, no extra ones, ints non-negative and not bool, the types' own ``_validate``), and
    hands anything unusual (a snapshot, a conf change, any doubt) to ``from_dict`` itself, so
    the error messages and the rules stay in one place (``consensus/types.py``).  A test
    compares the two on generated input.
    """
    if (
        type(d) is dict
        and d.keys() == _MSG_KEYS
        and type(d["type"]) is str
        and type(d["frm"]) is str
        and type(d["to"]) is str
        and type(d["reject"]) is bool
        and type(d["context"]) is bytes
        and type(d["entries"]) is list
        and all(_nat(d[k]) for k in _MSG_INT)
    ):
        entries: list[Entry] = []
        for e in d["entries"]:
            if not (
                type(e) is dict
                and e.keys() == _ENTRY_KEYS
                and _nat(e["term"])
                and _nat(e["index"])
                and type(e["type"]) is str
                and type(e["data"]) is bytes
            ):
                return Message.from_dict(d)
            entry = Entry(e["term"], e["index"], e["type"], e["data"])
            entry._validate()
            entries.append(entry)
        m = Message(
            d["type"],
            d["frm"],
            d["to"],
            term=d["term"],
            log_term=d["log_term"],
            index=d["index"],
            entries=entries,
            commit=d["commit"],
            reject=d["reject"],
            reject_hint=d["reject_hint"],
            context=d["context"],
        )
        m._validate()
        return m
    return Message.from_dict(d)


def encode_message(m: Message) -> dict[str, Any]:
    """``m.to_dict()``, without reflection for the common shapes (see :func:`decode_message`)."""
    if m.snapshot is not None or any(e.change is not None for e in m.entries):
        return m.to_dict()
    return {
        "type": m.type,
        "frm": m.frm,
        "to": m.to,
        "term": m.term,
        "log_term": m.log_term,
        "index": m.index,
        "entries": [
            {"term": e.term, "index": e.index, "type": e.type, "data": e.data} for e in m.entries
        ],
        "commit": m.commit,
        "reject": m.reject,
        "reject_hint": m.reject_hint,
        "context": m.context,
    }


Sender = Callable[[str, dict[str, Any]], object]
Applier = Callable[[list[Entry]], None]


class Runtime:
    """Drives one core with real (or mock) time, a store, a transport and an application."""

    def __init__(
        self,
        core: RaftCore,
        store: WriteStore,
        send: Sender,
        apply: Applier,
        *,
        clock: Clock | None = None,
        tick_interval: float = 0.1,
        apply_in_executor: bool = True,
        max_pending: int = 4096,
        max_apply_backlog: int = 8192,
        compact_threshold: int | None = None,
        compact_retain: int = 1000,
        on_leader_change: Callable[[str, int], None] | None = None,
        install_snapshot: Callable[[SnapshotMeta], Awaitable[None]] | None = None,
    ) -> None:
        """``send(peer, message_dict)`` hands a message to the transport; ``apply(entries)`` is
        called with committed entries in index order, one batch at a time, on a worker thread
        when ``apply_in_executor``.  ``compact_threshold``: once that many applied entries are
        stored, compact up to the applied index minus ``compact_retain`` (None: never).
        ``install_snapshot(meta)`` is awaited when the leader has compacted entries this node
        lacks: it must bring the application's own data up to ``meta.index`` (the node's
        verified block transfer, DESIGN §3) before the log records the snapshot; without it
        such a Ready stops the runtime."""
        self.core = core
        self.store = store
        self._send = send
        self._apply = apply
        self.clock: Clock = clock or RealClock()
        self.tick_interval = tick_interval
        self._apply_in_executor = apply_in_executor
        self._max_pending = max_pending
        self._max_apply_backlog = max_apply_backlog
        self._compact_threshold = compact_threshold
        self._compact_retain = compact_retain
        self._on_leader_change = on_leader_change
        self._install_snapshot = install_snapshot
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_seq = 0
        self._disk = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raft-disk")
        self._applier = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raft-apply")
        self._pending: dict[int, tuple[int, asyncio.Future[int]]] = {}
        self._apply_queue: collections.deque[list[Entry]] = collections.deque()
        self._apply_backlog = 0
        self._wake = asyncio.Event()
        self._apply_wake = asyncio.Event()
        # Proposers waiting for room, woken first come first served, only as many as fit
        # (an Event would wake them all on every commit: quadratic with thousands waiting).
        self._room_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._applied_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._in_ready = False
        hs, _ = store.initial_state()
        self._durable_term_vote = (hs.term, hs.vote)
        self._failed: BaseException | None = None
        #: Set when the ``apply`` callback raised: applying has stopped for good.
        self.apply_error: Exception | None = None
        self.applied_index = core.log.applied
        self.leader = core.lead
        self.role = core.role
        self.counters: collections.Counter[str] = collections.Counter()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the tick, Ready and apply tasks."""
        self._tasks = [
            asyncio.create_task(self._ticker(), name=f"raft-tick-{self.core.id}"),
            asyncio.create_task(self._run(), name=f"raft-ready-{self.core.id}"),
            asyncio.create_task(self._apply_loop(), name=f"raft-apply-{self.core.id}"),
        ]

    async def stop(self) -> None:
        """Stop cleanly: finish the Ready in hand (a half-done persist must not be abandoned),
        fail pending proposals with :class:`CommitUnknown`, stop the threads."""
        self._stopping = True
        self._wake.set()
        self._apply_wake.set()
        if self._tasks:
            ticker, run, applier = self._tasks
            ticker.cancel()
            for task in (run, applier):
                try:
                    await asyncio.wait_for(task, 30)
                except (asyncio.CancelledError, TimeoutError, Exception):
                    log.exception("%s: runtime task did not stop cleanly", self.core.id)
            await asyncio.gather(ticker, return_exceptions=True)
        self._fail_pending(CommitUnknown("the runtime stopped"))
        self._disk.shutdown(wait=True)
        self._applier.shutdown(wait=True)

    # -- inputs ------------------------------------------------------------------------------

    def receive(self, peer: str, message: dict[str, Any]) -> None:
        """Transport callback: one Raft message from authenticated ``peer``.

        Raises :class:`FrameError` (the transport counts it and closes the connection) if the
        message does not decode, claims another sender than the certificate proved, or is not
        addressed to us: a member must not be able to speak for another.
        """
        try:
            m = decode_message(message)
        except MalformedMessage as exc:
            raise FrameError(f"bad raft message: {exc}") from exc
        if m.frm != peer:
            raise FrameError(f"raft message claims to be from {m.frm!r} but {peer!r} sent it")
        if m.to != self.core.id:
            raise FrameError(f"raft message for {m.to!r} arrived at {self.core.id!r}")
        if self._stopping or self._failed is not None:
            return  # a runtime that cannot persist must not take part any more
        self.core.step(m)
        self._wake.set()

    async def propose(self, data: bytes) -> int:
        """Propose a ``normal`` entry; returns its index once committed.

        Raises :class:`NotLeader` at once on a follower, :class:`ProposalDropped` during a
        leadership transfer, :class:`CommitUnknown` if leadership is lost first.
        """
        return await self._propose(lambda: self.core.propose(data))

    async def propose_conf_change(self, change: ConfChange, data: bytes) -> int:
        """Propose a membership change (see :meth:`RaftCore.propose_conf_change`)."""
        return await self._propose(lambda: self.core.propose_conf_change(change, data))

    async def _propose(self, append: Callable[[], int]) -> int:
        if self._failed is not None:
            raise CommitUnknown(f"the runtime failed: {self._failed!r}")
        if self.apply_error is not None:
            raise ApplyFailed(f"applying stopped: {self.apply_error!r}")
        while not self._has_room():
            if self.apply_error is not None:
                raise ApplyFailed(f"applying stopped: {self.apply_error!r}")
            # Back-pressure on the proposer, never on the Raft loop.
            if self.core.role != Role.LEADER:
                break  # let core.propose raise NotLeader at once
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            await waiter
        if self._stopping:
            raise CommitUnknown("the runtime is stopping")
        index = append()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[index] = (self.core.term, fut)
        self._wake.set()
        return await fut

    def _wake_room(self, everyone: bool = False) -> None:
        if everyone:
            n = len(self._room_waiters)
        elif self._apply_backlog >= self._max_apply_backlog:
            n = 0
        else:
            n = self._max_pending - len(self._pending)
        while n > 0 and self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def _has_room(self) -> bool:
        return (
            len(self._pending) < self._max_pending and self._apply_backlog < self._max_apply_backlog
        )

    async def read_index(self) -> int:
        """A linearizable read point (Raft thesis §6.4): returns an index once this node has
        confirmed it still leads and the application has applied up to that index; reads
        served after it see every write committed before the call.  Raises
        :class:`NotLeader` at once on a follower, :class:`CommitUnknown` if leadership is
        lost first."""
        self._read_seq += 1
        ctx = self._read_seq.to_bytes(8, "big")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.core.read_index(ctx)  # raises NotLeader
        self._reads[ctx] = fut
        self._wake.set()
        index = await fut
        await self.wait_applied(index)
        return index

    async def wait_applied(self, index: int) -> None:
        """Wait until the application has applied ``index`` (:class:`ApplyFailed` if applying
        has stopped)."""
        while self.applied_index < index:
            if self.apply_error is not None:
                raise ApplyFailed(f"applying stopped: {self.apply_error!r}")
            self._applied_event.clear()
            await self._applied_event.wait()

    @property
    def busy(self) -> bool:
        """Whether the Raft loop has work in hand (for tests on virtual time, which wait for
        the disk thread before moving the clock on)."""
        return self._failed is None and (
            self._in_ready or self.core.has_ready() or self._wake.is_set()
        )

    def status(self) -> dict[str, object]:
        """The core's status plus the runtime's view (applied by the application, pending)."""
        status = self.core.status()
        status["app_applied"] = self.applied_index
        status["pending"] = len(self._pending)
        return status

    # -- the loops ---------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while not self._stopping:
            await self.clock.sleep(self.tick_interval)
            self.core.tick()
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                while not self._stopping and self.core.has_ready():
                    rd = self.core.ready()
                    if rd is None:
                        break
                    self._in_ready = True
                    await self._handle_ready(loop, rd)
                    self.core.advance(rd)
                    self._in_ready = False
                    self._maybe_compact()
        except Exception as exc:
            # A disk error leaves us unable to keep Raft's promises: stop taking part.
            self._failed = exc
            log.exception("%s: Raft runtime stopped on an error", self.core.id)
            self._fail_pending(CommitUnknown(f"the runtime failed: {exc!r}"))

    async def _handle_ready(self, loop: asyncio.AbstractEventLoop, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._soft_state_changed(rd.soft_state.leader, rd.soft_state.role)
        if rd.snapshot is not None:
            # Ready step 1: the application holds the data up to the snapshot before the log
            # says so, or a crash in between would leave a log that skips entries.
            meta = rd.snapshot
            if self._install_snapshot is None:
                raise RuntimeError(f"snapshot to {meta.index} received but no install hook")
            # Entries committed before the snapshot are applied first, so the application
            # sees its data move forward in order and nothing is applied twice.
            if self._apply_queue:
                await self.wait_applied(self._apply_queue[-1][-1].index)
            await self._install_snapshot(meta)
            await loop.run_in_executor(self._disk, lambda: self.store.apply_snapshot(meta))
            self.applied_index = max(self.applied_index, meta.index)
            self._applied_event.set()
            self.counters["snapshots"] += 1
        messages = coalesce(rd.messages, self.core.cfg.max_size_per_msg)
        hs = rd.hard_state
        if (
            self.role == Role.LEADER
            and (hs is None or (hs.term, hs.vote) == self._durable_term_vote)
            and (rd.entries or hs is not None)
        ):
            # The one exception to persist-then-send (Raft thesis §10.2.1; etcd's Ready doc:
            # "messages may be sent while entries from the same batch are being persisted"):
            # a leader whose term and vote are already durable may replicate its new entries
            # while it writes them, because it counts its own copy towards a quorum only after
            # the write (RaftCore.advance).  Anything else waits for the fsync.
            early = [m for m in messages if m.type in (MsgType.APP, MsgType.HEARTBEAT)]
            messages = [m for m in messages if m.type not in (MsgType.APP, MsgType.HEARTBEAT)]
            for m in early:
                self._send(m.to, encode_message(m))
        # 1. persist (Raft §5.2 / Figure 2): everything below depends on it.
        if hs is not None or rd.entries:
            self.counters["saves"] += 1
            await loop.run_in_executor(
                self._disk, lambda: self.store.save(hs, rd.entries, sync=rd.must_sync)
            )
            if hs is not None:
                self._durable_term_vote = (hs.term, hs.vote)
        # 2. send, only now.
        for m in messages:
            self._send(m.to, encode_message(m))
        # 3. resolve commits and hand entries to the application.
        if rd.committed_entries:
            self._committed(rd.committed_entries)
        for rs in rd.read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)

    def _soft_state_changed(self, leader: str, role: str) -> None:
        was_leader = self.role == Role.LEADER
        changed = leader != self.leader
        self.leader, self.role = leader, role
        if was_leader and role != Role.LEADER:
            # Leadership lost: what we proposed may or may not commit under the next leader.
            self._fail_pending(CommitUnknown(f"leadership lost (new leader: {leader or '?'})"))
        if changed and self._on_leader_change is not None:
            self._on_leader_change(leader, self.core.term)
        self._wake_room(everyone=True)  # waiting proposers fail fast with NotLeader

    def _committed(self, entries: list[Entry]) -> None:
        for entry in entries:
            waiter = self._pending.pop(entry.index, None)
            if waiter is None:
                continue
            term, fut = waiter
            if fut.done():
                continue
            if entry.term == term:
                fut.set_result(entry.index)
            else:
                fut.set_exception(
                    CommitUnknown(f"entry {entry.index} was replaced by one of term {entry.term}")
                )
        self._apply_queue.append(entries)
        self._apply_backlog += len(entries)
        self._apply_wake.set()
        self._wake_room()

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for _, fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
        reads, self._reads = self._reads, {}
        for read in reads.values():
            if not read.done():
                read.set_exception(exc)
        self._wake_room(everyone=True)

    async def _apply_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._apply_queue:
                if self._stopping:
                    return
                self._apply_wake.clear()
                await self._apply_wake.wait()
                continue
            batch = self._apply_queue[0]
            try:
                if self._apply_in_executor:
                    await loop.run_in_executor(self._applier, self._apply, batch)
                else:
                    self._apply(batch)
            except Exception as exc:
                # A committed entry is never skipped (DESIGN §3): applying stops here, the
                # batch stays queued, and proposals are refused; Raft itself goes on.
                self.apply_error = exc
                log.exception("%s: apply failed at index %d", self.core.id, batch[0].index)
                self._wake_room(everyone=True)
                self._applied_event.set()  # waiters see the error
                return
            self._apply_queue.popleft()
            self.applied_index = batch[-1].index
            self._apply_backlog -= len(batch)
            self._applied_event.set()
            self._wake_room()

    def _maybe_compact(self) -> None:
        # Compaction up to the applied index (DESIGN §3: the ledger store is the snapshot).
        # Done here, between Readies, on the loop: the core reads storage on the loop and the
        # disk thread is idle, so nobody sees the log half compacted.
        if self._compact_threshold is None:
            return
        # ``compact_retain`` entries stay so a briefly lagging follower catches up from the log
        # rather than by a transfer.  The membership recorded is the one in force now; any
        # conf change between ``upto`` and now is replayed on restart, and replaying one is
        # idempotent (add/promote/remove of the same node).
        upto = min(self.applied_index, self.core.log.applied) - self._compact_retain
        if upto - self.store.first_index() + 1 < self._compact_threshold:
            return
        self.store.compact(upto, self.core.conf_state())
        self.counters["compactions"] += 1
