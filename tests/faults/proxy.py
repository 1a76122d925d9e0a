"""A fault-injecting TCP proxy between the peers of a cluster (asyncio, on loopback).

Every ordered pair of nodes ``(src, dst)`` gets a listener; ``src`` is configured (``[peers]``
override, DESIGN §4) to reach ``dst`` through it, so every peer byte passes here. The TLS
certificate pin still applies end to end: the proxy only moves bytes and cannot read or forge
them, which is what a hostile network can do too.

Faults act on a *direction* of traffic, ``a → b``, whichever side opened the connection:

* :meth:`FaultProxy.cut` drops every byte from ``a`` to ``b`` (a one-way partition);
  :meth:`FaultProxy.partition` cuts both ways between two groups;
* :meth:`FaultProxy.delay` holds each chunk from ``a`` to ``b`` for a while (in order);
* :meth:`FaultProxy.heal` lifts every fault and closes the connections whose streams lost
  bytes (a TLS stream with a hole cannot continue; the nodes redial, as after a network blip).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Conn:
    """One proxied connection, opened by ``src`` towards ``dst``."""

    src: str
    dst: str
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    lost_bytes: bool = False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultProxy:
    """The proxy; runs its own event loop in a daemon thread, driven from test threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._thread.start()
        self.ports: dict[tuple[str, str], int] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._conns: set[_Conn] = set()
        self.cut_dirs: set[tuple[str, str]] = set()
        self.delays: dict[tuple[str, str], float] = {}
        self.dropped = 0  #: bytes dropped so far (a sanity figure for reports)

    # ------------------------------------------------------------------ set up

    def add(self, src: str, dst: str, target: tuple[str, int]) -> int:
        """Listen for ``src``'s connections to ``dst`` (at ``target``); return the port."""
        port = _free_port()

        async def start() -> None:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await self._serve(src, dst, target, r, w)

            self._servers.append(await asyncio.start_server(handle, "127.0.0.1", port))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.ports[(src, dst)] = port
        return port

    def close(self) -> None:
        """Stop listening, close every connection and the loop."""
        async def stop() -> None:
            for s in self._servers:
                s.close()
            for c in list(self._conns):
                for w in c.writers:
                    w.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    # ------------------------------------------------------------------ faults

    def cut(self, a: str, b: str) -> None:
        """Drop every byte from ``a`` to ``b`` (``b`` still reaches ``a``)."""
        self.cut_dirs.add((a, b))

    def partition(self, group: Iterable[str], others: Iterable[str]) -> None:
        """Cut both directions between every node of ``group`` and every node of ``others``."""
        g, o = list(group), list(others)
        for a in g:
            for b in o:
                self.cut(a, b)
                self.cut(b, a)

    def delay(self, a: str, b: str, seconds: float) -> None:
        """Hold each chunk from ``a`` to ``b`` for ``seconds`` (order kept)."""
        self.delays[(a, b)] = seconds

    def heal(self) -> None:
        """Lift every fault; close the connections that lost bytes so the nodes redial."""
        def do() -> None:
            self.cut_dirs.clear()
            self.delays.clear()
            for c in list(self._conns):
                if c.lost_bytes:
                    for w in c.writers:
                        w.close()

        self.loop.call_soon_threadsafe(do)

    # ------------------------------------------------------------------ the pipes

    async def _serve(self, src: str, dst: str, target: tuple[str, int],
                     r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conn = _Conn(src, dst, [w])
        try:
            tr, tw = await asyncio.wait_for(asyncio.open_connection(*target), 5)
        except (OSError, TimeoutError):
            w.close()
            return
        conn.writers.append(tw)
        self._conns.add(conn)
        try:
            await asyncio.gather(self._pipe(conn, src, dst, r, tw),
                                 self._pipe(conn, dst, src, tr, w))
        finally:
            self._conns.discard(conn)
            for x in conn.writers:
                x.close()

    async def _pipe(self, conn: _Conn, a: str, b: str, r: asyncio.StreamReader,
                    w: asyncio.StreamWriter) -> None:
        """Move bytes ``a → b`` through the faults of that direction."""
        try:
            while True:
                chunk = await r.read(65536)
                if not chunk:
                    break
                if (a, b) in self.cut_dirs:
                    conn.lost_bytes = True
                    self.dropped += len(chunk)
                    continue
                d = self.delays.get((a, b))
                if d:
                    await asyncio.sleep(d)
                w.write(chunk)
                await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other, as TCP would after a FIN or reset.
            for x in conn.writers:
                x.close()
