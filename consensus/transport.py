"""The Raft peer transport: asyncio TCP with mutual TLS 1.3 and strict frames (DESIGN §3).

Shape (close to etcd's rafthttp, simplified):

- Every node listens once.  Every node dials every other member once; that *outbound* link
  carries everything we send to that peer, and the peer's own outbound link carries what it sends
  to us.  So an inbound connection is receive-only and an outbound one send-only.
- Identity is the certificate.  The server context trusts only member certificates (so anything
  else fails the handshake) and after every handshake the peer's SHA-256 DER fingerprint is looked
  up in the current member set; that lookup names the sending node.  The node id a message claims
  is checked against it by the frame handler (the runtime), so no member can speak for another.
  On the dialling side the fingerprint must equal the pin of the peer we meant to reach, whatever
  address (or ``[peers]`` override, or proxy) we reached it through.
- A malformed frame, or a frame the handler refuses, closes that connection and is counted
  (``malformed``); a failed handshake or an unknown fingerprint is counted (``refused``).  Neither
  ever raises out of the transport.
- Per-peer bounded queues.  Raft messages are dropped (and counted) when a peer's queue is full:
  Raft retransmits, and a slow follower must not stall the leader (etcd does the same).
  Application frames (``kind "app"``: a channel name and opaque bytes, used by the node for
  cosignatures and block transfer) wait for room instead: :meth:`Transport.send_app` is the
  back-pressure point.  Raft frames are written before queued application frames so a block
  transfer never delays heartbeats by more than one application frame.
- Reconnect with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import tls
from .framing import DEFAULT_MAX_FRAME, FrameError, encode_frame, read_frame

__all__ = ["Member", "Transport", "parse_address"]

log = logging.getLogger(__name__)

RaftHandler = Callable[[str, dict[str, Any]], None]
AppHandler = Callable[[str, str, bytes], Awaitable[None] | None]

_WRITE_CHUNK = 1 << 20


#: A link that lived at least this long was healthy: the next dial starts from the first backoff.
STABLE_LINK_S = 1.0


def parse_address(address: str, *, listen: bool = False) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:port``); ValueError with the address if malformed.

    Port 0 ("any free port") is allowed only for a ``listen`` address.
    """
    host, sep, port = address.rpartition(":")
    low = 0 if listen else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) < 65536:
        raise ValueError(f"peer address {address!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Member:
    """One consortium member as the transport needs it: id, Raft address, TLS certificate."""

    node_id: str
    address: str
    certificate: bytes  # PEM

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the DER certificate: the pin."""
        return tls.fingerprint(self.certificate)


class _Link:
    """The outbound side towards one peer: queues, connection task, state."""

    def __init__(self, peer: str, raft_cap: int, app_cap: int) -> None:
        self.peer = peer
        self.raft: collections.deque[bytes] = collections.deque()
        self.app: collections.deque[bytes] = collections.deque()
        self.raft_cap = raft_cap
        self.app_cap = app_cap
        self.wake = asyncio.Event()
        self.app_space = asyncio.Event()
        self.app_space.set()
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connected = False


class Transport:
    """Mutual-TLS peer links for one node; see the module docstring for the rules."""

    def __init__(
        self,
        node_id: str,
        cert_path: str,
        key_path: str,
        members: Iterable[Member],
        *,
        on_raft: RaftHandler,
        on_app: AppHandler | None = None,
        listen: str = "127.0.0.1:0",
        overrides: Mapping[str, str] | None = None,
        raft_queue: int = 4096,
        app_queue: int = 64,
        max_frame: int = DEFAULT_MAX_FRAME,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        handshake_timeout: float = 5.0,
        max_handshakes: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self._cert_path = cert_path
        self._key_path = key_path
        self._on_raft = on_raft
        self._on_app = on_app
        self._listen = listen
        self._overrides: dict[str, str] = dict(overrides or {})
        self._raft_cap = raft_queue
        self._app_cap = app_queue
        self.max_frame = max_frame
        self._backoff = (backoff_initial, backoff_max)
        self._handshake_timeout = handshake_timeout
        self._max_handshakes = max_handshakes
        self._rng = rng or random.Random()
        self._members: dict[str, Member] = {}
        self._by_fingerprint: dict[bytes, str] = {}
        self._links: dict[str, _Link] = {}
        self._inbound: dict[str, set[asyncio.StreamWriter]] = {}
        self._pending: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._stopped = False
        #: Counters for metrics and tests: refused, malformed, dropped, sent, received,
        #: connects, connect_failures, pin_mismatch.
        self.counters: collections.Counter[str] = collections.Counter()
        members = list(members)
        certs = [m.certificate for m in members]
        self._server_ctx = tls.server_context(cert_path, key_path, certs)
        self._client_ctx = tls.client_context(cert_path, key_path, certs)
        self._set_members(members)

    # -- membership ---------------------------------------------------------------------------

    def _set_members(self, members: list[Member]) -> None:
        self._members = {m.node_id: m for m in members}
        self._by_fingerprint = {m.fingerprint: m.node_id for m in members}

    def update_members(self, members: Iterable[Member]) -> None:
        """Replace the trusted set (DESIGN §3: membership changes update the trusted set).

        New certificates become trust anchors; a removed member's, or a replaced certificate's,
        fingerprint stops matching at once, and its open connections are closed.
        """
        new = list(members)
        old = self._members
        tls.add_trust_anchors(self._server_ctx, [m.certificate for m in new])
        tls.add_trust_anchors(self._client_ctx, [m.certificate for m in new])
        self._set_members(new)
        for peer, member in old.items():
            current = self._members.get(peer)
            if current is None or current.certificate != member.certificate:
                self._drop_peer(peer)
        if self._server is not None:
            self._ensure_links()

    @property
    def members(self) -> Mapping[str, Member]:
        """The current member set, by node id."""
        return dict(self._members)

    def set_override(self, peer: str, address: str | None) -> None:
        """Override (or, with None, restore) a peer's address; the pin still applies."""
        if address is None:
            self._overrides.pop(peer, None)
        else:
            parse_address(address)
            self._overrides[peer] = address
        link = self._links.get(peer)
        if link is not None and link.writer is not None:
            link.writer.close()

    def address_of(self, peer: str) -> str:
        """The address we dial for ``peer``: its override if any, else the configured one."""
        return self._overrides.get(peer) or self._members[peer].address

    def connected(self, peer: str) -> bool:
        """Whether our outbound link to ``peer`` is up."""
        link = self._links.get(peer)
        return bool(link and link.connected)

    def _drop_peer(self, peer: str) -> None:
        link = self._links.pop(peer, None)
        if link is not None:
            if link.writer is not None:
                link.writer.close()
            if link.task is not None:
                link.task.cancel()
        for writer in self._inbound.pop(peer, set()):
            writer.close()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen and start dialling peers; returns the bound port (useful with port 0)."""
        host, port = (
            parse_address(self._listen)
            if not self._listen.endswith(":0")
            else (
                self._listen.rpartition(":")[0].strip("[]"),
                0,
            )
        )
        self._server = await asyncio.start_server(self._accept, host, port, limit=1 << 20)
        self._ensure_links()
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def _ensure_links(self) -> None:
        for peer in self._members:
            if peer != self.node_id and peer not in self._links:
                link = _Link(peer, self._raft_cap, self._app_cap)
                link.task = asyncio.create_task(self._dial_loop(link), name=f"link-{peer}")
                self._links[peer] = link

    async def stop(self) -> None:
        """Close the listener and every connection; cancel the link tasks."""
        self._stopped = True
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links.values() if link.task is not None]
        for peer in list(self._links):
            self._drop_peer(peer)
        for writers in self._inbound.values():
            for writer in writers:
                writer.close()
        for writer in self._pending:
            writer.close()
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            if stuck:
                log.warning("%s: %d peer links did not stop in time", self.node_id, len(stuck))
        if self._server is not None:
            await self._server.wait_closed()

    # -- sending ------------------------------------------------------------------------------

    def send(self, peer: str, message: dict[str, Any]) -> bool:
        """Queue one Raft message for ``peer``; False (and counted) if it was dropped."""
        link = self._links.get(peer)
        if link is None or len(link.raft) >= link.raft_cap:
            self.counters["dropped"] += 1
            return False
        link.raft.append(encode_frame({"k": "raft", "m": message}, self.max_frame))
        link.wake.set()
        return True

    async def send_app(self, peer: str, channel: str, data: bytes) -> None:
        """Queue an application frame, waiting while the peer's queue is full (back-pressure).

        Delivery is at most once: a frame in flight when a connection breaks is lost, as with
        any datagram; the application retries what it needs (cosignatures are re-sent, block
        transfers are re-requested).  Raises KeyError for a peer that is not a member.
        """
        frame = encode_frame({"k": "app", "ch": channel, "d": data}, self.max_frame)
        while True:
            link = self._links.get(peer)
            if link is None:
                raise KeyError(f"{peer!r} is not a connected member")
            if len(link.app) < link.app_cap:
                link.app.append(frame)
                link.wake.set()
                return
            link.app_space.clear()
            await link.app_space.wait()

    async def _dial_loop(self, link: _Link) -> None:
        delay = self._backoff[0]
        while not self._stopped:
            try:
                host, port = parse_address(self.address_of(link.peer))
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that races with the connection completing, leaving a link alive after stop.
                async with asyncio.timeout(self._handshake_timeout * 2):
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=self._client_ctx,
                        server_hostname=link.peer,
                        ssl_handshake_timeout=self._handshake_timeout,
                        limit=1 << 16,
                    )
            except (OSError, ssl.SSLError, TimeoutError, ValueError, KeyError) as exc:
                self.counters["connect_failures"] += 1
                log.debug("%s: dial %s failed: %r", self.node_id, link.peer, exc)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self._backoff[1])
                continue
            if self._stopped or self._links.get(link.peer) is not link:
                writer.close()  # stopped, or this peer was dropped, while we were dialling
                return
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            member = self._members.get(link.peer)
            if der is None or member is None or tls.fingerprint_der(der) != member.fingerprint:
                # Reached someone trusted but not the node we meant (renumbering, a proxy
                # pointing elsewhere): the pin wins over the address.
                self.counters["pin_mismatch"] += 1
                writer.close()
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self._backoff[1])
                continue
            self.counters["connects"] += 1
            link.writer = writer
            link.connected = True
            began = asyncio.get_running_loop().time()
            try:
                await self._pump(link, reader, writer)
            finally:
                link.connected = False
                link.writer = None
                writer.close()
            if asyncio.get_running_loop().time() - began < STABLE_LINK_S:
                # The peer hung up at once: it no longer pins our certificate (we were removed
                # or replaced by update_keys) or it is going down. Count it as a failed dial
                # and back off; redialling at once would cost it a TLS handshake per loop,
                # dozens a second, for as long as we run.
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self._backoff[1])
            else:
                delay = self._backoff[0]

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def watch_eof() -> None:
            # Nothing is ever sent to us on our own outbound link; any byte or EOF means the
            # peer closed it (for instance it no longer trusts our certificate).
            try:
                await reader.read(1)
            except (OSError, ssl.SSLError):
                pass

        async def write_loop() -> None:
            while True:
                if not link.raft and not link.app:
                    link.wake.clear()
                    await link.wake.wait()
                    continue
                chunks: list[bytes] = []
                size = 0
                while link.raft and size < _WRITE_CHUNK:
                    frame = link.raft.popleft()
                    chunks.append(frame)
                    size += len(frame)
                if link.app and size < _WRITE_CHUNK:
                    chunks.append(link.app.popleft())
                    link.app_space.set()
                writer.writelines(chunks)
                self.counters["sent"] += len(chunks)
                await writer.drain()

        tasks = [asyncio.create_task(watch_eof()), asyncio.create_task(write_loop())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            raise
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(
                    result, (OSError, ssl.SSLError, ConnectionError)
                ):
                    log.warning("%s: link to %s: %r", self.node_id, link.peer, result)

    # -- receiving ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._pending) >= self._max_handshakes:
            # Unauthenticated connections cost a handshake each: cap them so a flood from
            # outside the consortium cannot exhaust the node (members reconnect with backoff).
            self.counters["refused"] += 1
            writer.close()
            return
        self._pending.add(writer)
        peer: str | None = None
        try:
            raw = writer.transport
            try:
                await writer.start_tls(
                    self._server_ctx, ssl_handshake_timeout=self._handshake_timeout
                )
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                # No certificate, or one outside the consortium: OpenSSL refuses it.
                self.counters["refused"] += 1
                log.info("%s: refused a peer at handshake: %r", self.node_id, exc)
                return
            if writer.transport is None:
                # CPython 3.11: start_tls returns no transport when the peer hung up right
                # after the handshake; put the (closing) raw transport back so the writer can
                # still be closed and collected.
                writer._transport = raw
                return
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            peer = self._by_fingerprint.get(tls.fingerprint_der(der)) if der else None
            if peer is None or peer == self.node_id:
                # A certificate that chains to an old anchor but is no longer pinned.
                self.counters["refused"] += 1
                log.info("%s: refused a peer with an unpinned certificate", self.node_id)
                return
            self._pending.discard(writer)
            self._inbound.setdefault(peer, set()).add(writer)
            while not self._stopped:
                frame = await read_frame(reader, self.max_frame)
                if frame is None:
                    return
                self.counters["received"] += 1
                result = self._dispatch(peer, frame)
                if result is not None:
                    await result
        except FrameError as exc:
            self.counters["malformed"] += 1
            log.warning("%s: malformed frame from %s, closing: %s", self.node_id, peer, exc)
        except (OSError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pending.discard(writer)
            if peer is not None:
                self._inbound.get(peer, set()).discard(writer)
            writer.close()

    def _dispatch(self, peer: str, frame: dict[str, Any]) -> Awaitable[None] | None:
        kind = frame["k"]
        if kind == "raft":
            message = frame.get("m")
            if not isinstance(message, dict) or len(frame) != 2:
                raise FrameError("raft frame must be {k, m: map}")
            self._on_raft(peer, message)  # may raise FrameError: counted, connection closed
            return None
        if kind == "app":
            channel, data = frame.get("ch"), frame.get("d")
            if not isinstance(channel, str) or not isinstance(data, bytes) or len(frame) != 3:
                raise FrameError("app frame must be {k, ch: str, d: bytes}")
            if self._on_app is None:
                return None
            result = self._on_app(peer, channel, data)
            return result if inspect.isawaitable(result) else None
        raise FrameError(f"unknown frame kind {kind!r}")
