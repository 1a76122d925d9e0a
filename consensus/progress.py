"""The leader's view of each follower: how far it matches, what to send next, flow control.

Modelled on etcd raft's ``tracker.Progress``. A follower is in one of three states:

- ``probe``: the leader does not know where the follower's log matches; it sends one
  append at a time and waits for the answer (or a heartbeat answer) before the next.
- ``replicate``: the follower is known to match; the leader pipelines appends, optimistically
  advancing ``next``, within the in-flight limits (:class:`Inflights`). A slow follower fills
  only its own window, so it slows only itself.
- ``snapshot``: the follower needs entries the leader has compacted; the leader has told it to
  catch up to ``pending_snapshot`` through the application and waits.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Inflights", "Progress", "PROBE", "REPLICATE", "SNAPSHOT"]

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"


class Inflights:
    """Appends sent but not yet acknowledged, bounded in count and in bytes."""

    __slots__ = ("max_msgs", "max_bytes", "_q", "bytes")

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes  # 0 means no byte limit
        self._q: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, last_index: int, size: int) -> None:
        """Record an append whose last entry is ``last_index``."""
        self._q.append((last_index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every append acknowledged by a response up to ``index``."""
        q = self._q
        while q and q[0][0] <= index:
            self.bytes -= q.popleft()[1]

    def free_first_one(self) -> None:
        """Forget the oldest append in flight (a heartbeat answer shows the peer is alive)."""
        if self._q:
            self.bytes -= self._q.popleft()[1]

    def full(self) -> bool:
        """Whether the window is closed."""
        return len(self._q) >= self.max_msgs or (0 < self.max_bytes <= self.bytes)

    def count(self) -> int:
        """Appends in flight."""
        return len(self._q)

    def reset(self) -> None:
        """Forget everything in flight."""
        self._q.clear()
        self.bytes = 0


class Progress:
    """Replication progress of one peer, as the leader sees it."""

    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "recent_active",
        "is_learner",
        "inflights",
    )

    def __init__(self, next_index: int, max_msgs: int, max_bytes: int, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(max_msgs, max_bytes)

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state}, "
            f"learner={self.is_learner}, inflight={self.inflights.count()})"
        )

    def become_probe(self) -> None:
        """Back to probing from ``match + 1`` (or from after a completed snapshot)."""
        if self.state == SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        """The follower matches at ``match``: start pipelining."""
        self.state = REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        """The follower must catch up to the snapshot at ``index`` through the application."""
        self.state = SNAPSHOT
        self.pending_snapshot = index
        self.probe_sent = False
        self.inflights.reset()

    def maybe_update(self, n: int) -> bool:
        """An acknowledgement up to ``n``; returns whether ``match`` moved."""
        updated = n > self.match
        if updated:
            self.match = n
            self.probe_sent = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """An append at ``rejected`` was refused; the follower hints ``hint``. Returns whether
        the refusal was current (stale refusals are ignored)."""
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, size: int) -> None:
        """An append carrying entries up to ``last_index`` (``size`` bytes) was sent."""
        if self.state == REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        elif self.state == PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        """Whether the leader must not send another append now (flow control)."""
        if self.state == PROBE:
            return self.probe_sent
        if self.state == REPLICATE:
            return self.inflights.full()
        return True
