"""The node's implementation of :class:`api.service.NodeService`.

Submissions (DESIGN §5):

* A batch is all or nothing: every entry is admitted (``ledger.entries.admit``: admission, then
  validity against the applied state) before any is queued; one refusal refuses the batch with
  a 4xx naming its index.
* Replays: an entry already committed answers ``duplicate`` with its original location (and
  receipt once cosigned); a pending one answers as the original would. Nothing is stored twice.
* A follower forwards the batch to the leader over the peer links (channel ``fwd``), never
  redirects; each node then waits for *its own* apply (``wait=commit``) or its own stored quorum
  checkpoint (``wait=receipt``), so an answer is only ever given for what this node holds.
* Leadership lost while waiting (the term moved and the entry did not apply within a grace
  period), or the wait timed out: 503 ``commit_unknown``; the client retries the same envelope.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from api.service import CommitUnknown, NotFound, Unavailable, Wait
from ledger.encoding import canonical, decode
from ledger.entries import entry_id
from ledger.errors import AdmissionError, LedgerError
from node.admission import admit_batch
from node.inspection import InspectionReads

log = logging.getLogger("courtledger.service")

FORWARD = "fwd"
FORWARD_REPLY = "fwd_r"
#: After the term moves, how long a waiter still hopes for its entry to apply.
LEADER_CHANGE_GRACE_S = 2.0


class SubmitRefused(AdmissionError):
    """A forwarded submission the leader refused; keeps the leader's code and status."""

    def __init__(self, code: str, detail: str, status: int) -> None:
        super().__init__(detail)
        self.code = code
        self.status = status


