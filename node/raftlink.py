"""Raft ↔ ledger wiring: the consensus runtime over the mTLS transport as a node Replicator.

* Members and trust anchors come from the consortium state (genesis nodes; their certificates
  are the only anchors, pinned by fingerprint, DESIGN §3); ``[peers]`` overrides addresses.
* The Raft log lives in LevelDB under ``<data_dir>/raft`` (``consensus.logstore``), separate from
  the ledger store: a restore may bring blocks back, never Raft state (DESIGN §4).
* The runtime hands committed entries to an apply callback on its own worker thread; that
  callback runs the node's :class:`node.apply.Applier` on the event loop and waits for it, so
  entries apply strictly in order and the runtime's back-pressure covers apply.
* The log is not compacted yet (``compact_threshold=None``): a lagging node catches up from the
  Raft log. A verified transfer of stored blocks for compacted logs needs the runtime's
  snapshot hook (``Ready.snapshot``), which it does not expose yet.

Test-only failpoint ``equivocate``: the leader re-signs every block it sends to one follower
with a different time, so two followers hold different (individually valid) blocks at one
height; their cosignature exchange must catch it (issue 6 e2e).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from consensus.core import Config, NotLeader, ProposalDropped, RaftCore
from consensus.logstore import LogStore
from consensus.runtime import CommitUnknown, Runtime
from consensus.transport import Member, Transport
from consensus.types import ConfState, Entry, Role
from ledger.blocks import sign_block
from ledger.encoding import canonical, decode
from node.config import NodeConfig
from node.replicator import AppFn, ApplyFn, Committed

log = logging.getLogger("courtledger.raft")


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
            tick_interval=config.raft.tick_ms / 1000, compact_threshold=None,
        )
        self._on_commit: ApplyFn | None = None
        self._app: AppFn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._equivocate = "equivocate" in config.failpoints
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
        await self.runtime.start()

    async def stop(self) -> None:
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

    def _apply_sync(self, entries: list[Entry]) -> None:
        """Runtime's apply thread: run the node's apply on the loop, in order, and wait."""
        assert self._loop is not None and self._on_commit is not None
        for e in entries:
            fut = asyncio.run_coroutine_threadsafe(
                self._on_commit(Committed(e.index, e.term, e.type, e.data)), self._loop
            )
            fut.result()

    # ------------------------------------------------------------------ transport

    def _on_raft(self, peer: str, message: dict[str, Any]) -> None:
        self.runtime.receive(peer, message)

    async def _on_app(self, peer: str, channel: str, data: bytes) -> None:
        if self._app is not None:
            await self._app(peer, channel, data)

    async def send_app(self, peer: str, channel: str, data: bytes) -> None:
        await self.transport.send_app(peer, channel, data)

    def _send(self, peer: str, message: dict[str, Any]) -> object:
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
