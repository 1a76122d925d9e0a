"""One court node, composed: chain store, replicator, builder, apply, cosign, service.

:class:`Node` owns the pieces and the callbacks between them; :mod:`node.main` runs it with the
HTTP listeners and signal handling. The order of events for one block:

1. ``service.accept`` admits entries on the leader and queues them in the builder;
2. the builder builds and signs block ``h+1`` and proposes it to the replicator;
3. the replicator commits it and calls :meth:`Applier.on_commit` on every node;
4. apply checks validity off the loop, writes the block, then :meth:`Node.after_apply`
   releases ``wait=commit`` waiters, clears the builder's in-flight block and cosigns;
5. once the checkpoint has its quorum the store keeps it and ``wait=receipt`` waiters go.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import tomllib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from ledger.crypto import Ed25519Signer
from ledger.genesis import load_genesis
from node.apply import Applier
from node.builder import BlockBuilder
from node.chain import Chain
from node.config import NodeConfig
from node.cosign import CHANNEL as COSIGN_CHANNEL
from node.cosign import Cosigner
from node.inspection import InspectionWorker
from node.service import FORWARD, FORWARD_REPLY, NodeServiceImpl

log = logging.getLogger("courtledger.node")
#: Seconds a node must have stayed near the commit index before its clock judges block times
#: (see ``Node._caught_up``).
SETTLE_S = 5.0


class Metrics:
    """The node's Prometheus metrics (one registry per node, so tests can run several)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.admitted = Counter("courtledger_entries_admitted", "Entries admitted", registry=r)
        self.blocks_applied = Counter("courtledger_blocks_applied", "Blocks applied", registry=r)
        self.entries_applied = Counter("courtledger_entries_applied", "Entries applied",
                                       registry=r)
        self.apply_seconds = Histogram("courtledger_apply_seconds",
                                       "Time to verify and write one block", registry=r)
        self.height = Gauge("courtledger_applied_height", "Applied block height", registry=r)
        self.cosigned_height = Gauge("courtledger_cosigned_height",
                                     "Height of the latest checkpoint with a quorum", registry=r)
        self.pending = Gauge("courtledger_pending_entries", "Entries queued or in flight",
                             registry=r)
        self.is_leader = Gauge("courtledger_is_leader", "1 on the Raft leader", registry=r)
        self.alarm = Gauge("courtledger_alarm", "1 while an alarm is raised", ["alarm"],
                           registry=r)


class PeerLinkCollector:
    """``courtledger_peer_refused_total`` and ``courtledger_peer_frames_malformed_total``,
    read from the peer transport's own counters at scrape time (consensus/transport.py).

    A refused peer is a connection from outside the consortium, or from a node whose
    certificate is no longer pinned: removed by a ``membership`` entry, or replaced by
    ``update_keys`` (DESIGN §3). A rising count is someone knocking who is not a member.
    """

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Any:
        transport = getattr(self.node.replicator, "transport", None)
        counters = getattr(transport, "counters", {})
        for name, key, doc in (
                ("courtledger_peer_refused", "refused",
                 "Peer connections refused: no or an unpinned certificate (outside the "
                 "consortium, removed, or replaced by update_keys)"),
                ("courtledger_peer_frames_malformed", "malformed",
                 "Peer frames that did not parse (the connection was closed)")):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(counters.get(key, 0)))
            yield family


def load_tokens(path: Any) -> dict[str, str]:
    """``tokens.toml``: SHA-256 of each bearer token → identity id."""
    if path is None:
        return {}
    with open(path, "rb") as f:
        data = tomllib.load(f)
    tokens = data.get("tokens", {})
    return {str(k): str(v) for k, v in tokens.items()}