class NodeServiceImpl(InspectionReads):
    """Glue between the HTTP apps and the running node (:class:`node.process.Node`)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.chain = node.chain
        self._commit_waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._receipt_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._fwd: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._rid = itertools.count(1)
        registry = getattr(getattr(node, "metrics", None), "registry", None)
        #: Refused submissions by reason (the error code), so an operator sees forged or
        #: misdirected traffic (issue 11); counted by the internal app's error handler.
        self.refused = Counter(
            "courtledger_submissions_refused", "Submissions refused with a 4xx, by reason",
            ["reason"], registry=registry,
        ) if registry is not None else None

    def on_refused(self, reason: str) -> None:
        """Count one refused submission (``POST /v1/entries`` answered 4xx)."""
        if self.refused is not None:
            self.refused.labels(reason).inc()

    # ------------------------------------------------------------------ NodeService basics

    @property
    def chain_id(self) -> bytes:
        return self.chain.chain_id  # type: ignore[no-any-return]

    @property
    def hash_alg(self) -> str:
        return self.chain.hash_alg  # type: ignore[no-any-return]

    def genesis_frame(self) -> dict[str, Any]:
        genesis = self.chain.genesis
        return {"block": genesis.block, "consortium": genesis.consortium}

    # ------------------------------------------------------------------ notifications

    def notify_applied(self, entry_ids: list[bytes]) -> None:
        """Called by apply: release ``wait=commit`` waiters of these entries."""
        for eid in entry_ids:
            for fut in self._commit_waiters.pop(eid, ()):
                if not fut.done():
                    fut.set_result(None)

    def notify_cosigned(self, height: int) -> None:
        """Called by cosign: release ``wait=receipt`` waiters up to ``height``."""
        for h in [h for h in self._receipt_waiters if h <= height]:
            for fut in self._receipt_waiters.pop(h):
                if not fut.done():
                    fut.set_result(None)

    # ------------------------------------------------------------------ submit

    async def submit(self, envelopes: list[dict[str, Any]], wait: Wait) -> list[dict[str, Any]]:
        node = self.node
        if not self.chain.healthy():
            raise Unavailable(f"this node stopped applying: {self.chain.failure}")
        try:
            ids = [entry_id(self.hash_alg, e["payload"]) for e in envelopes]
        except (LedgerError, KeyError, TypeError) as exc:
            raise AdmissionError(f"not an envelope: {exc}") from None
        # Replays of committed entries answer `duplicate` with the original's location.
        replays = {eid for eid in ids if self.chain.has_entry(eid)}
        if len(replays) < len(set(ids)):
            if node.replicator.is_leader():
                await self.accept(envelopes, ids)
            else:
                await self._forward(envelopes)
        if wait != "none":
            await self._wait(ids, wait)
        out = []
        for eid in ids:
            # A receipt costs an inclusion proof and the consortium proofs: build it when the
            # caller waited for one, or for a replay (which answers with the original's).
            item = self.status_of(eid, with_receipt=wait == "receipt" or eid in replays)
            if eid in replays:
                item["status"] = "duplicate"
            out.append(item)
        return out

    async def accept(
        self, envelopes: list[dict[str, Any]], ids: list[bytes] | None = None
    ) -> list[bytes]:
        """Leader side: admit the whole batch, then queue it (all or nothing).

        The checks (signatures, canonical sizes) run in a worker thread so that the event
        loop, which also drives Raft, keeps its heartbeats; PyNaCl releases the GIL while it
        verifies, so two submissions check in parallel on two cores.
        """
        builder = self.node.builder
        fresh: list[tuple[int, bytes, dict[str, Any]]] = []
        seen: set[bytes] = set()
        for i, env in enumerate(envelopes):
            try:
                eid = ids[i] if ids is not None else entry_id(self.hash_alg, env["payload"])
            except (LedgerError, KeyError, TypeError) as exc:
                raise AdmissionError(f"entries[{i}]: not an envelope ({exc})") from None
            if eid in seen or builder.is_pending(eid):
                continue  # a replay: answered from its original state
            seen.add(eid)
            fresh.append((i, eid, env))
        admitted = await asyncio.to_thread(admit_batch, self.chain, fresh)
        for eid, env, size in admitted:
            builder.add(eid, env, size)
        self.node.metrics.admitted.inc(len(admitted))
        return [eid for eid, _, _ in admitted]

    def status_of(self, eid: bytes, *, with_receipt: bool = True) -> dict[str, Any]:
        """The answer for one entry: committed with location (and receipt once cosigned), or
        accepted."""
        loc = self.chain.entry_location(eid)
        if loc is None:
            return {"entry_id": eid.hex(), "status": "accepted"}
        height, leaf = loc
        out: dict[str, Any] = {"entry_id": eid.hex(), "status": "committed", "height": height,
                               "leaf_index": leaf}
        rec = self.chain.receipt(eid) if with_receipt else None
        if rec is not None:
            out["receipt"] = rec
        return out

    async def _wait(self, ids: list[bytes], wait: Wait) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.node.config.internal.wait_timeout_ms / 1000
        term = self.node.replicator.term()
        missing = [e for e in ids if self.chain.entry_location(e) is None]
        futs = []
        for eid in missing:
            fut = loop.create_future()
            self._commit_waiters.setdefault(eid, []).append(fut)
            futs.append(fut)
        await self._await_all(futs, deadline, term, ids)
        if wait == "receipt":
            heights = {self.chain.entry_location(e)[0] for e in ids}
            rfuts = []
            for h in heights:
                if not self.chain.cosigned(h):
                    fut = loop.create_future()
                    self._receipt_waiters.setdefault(h, []).append(fut)
                    rfuts.append(fut)
            await self._await_all(rfuts, deadline, None, ids)

    async def _await_all(
        self, futs: list[asyncio.Future[None]], deadline: float, term: int | None,
        ids: list[bytes],
    ) -> None:
        loop = asyncio.get_running_loop()
        grace_until: float | None = None
        pending = [f for f in futs if not f.done()]
        while pending:
            now = loop.time()
            if now >= deadline or (grace_until is not None and now >= grace_until):
                for f in pending:
                    f.cancel()
                raise CommitUnknown(
                    "leadership changed or the wait timed out before commit; "
                    "retry the same envelopes"
                    if term is not None else
                    "the checkpoint did not reach its quorum in time; the entries are "
                    "committed; fetch the receipt later"
                )
            done, _ = await asyncio.wait(pending, timeout=min(0.1, deadline - now))
            pending = [f for f in pending if not f.done()]
            if (term is not None and grace_until is None
                    and self.node.replicator.term() != term):
                grace_until = loop.time() + LEADER_CHANGE_GRACE_S
            if not self.chain.healthy():
                raise Unavailable(f"this node stopped applying: {self.chain.failure}")

    # ------------------------------------------------------------------ forwarding

    async def _forward(self, envelopes: list[dict[str, Any]]) -> None:
        """Send the batch to the leader over the peer link and wait for its admission answer."""
        leader = self.node.replicator.leader()
        if leader is None or leader == self.node.config.node_id:
            raise Unavailable("no leader known; retry shortly")
        rid = next(self._rid)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._fwd[rid] = fut
        try:
            await self.node.replicator.send_app(
                leader, FORWARD, canonical({"rid": rid, "entries": envelopes})
            )
            reply = await asyncio.wait_for(fut, timeout=5.0)
        except (TimeoutError, KeyError, ConnectionError) as exc:
            raise CommitUnknown(f"forwarding to leader {leader} failed ({exc!r}); retry") from None
        finally:
            self._fwd.pop(rid, None)
        if "error" in reply:
            raise SubmitRefused(reply["error"], reply["detail"], reply["status"])

    async def forward_quiet(self, envelopes: list[dict[str, Any]]) -> None:
        """Hand queued entries to the leader (builder after losing leadership)."""
        await self._forward(envelopes)

    async def on_app(self, peer: str, channel: str, data: bytes) -> None:
        """Forward requests (leader side) and their replies (follower side)."""
        if channel == FORWARD:
            try:
                msg = decode(data, max_size=self.node.config.internal.max_body_bytes)
                rid, envs = msg["rid"], msg["entries"]
                if not self.node.replicator.is_leader():
                    raise Unavailable("not the leader any more; retry")
                await self.accept(envs)
                reply: dict[str, Any] = {"rid": rid, "ok": True}
            except LedgerError as exc:
                from api.errors import status_of

                reply = {"rid": msg.get("rid", 0) if isinstance(msg, dict) else 0,
                         "error": exc.code, "detail": exc.detail, "status": status_of(exc)}
            except Exception as exc:  # noqa: BLE001 - a peer's bad frame must not kill us
                log.warning("bad forward frame from %s: %s", peer, exc)
                return
            await self.node.replicator.send_app(peer, FORWARD_REPLY, canonical(reply))
        elif channel == FORWARD_REPLY:
            try:
                msg = decode(data, max_size=1 << 16)
                fut = self._fwd.get(msg["rid"])
            except Exception:  # noqa: BLE001
                return
            if fut is not None and not fut.done():
                fut.set_result(msg)

    # ------------------------------------------------------------------ reads

    def entry(self, eid: bytes) -> dict[str, Any]:
        got = self.chain.entry(eid)
        if got is None:
            raise NotFound(f"no committed entry {eid.hex()}")
        return got  # type: ignore[no-any-return]

    def receipt(self, eid: bytes, *, documents_only: bool = False) -> dict[str, Any]:
        got = self.chain.entry(eid)
        if got is None or (documents_only and got["envelope"]["payload"]["kind"] != "document"):
            raise NotFound(f"no anchored {'document' if documents_only else 'entry'} "
                           f"{eid.hex()}")
        rec = self.chain.receipt(eid)
        if rec is None:
            raise NotFound(f"entry {eid.hex()} is committed; its checkpoint is not cosigned yet")
        return rec  # type: ignore[no-any-return]

    def block(self, height: int) -> dict[str, Any]:
        b = self.chain.block(height)
        if b is None:
            raise NotFound(f"no block at height {height}")
        return b  # type: ignore[no-any-return]

    def head(self) -> dict[str, Any]:
        return self.chain.head_info()  # type: ignore[no-any-return]

    def checkpoint(self, tree_size: int | None) -> dict[str, Any]:
        cp = self.chain.checkpoint_file(tree_size)
        if cp is None:
            raise NotFound("no cosigned checkpoint" + (f" at tree size {tree_size}"
                                                        if tree_size is not None else " yet"))
        return cp  # type: ignore[no-any-return]

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        return self.chain.consistency_file(first, second)  # type: ignore[no-any-return]

    def cluster(self) -> dict[str, Any]:
        return self.node.cluster_status()  # type: ignore[no-any-return]

    def ready(self) -> tuple[bool, str]:
        return self.node.readiness()  # type: ignore[no-any-return]

    def on_corruption(self, exc: LedgerError) -> None:
        """A read found stored data that fails its hash check (the apps never serve it)."""
        self.node.raise_alarm("corruption", exc.diagnostics())

    def verify_sha256(self, digest: bytes) -> dict[str, Any]:
        behind = self.node.lag_blocks()
        if behind > self.node.config.public.max_lag_blocks:
            from api.service import Behind

            raise Behind(f"this node is {behind} blocks behind the chain; ask another node")
        return self.chain.verify_document(digest)  # type: ignore[no-any-return]

    def case(self, case_no: str) -> list[dict[str, Any]]:
        return self.chain.case_entries(case_no)  # type: ignore[no-any-return]

    def authenticate(self, token: str) -> str | None:
        return self.node.authenticate(token)  # type: ignore[no-any-return]

    def metrics(self) -> tuple[bytes, str]:
        return generate_latest(self.node.metrics.registry), CONTENT_TYPE_LATEST
