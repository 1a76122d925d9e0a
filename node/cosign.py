"""Cosigning checkpoints (DESIGN §2 "Checkpoints", §3).

After a voter has itself verified and applied block ``h`` it signs the checkpoint of ``h`` with
its node key and sends the signature to every other voter on the peer links (application
frames, channel ``cosig``). Each voter checks every signature it receives:

* against the sender's node key among the voters in force (a bad signature counts for nothing);
* against **its own** checkpoint of that height: a validly signed checkpoint that differs is
  equivocation — a leader fed different blocks to different followers. The voter stops
  cosigning, raises the alarm and keeps both signed checkpoints as evidence (in memory, in
  ``/v1/cluster`` and in ``<data_dir>/evidence/equivocation-<height>-<peer>.json``, a
  ``courtledger-equivocation/1`` file that ``courtledger audit consistency`` checks offline).
  It then announces its own signed checkpoint once more to every voter, with its block header
  and the proposer's signature of it, so each peer's evidence holds both of the proposer's
  headers and names it. With ``majority`` this is detection within one round trip of the
  exchange; with ``two_thirds`` no quorum can form on either side.

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

from ledger.blocks import block_hash
from ledger.checkpoints import (
    check_checkpoint,
    check_header,
    detect_equivocation,
    equivocation_to_file,
    header_to_json,
    make_checkpoint,
    sign_checkpoint,
    verify_checkpoint_signatures,
)
from ledger.crypto import TAG_BLOCK, Signer, verify_object
from ledger.encoding import canonical, decode
from ledger.errors import LedgerError, SignatureError

log = logging.getLogger("courtledger.cosign")

CHANNEL = "cosig"
#: Signatures that arrive before their block is applied here wait, up to this many heights.
MAX_EARLY_HEIGHTS = 1024
#: ... and at most this many signatures wait per height (peers resend; voters are few).
MAX_EARLY_PER_HEIGHT = 32
#: Own checkpoints kept in memory for comparison (older ones are read from the store).
KEEP_HEIGHTS = 4096
#: A cosig frame's fields; an announcement (see Cosigner._announce) adds the header ones.
_FRAME = frozenset({"cp", "node", "sig"})
_FRAME_HEADER = frozenset({"header", "hsig"})
#: A block header with its proposer's signature.
_Header = tuple[dict[str, Any], bytes]


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
        self.early: dict[int, list[tuple[str, dict[str, Any], bytes, _Header | None]]] = {}
        self.stopped: str | None = None
        self.evidence: list[dict[str, Any]] = []
        self.skew_refusals = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._answered: dict[tuple[str, int], float] = {}
        # Heights whose conflict this node has announced (once each: see _equivocation).
        self._announced: set[int] = set()
        # Heights we refused to cosign (clock skew): never signed later either.
        self._refused: set[int] = set()
        # The evidence on record per (peer, height), and the file it is kept in.
        self._evidence_at: dict[tuple[str, int], tuple[dict[str, Any], Path]] = {}

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
                self._refused.add(h)
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
        for peer, theirs, sig, hdr in self.early.pop(h, []):
            if self._receive(peer, theirs, sig, hdr):
                await self._reply(peer, h)

    async def resend(self, heights: list[int]) -> None:
        """Re-send our signatures of recent heights that lack a quorum here (called every
        second by the node's housekeeping): a frame lost while a link came up, or a restart
        here, must not leave a height without its checkpoint. Each peer answers with its own
        signature (:meth:`on_frame`), from memory or from its store."""
        for h in heights:
            if self.stopped is not None:
                return
            cp = self.own.get(h)
            sig = self.sigs.get(h, {}).get(self.node_id)
            if sig is None and self._may_sign_again(h):
                # Restarted since we applied h: sign our checkpoint of it again (we verified
                # and applied that block, so this is the signature we made before).
                cp = cp or self.chain.checkpoint_body(h)
                if cp is None:
                    continue
                sig = sign_checkpoint(self.signer, self.chain.chain_id, cp)
                if self._key_in_force(h):
                    # It counts towards h's quorum here too. A key that update_keys replaced
                    # since h does not (its signature is not valid for h): then it is sent
                    # again each time only to ask the peers for theirs, which alone make
                    # the quorum.
                    self.own[h] = cp
                    self._add(h, cp, self.node_id, sig)
            if cp is not None and sig is not None:
                await self.send_all(CHANNEL, canonical({"cp": cp, "node": self.node_id,
                                                        "sig": sig}))

    def _may_sign_again(self, h: int) -> bool:
        """Whether we may sign our checkpoint of ``h`` outside :meth:`on_applied`: we are a
        voter for ``h`` and did not refuse it (clock skew) in this process's life. Heights
        applied before a restart are not in ``own``; they were verified and applied here."""
        return (self.stopped is None and h not in self._refused
                and (h not in self.own or self.node_id in self.sigs.get(h, {}))
                and any(n == self.node_id for n, _ in self.chain.voters_at(h)))

    def _key_in_force(self, h: int) -> bool:
        """Whether our node key is our voter key for block ``h`` (not replaced since)."""
        return dict(self.chain.voters_at(h)).get(self.node_id) == self.signer.public_key()

    # ------------------------------------------------------------------ peers' signatures

    async def on_frame(self, peer: str, data: bytes) -> None:
        """A ``cosig`` frame from ``peer``: ``{cp, node, sig}``, plus ``header`` and ``hsig``
        (the block header the checkpoint names and its proposer's signature) when the peer
        announces a conflict it detected (:meth:`_announce`)."""
        hdr: _Header | None = None
        try:
            msg = decode(data, max_size=4096)
            if not isinstance(msg, dict) or set(msg) not in (_FRAME, _FRAME | _FRAME_HEADER):
                raise ValueError("a cosig frame is {cp, node, sig} [+ {header, hsig}]")
            cp, node, sig = msg["cp"], msg["node"], msg["sig"]
            check_checkpoint(cp)
            if "header" in msg:
                if not isinstance(msg["hsig"], bytes) or len(msg["hsig"]) != 64:
                    raise ValueError("hsig is not a 64-byte signature")
                hdr = (check_header(msg["header"], "cosig frame header"), msg["hsig"])
            if node != peer:
                raise ValueError(f"signature of {node!r} relayed by {peer!r}")
            if cp["chain"] != self.chain.chain_id:
                raise ValueError("checkpoint of another chain")
        except (LedgerError, ValueError) as exc:
            log.warning("dropping a cosig frame from %s: %s", peer, exc)
            return
        if self._receive(peer, cp, sig, hdr):
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
        answers only a signature that is new to it, so the exchange ends after one round.

        Ours comes from memory, else from the checkpoint stored with its quorum (we may have
        restarted since: memory is gone, the store is not), else it is made now if our key is
        in force at ``h`` (we applied that block; a quorum may have formed without us). Without
        this a node that was down while ``h`` got its quorum never got that checkpoint once
        its peers had restarted."""
        if self.stopped is not None:
            return
        cp = self.own.get(h) or self.chain.checkpoint_body(h)
        if cp is None:
            return
        sig = self.sigs.get(h, {}).get(self.node_id)
        if sig is None:
            stored = self.chain.store.checkpoint(h)
            if stored is not None and stored[0] == cp:
                sig = next((bytes(x["sig"]) for x in stored[1] if x.get("node") == self.node_id),
                           None)
        if sig is None and self._may_sign_again(h) and self._key_in_force(h):
            sig = sign_checkpoint(self.signer, self.chain.chain_id, cp)
        if sig is None:
            return
        try:
            await self.send_one(peer, CHANNEL, canonical({"cp": cp, "node": self.node_id,
                                                          "sig": sig}))
        except Exception as exc:  # noqa: BLE001 - best effort; resend covers the rest
            log.debug("cosig reply to %s failed: %s", peer, exc)

    def _receive(self, peer: str, cp: dict[str, Any], sig: bytes,
                 hdr: _Header | None = None) -> bool:
        """Check and record a peer's signature; True if it was new here."""
        h = cp["height"]
        if h > self.chain.height and h not in self.own:
            # Not applied here yet. It is judged once it is (on_applied takes it from
            # ``early``): the voters in force at h may include a node promoted by a block not
            # applied here yet, whose signature checked now against our head's voters would be
            # dropped as invalid, and a returning node would then miss that quorum for good.
            waiting = self.early.get(h)
            if waiting is None and len(self.early) < MAX_EARLY_HEIGHTS:
                waiting = self.early.setdefault(h, [])
            if (waiting is not None and len(waiting) < MAX_EARLY_PER_HEIGHT
                    and not any(p == peer and s == sig for p, _, s, _ in waiting)):
                waiting.append((peer, cp, sig, hdr))
            return False
        voters = self.chain.voters_at(h)
        if peer not in verify_checkpoint_signatures(cp, [{"node": peer, "sig": sig}], voters):
            log.warning("invalid checkpoint signature from %s at height %d", peer, h)
            return False
        mine = self.own.get(h)
        if mine is None:
            mine = self.chain.checkpoint_body(h)
        if mine is None:
            return False
        eq = detect_equivocation(mine, cp)
        if eq is not None:
            self._equivocation(peer, mine, cp, sig, eq.detail, hdr)
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
        self, peer: str, mine: dict[str, Any], theirs: dict[str, Any], sig: bytes, detail: str,
        their_header: tuple[dict[str, Any], bytes] | None = None,
    ) -> None:
        """Keep the evidence of a conflict with ``peer`` at ``mine``'s height, stop, alarm.

        The evidence is a ``courtledger-equivocation/1`` file (ledger.checkpoints): our signed
        checkpoint, the peer's, our block header with the proposer's signature and, once the
        peer announces it, the peer's header too: with both, anyone holding the genesis file
        can see which proposer signed two blocks of one term and height (DESIGN §2)."""
        h = mine["height"]
        checked = self._their_header(theirs, their_header)
        record = self._evidence_at.get((peer, h))
        if record is not None:
            # On record already (a peer announces its conflict more than once); its header
            # may come only with the announcement: add it then.
            item, path = record
            if checked is not None and len(item["headers"]) < 2:
                item["headers"].append({"header": header_to_json(checked[0]),
                                        "sig": checked[1].hex()})
                self._write_evidence(item, path)
            return
        if self.stopped is None:
            self.stopped = f"equivocation at height {h} with {peer}: {detail}"
        my_sig = self._own_sig(h, mine)
        headers = [x for x in (self._own_header(h), checked) if x is not None]
        item = equivocation_to_file(
            self.chain.hash_alg,
            detected_by=self.node_id,
            detected_at=int(self.clock() * 1000),
            detail=f"{detail} (our checkpoint first, {peer}'s second)",
            first=(mine, [{"node": self.node_id, "sig": my_sig}] if my_sig else []),
            second=(theirs, [{"node": peer, "sig": sig}]),
            headers=headers,
        )
        self.evidence.append(item)
        path = self.evidence_dir / f"equivocation-{h}-{peer}.json"
        self._evidence_at[(peer, h)] = (item, path)
        self._write_evidence(item, path)
        self.alarm("equivocation", self.stopped)
        if my_sig:
            self._announce(h, mine, my_sig)

    def _write_evidence(self, item: dict[str, Any], path: Path) -> None:
        try:
            self.evidence_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(item, indent=2), encoding="utf-8")
            tmp.replace(path)  # a reader never sees half a file
        except OSError as exc:
            log.error("cannot write equivocation evidence: %s", exc)

    def _own_sig(self, h: int, mine: dict[str, Any]) -> bytes:
        """Our signature of our checkpoint of ``h``, made now if we stopped before signing.

        The conflict may reach us between storing block h and signing it (apply writes the
        block before on_applied runs). We verified and applied that block, so signing its
        checkpoint now is honest; it is for the evidence and the announcement only (it is not
        counted here). Empty if we are not a voter for ``h``."""
        my_sig = self.sigs.get(h, {}).get(self.node_id)
        if my_sig:
            return my_sig
        if not any(n == self.node_id for n, _ in self.chain.voters_at(h)):
            return b""
        return sign_checkpoint(self.signer, self.chain.chain_id, mine)

    def _own_header(self, h: int) -> tuple[dict[str, Any], bytes] | None:
        """Our block header of ``h`` with the proposer's signature (from the store)."""
        try:
            block = self.chain.block(h)
        except LedgerError as exc:
            log.error("cannot read block %d for the evidence: %s", h, exc)
            return None
        if not isinstance(block, dict):
            return None
        return dict(block["header"]), bytes(block["sig"])

    def _their_header(
        self, theirs: dict[str, Any], got: tuple[dict[str, Any], bytes] | None
    ) -> tuple[dict[str, Any], bytes] | None:
        """A peer's announced header, if it is the block its checkpoint names, signed by its
        proposer (a voter in force at that height); else None (never trusted unchecked)."""
        if got is None:
            return None
        header, hsig = got
        h = theirs["height"]
        if header["height"] != h or block_hash(self.chain.hash_alg, header) != theirs["block"]:
            log.warning("an announced header is not the block of its checkpoint at %d", h)
            return None
        key = dict(self.chain.voters_at(h)).get(header["proposer"])
        try:
            if key is None:
                raise SignatureError("the proposer is not a voter at that height")
            verify_object(key, TAG_BLOCK, self.chain.chain_id, header, hsig)
        except SignatureError as exc:
            log.warning("an announced header at %d is not its proposer's: %s", h, exc)
            return None
        return header, hsig

    def _announce(self, h: int, mine: dict[str, Any], my_sig: bytes) -> None:
        """Send our signature of ``h`` once more to every voter, once per height.

        Our first send may have been lost (app frames are at most once, and links between
        followers come up lazily), and a peer whose quorum completed without us would then
        never compare our checkpoint with its own. Re-sending a signature we already made
        cosigns nothing new; it lets every honest voter see the conflict within one round
        trip of the first detection (DESIGN §2). Once per height, so two detectors do not
        answer each other forever.

        The frame also carries our block header of ``h`` with its proposer's signature, so
        each peer can add it to its evidence: its own header and ours, both signed by one
        proposer at one term and height, name that proposer (DESIGN §2)."""
        if h in self._announced:
            return
        self._announced.add(h)
        msg: dict[str, Any] = {"cp": mine, "node": self.node_id, "sig": my_sig}
        own = self._own_header(h)
        if own is not None:
            msg["header"], msg["hsig"] = own
        frame = canonical(msg)

        async def announce() -> None:
            # Three sends, 1 s and 2 s apart: a link still coming up may drop the first.
            for pause in (0.0, 1.0, 2.0):
                await asyncio.sleep(pause)
                await self.send_all(CHANNEL, frame)

        task = asyncio.create_task(announce())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
