"""Cosigning checkpoints (DESIGN §2 "Checkpoints", §3).

After a voter has itself verified and applied block ``h`` it signs the checkpoint of ``h`` with
its node key and sends the signature to every other voter on the peer links (application
frames, channel ``cosig``). Each voter checks every signature it receives:

* against the sender's node key among the voters in force (a bad signature counts for nothing);
* against **its own** checkpoint of that height: a validly signed checkpoint that differs is
  equivocation — a leader fed different blocks to different followers. The voter stops
  cosigning, raises the alarm and keeps both signed checkpoints as evidence (in memory, in
  ``/v1/cluster`` and in ``<data_dir>/evidence/``). With ``majority`` this is detection within
  one round trip of the exchange; with ``two_thirds`` no quorum can form on either side.

A caught-up voter refuses to cosign a block whose time is off its own clock by more than
``max_clock_skew_ms`` and raises the alarm (a liveness check, not validity, DESIGN §2).
Once a checkpoint holds ``receipt_quorum`` valid voter signatures it is stored; receipts of
its entries become available.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from ledger.checkpoints import (
    check_checkpoint,
    checkpoint_to_json,
    detect_equivocation,
    make_checkpoint,
    sign_checkpoint,
    verify_checkpoint_signatures,
)
from ledger.crypto import Signer
from ledger.encoding import canonical, decode
from ledger.errors import LedgerError

log = logging.getLogger("courtledger.cosign")

CHANNEL = "cosig"
#: Signatures that arrive before their block is applied here wait, up to this many heights.
MAX_EARLY_HEIGHTS = 1024
#: Own checkpoints kept in memory for comparison (older ones are read from the store).
KEEP_HEIGHTS = 4096


class Cosigner:
    """Sign, exchange and collect checkpoint signatures; detect equivocation."""

    def __init__(
        self,
        *,
        chain: Any,
        signer: Signer,
        node_id: str,
        send_all: Callable[[str, bytes], Coroutine[Any, Any, None]],
        send_one: Callable[[str, str, bytes], Awaitable[None]],
        on_quorum: Callable[[int], None],
        alarm: Callable[[str, str], None],
        evidence_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.signer = signer
        self.node_id = node_id
        self.send_all = send_all
        self.send_one = send_one
        self.on_quorum = on_quorum
        self.alarm = alarm
        self.evidence_dir = evidence_dir
        self.clock = clock
        self.own: dict[int, dict[str, Any]] = {}
        self.sigs: dict[int, dict[str, bytes]] = {}
        self.early: dict[int, list[tuple[str, dict[str, Any], bytes]]] = {}
        self.stopped: str | None = None
        self.evidence: list[dict[str, Any]] = []
        self.skew_refusals = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._answered: dict[tuple[str, int], float] = {}
        # Heights whose conflict this node has announced (once each: see _equivocation).
        self._announced: set[int] = set()

    # ------------------------------------------------------------------ own checkpoints

    async def on_applied(self, header: dict[str, Any], block_hash: bytes, caught_up: bool) -> None:
        """Block ``header`` was verified and applied here: sign and send its checkpoint."""
        h = header["height"]
        cp = make_checkpoint(
            self.chain.chain_id, h, block_hash, header["tree_size"], header["root"],
            header["time"],
        )
        self.own[h] = cp
        self.own.pop(h - KEEP_HEIGHTS, None)
        self.sigs.pop(h - KEEP_HEIGHTS, None)
        # A voter *for block h* signs it: the voters in force before h (a node promoted or
        # removed by block h itself changes role only from h + 1, DESIGN §2).
        if self.stopped is None and any(n == self.node_id for n, _ in self.chain.voters_at(h)):
            skew = abs(self.clock() * 1000 - header["time"])
            limit = self.chain.params.max_clock_skew_ms
            if caught_up and skew > limit:
                # DESIGN §2: a caught-up voter refuses to cosign a block whose time is off its
                # own clock by more than max_clock_skew_ms (liveness, not validity).
                self.skew_refusals += 1
                self.alarm("clock_skew", f"block {h} time is {skew:.0f} ms off this node's clock "
                           f"(limit {limit} ms); not cosigning it")
            else:
                sig = sign_checkpoint(self.signer, self.chain.chain_id, cp)
                self._add(h, cp, self.node_id, sig)
                # Sending must not hold up apply (a slow peer link back-pressures app frames).
                task = asyncio.create_task(self.send_all(
                    CHANNEL, canonical({"cp": cp, "node": self.node_id, "sig": sig})))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
        for peer, theirs, sig in self.early.pop(h, []):
            if self._receive(peer, theirs, sig):
                await self._reply(peer, h)

    async def resend(self, heights: list[int]) -> None:
        """Re-send our signatures of recent heights (after a restart, peers lost theirs)."""
        for h in heights:
            cp = self.own.get(h)
            sig = self.sigs.get(h, {}).get(self.node_id)
            if cp is None and sig is None and self.stopped is None and any(
                    n == self.node_id for n, _ in self.chain.voters_at(h)):
                # Restarted (perhaps with a key that update_keys replaced since h): sign
                # again to ask the peers for theirs. Not counted here: a signature by a
                # replaced key is no longer valid for h; the peers' answers make the quorum.
                cp = self.chain.checkpoint_body(h)
                if cp is not None:
                    sig = sign_checkpoint(self.signer, self.chain.chain_id, cp)
            if cp is not None and sig is not None and self.stopped is None:
                await self.send_all(CHANNEL, canonical({"cp": cp, "node": self.node_id,
                                                        "sig": sig}))

    # ------------------------------------------------------------------ peers' signatures

    async def on_frame(self, peer: str, data: bytes) -> None:
        """A ``cosig`` frame from ``peer``: ``{cp, node, sig}``."""
        try:
            msg = decode(data, max_size=4096)
            if not isinstance(msg, dict) or set(msg) != {"cp", "node", "sig"}:
                raise ValueError("a cosig frame is {cp, node, sig}")
            cp, node, sig = msg["cp"], msg["node"], msg["sig"]
            check_checkpoint(cp)
            if node != peer:
                raise ValueError(f"signature of {node!r} relayed by {peer!r}")
            if cp["chain"] != self.chain.chain_id:
                raise ValueError("checkpoint of another chain")
        except (LedgerError, ValueError) as exc:
            log.warning("dropping a cosig frame from %s: %s", peer, exc)
            return
        if self._receive(peer, cp, sig):
            await self._reply(peer, cp["height"])
        elif (self.chain.cosigned(cp["height"])
              and self.clock() - self._answered.get((peer, cp["height"]), 0.0) > 2.0):
            # A peer still asking for a height we completed (it restarted, or its key was
            # replaced since and its signature no longer counts): answer with ours, at most
            # every 2 s per peer and height (an answer may be lost while its link comes up).
            if len(self._answered) > 10_000:
                self._answered.clear()
            self._answered[(peer, cp["height"])] = self.clock()
            await self._reply(peer, cp["height"])

    async def _reply(self, peer: str, h: int) -> None:
        """Answer a peer's first signature of ``h`` with ours: a node that was away (or
        restarted) collects the quorum of heights the others completed without it. Each side
        answers only a signature that is new to it, so the exchange ends after one round."""
        cp = self.own.get(h) or self.chain.checkpoint_body(h)
        sig = self.sigs.get(h, {}).get(self.node_id)
        if cp is None or sig is None or self.stopped is not None:
            return
        try:
            await self.send_one(peer, CHANNEL, canonical({"cp": cp, "node": self.node_id,
                                                          "sig": sig}))
        except Exception as exc:  # noqa: BLE001 - best effort; resend covers the rest
            log.debug("cosig reply to %s failed: %s", peer, exc)

    def _receive(self, peer: str, cp: dict[str, Any], sig: bytes) -> bool:
        """Check and record a peer's signature; True if it was new here."""
        h = cp["height"]
        voters = self.chain.voters_at(h)
        if peer not in verify_checkpoint_signatures(cp, [{"node": peer, "sig": sig}], voters):
            log.warning("invalid checkpoint signature from %s at height %d", peer, h)
            return False
        mine = self.own.get(h)
        if mine is None and h <= self.chain.height:
            mine = self.chain.checkpoint_body(h)
        if mine is None:
            if len(self.early) < MAX_EARLY_HEIGHTS:
                self.early.setdefault(h, []).append((peer, cp, sig))
            return False
        eq = detect_equivocation(mine, cp)
        if eq is not None:
            self._equivocation(peer, mine, cp, sig, eq.detail)
            return False
        return self._add(h, mine, peer, sig)

    def _add(self, h: int, cp: dict[str, Any], node: str, sig: bytes) -> bool:
        got = self.sigs.setdefault(h, {})
        if node in got:
            return False
        got[node] = sig
        voters = self.chain.voters_at(h)
        need = self.chain.quorum_at(h)
        if len(got) >= need and all(n in dict(voters) for n in got):
            sigs = [{"node": n, "sig": s} for n, s in sorted(got.items())]
            self.chain.put_checkpoint(cp, sigs)
            if len(got) == need:
                self.on_quorum(h)
        return True

    def _equivocation(
        self, peer: str, mine: dict[str, Any], theirs: dict[str, Any], sig: bytes, detail: str
    ) -> None:
        if any(e["peer"] == peer and e["ours"]["checkpoint"]["height"] == mine["height"]
               for e in self.evidence):
            return  # this pair is on record already (a peer announces its conflict more than once)
        if self.stopped is None:
            self.stopped = f"equivocation at height {mine['height']} with {peer}: {detail}"
        my_sig = self.sigs.get(mine["height"], {}).get(self.node_id, b"")
        item = {
            "detected_at": int(self.clock() * 1000),
            "peer": peer,
            "detail": detail,
            "ours": {"checkpoint": checkpoint_to_json(mine),
                     "signatures": [{"node": self.node_id, "sig": my_sig.hex()}]},
            "theirs": {"checkpoint": checkpoint_to_json(theirs),
                       "signatures": [{"node": peer, "sig": sig.hex()}]},
        }
        self.evidence.append(item)
        try:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            path = self.evidence_dir / f"equivocation-{mine['height']}-{peer}.json"
            path.write_text(json.dumps(item, indent=2), encoding="utf-8")
        except OSError as exc:
            log.error("cannot write equivocation evidence: %s", exc)
        self.alarm("equivocation", self.stopped)
        self._announce(mine["height"], mine, my_sig)

    def _announce(self, h: int, mine: dict[str, Any], my_sig: bytes) -> None:
        """Send our signature of ``h`` once more to every voter, once per height.

        Our first send may have been lost (app frames are at most once, and links between
        followers come up lazily), and a peer whose quorum completed without us would then
        never compare our checkpoint with its own. Re-sending a signature we already made
        cosigns nothing new; it lets every honest voter see the conflict within one round
        trip of the first detection (DESIGN §2). Once per height, so two detectors do not
        answer each other forever."""
        if h in self._announced:
            return
        if not my_sig:
            # The conflict reached us between storing block h and signing it (apply writes the
            # block before on_applied runs), so we stopped before signing: sign our checkpoint
            # of the block we applied now, for the announcement only (it is not counted here).
            if not any(n == self.node_id for n, _ in self.chain.voters_at(h)):
                return
            my_sig = sign_checkpoint(self.signer, self.chain.chain_id, mine)
        self._announced.add(h)
        frame = canonical({"cp": mine, "node": self.node_id, "sig": my_sig})

        async def announce() -> None:
            # Three sends, 1 s and 2 s apart: a link still coming up may drop the first.
            for pause in (0.0, 1.0, 2.0):
                await asyncio.sleep(pause)
                await self.send_all(CHANNEL, frame)

        task = asyncio.create_task(announce())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