class Node:
    """A running court node (without its HTTP listeners)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis = load_genesis(config.genesis)
        self.signer = Ed25519Signer.from_file(config.node_key)
        self.metrics = Metrics()
        self.alarms: dict[str, str] = {}
        self._near_commit_since: float | None = None
        self.chain = Chain.open(config.data_dir / "ledger", self.genesis)
        self.chain.signer = self.signer
        self.chain.node_id = config.node_id
        me = self.chain.state.node(config.node_id)
        if me is None:
            raise ValueError(f"node_id {config.node_id!r} is not a node of the genesis file")
        if me.public_key != self.signer.public_key():
            raise ValueError(f"node_key does not match the genesis key of {config.node_id}")
        self.tokens = load_tokens(config.tokens)
        self.replicator = self._make_replicator()
        self.metrics.registry.register(PeerLinkCollector(self))
        self.service = NodeServiceImpl(self)
        self.builder = BlockBuilder(
            chain=self.chain, replicator=self.replicator, config=config.builder,
            forward=self.service.forward_quiet,
        )
        self.cosigner = Cosigner(
            chain=self.chain, signer=self.signer, node_id=config.node_id,
            send_all=self.send_all, send_one=self.send_one, on_quorum=self._on_quorum,
            alarm=self.raise_alarm,
            evidence_dir=config.data_dir / "evidence",
        )
        self.applier = Applier(
            chain=self.chain, after_apply=self.after_apply, alarm=self.raise_alarm,
            caught_up=self._caught_up, metrics=self.metrics,
        )
        # The closed-case inspection over applied blocks (derived state; ``[inspection]``).
        settings = getattr(config, "inspection", None)
        self.inspection: InspectionWorker | None = None
        if settings is None or settings.enabled:
            self.inspection = InspectionWorker(self, settings)
        if hasattr(self.replicator, "after_block"):
            self.replicator.after_block = self.after_apply
            self.replicator.apply_lock = self.applier.lock
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()

    def _make_replicator(self) -> Any:
        voters = self.chain.state.voters()
        if len(self.chain.state.nodes()) == 1 and len(voters) == 1:
            from node.replicator import SoloReplicator

            return SoloReplicator(self.config.node_id)
        from node.raftlink import RaftReplicator

        return RaftReplicator(self.config, self.chain, self.metrics)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start consensus and the builder; resume from the stored head."""
        self.metrics.height.set(self.chain.height)
        await self.replicator.start(self.applier.on_commit, self.on_app, self.chain.applied_index)
        self._tasks.append(asyncio.create_task(self.builder.run(), name="builder"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.inspection is not None:
            self._tasks.append(asyncio.create_task(self.inspection.run(), name="inspection"))

    async def stop(self) -> None:
        """Stop cleanly: builder, consensus, then the store."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.replicator.stop()
        self.chain.close()

    async def _housekeeping(self) -> None:
        """Metrics, builder wake-ups on leadership change, and re-sending cosignatures of the
        recent heights that lack a quorum (a peer that restarted lost what it had)."""
        was_leader = False
        tick = 0
        while True:
            await asyncio.sleep(0.1)
            tick += 1
            leader = self.replicator.is_leader()
            self.metrics.is_leader.set(1 if leader else 0)
            self.metrics.pending.set(self.builder.pending_count())
            if leader != was_leader or self.builder.queue:
                self.builder.wake()
            was_leader = leader
            if tick % 10 == 0:
                lacking = [h for h in range(max(1, self.chain.height - 20), self.chain.height + 1)
                           if not self.chain.cosigned(h)]
                if lacking:
                    await self.cosigner.resend(lacking)

    # ------------------------------------------------------------------ callbacks

    async def after_apply(
        self, header: dict[str, Any], bhash: bytes, ids: list[bytes], caught_up: bool
    ) -> None:
        """A block was verified and written: release waiters, free the builder, cosign."""
        self.metrics.height.set(header["height"])
        self.service.notify_applied(ids)
        self.builder.on_applied(header["height"], bhash, ids)
        if self.inspection is not None:
            self.inspection.on_applied(header["height"])
        await self.cosigner.on_applied(header, bhash, caught_up)

    def _on_quorum(self, height: int) -> None:
        self.metrics.cosigned_height.set(self.chain.cosigned_height)
        self.service.notify_cosigned(height)

    def _caught_up(self, index: int) -> bool:
        """Whether this node applies the block at Raft ``index`` as it arrives, so that its
        clock may judge the block's time (DESIGN §2: "its own clock at receipt").

        Near the commit index is not enough: a node back from a long absence applies the last
        blocks of its backlog near the commit index too, long after their time, and would
        refuse to cosign them as skewed (then never collect their checkpoints). So a node
        counts as caught up only once it has stayed near the commit index for
        :data:`SETTLE_S`; the blocks at the end of a backlog fall inside that window.
        """
        now = time.monotonic()
        if self.replicator.commit_index() - index > 2:
            self._near_commit_since = None
            return False
        if self._near_commit_since is None:
            self._near_commit_since = now
        return now - self._near_commit_since >= SETTLE_S

    async def send_all(self, channel: str, data: bytes) -> None:
        """Send an application frame to every other voter (best effort)."""
        for peer in self.replicator.peers():
            try:
                await asyncio.wait_for(self.replicator.send_app(peer, channel, data), 1.0)
            except (TimeoutError, KeyError, ConnectionError) as exc:
                log.debug("app frame to %s not sent: %s", peer, exc)

    async def send_one(self, peer: str, channel: str, data: bytes) -> None:
        """Send an application frame to one peer (best effort, bounded wait)."""
        await asyncio.wait_for(self.replicator.send_app(peer, channel, data), 1.0)

    async def on_app(self, peer: str, channel: str, data: bytes) -> None:
        """Route an application frame from a peer."""
        if channel == COSIGN_CHANNEL:
            await self.cosigner.on_frame(peer, data)
        elif channel in (FORWARD, FORWARD_REPLY):
            await self.service.on_app(peer, channel, data)
        else:
            handler = getattr(self.replicator, "on_app", None)
            if handler is not None:
                await handler(peer, channel, data)

    def raise_alarm(self, name: str, detail: str) -> None:
        """Raise an alarm: logged, in metrics, in ``/v1/cluster``."""
        if self.alarms.get(name) != detail:
            log.error("ALARM %s: %s", name, detail)
        self.alarms[name] = detail
        self.metrics.alarm.labels(name).set(1)

    # ------------------------------------------------------------------ status

    def readiness(self) -> tuple[bool, str]:
        """Ready unless applying stopped, cosigning stopped on equivocation, stored data failed its
        hash check, or no leader is known."""
        if not self.chain.healthy():
            return False, f"applying stopped: {self.chain.failure}"
        if self.cosigner.stopped:
            return False, f"cosigning stopped: {self.cosigner.stopped}"
        if "corruption" in self.alarms:
            # Stored data failed its hash check: answers from this copy cannot be trusted
            # until the node is restored from a backup or a peer (docs/operations.md).
            return False, f"stored data is damaged: {self.alarms['corruption']}"
        if self.replicator.leader() is None:
            return False, "no leader known"
        return True, "ready"

    def lag_blocks(self) -> int:
        """How far apply trails the known commit (Raft entries ~ blocks)."""
        return max(0, int(self.replicator.commit_index()) - self.chain.applied_index)

    def authenticate(self, token: str) -> str | None:
        """The identity of a bearer token (tokens are stored as SHA-256 digests)."""
        return self.tokens.get(hashlib.sha256(token.encode("utf-8", "replace")).hexdigest())

    def cluster_status(self) -> dict[str, Any]:
        """``GET /v1/cluster``."""
        return {
            "node": self.config.node_id,
            "leader": self.replicator.leader(),
            "term": self.replicator.term(),
            "commit_index": self.replicator.commit_index(),
            "applied_index": self.chain.applied_index,
            "applied_height": self.chain.height,
            "cosigned_height": self.chain.cosigned_height,
            "pending": self.builder.pending_count(),
            "members": self.replicator.members(),
            "mode": "single-node" if self.replicator.peers() == [] else "raft",
            "chain_id": self.chain.chain_id.hex(),
            "alarms": [f"{k}: {v}" for k, v in sorted(self.alarms.items())],
            "cosigning": "stopped" if self.cosigner.stopped else "on",
            "snapshots_installed": getattr(self.replicator, "snapshots_installed", 0),
            "raft": self.replicator.log_status() if hasattr(self.replicator, "log_status")
            else {},
            "evidence": self.cosigner.evidence,
        }
