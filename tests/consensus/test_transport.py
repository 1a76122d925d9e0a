"""The mutual-TLS peer transport, in one process over loopback (budget: ~5 s)."""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from consensus import tls
from consensus.framing import FrameError
from consensus.transport import Member, Transport

Received = list[tuple[str, str, Any]]

# CPython 3.11's StreamWriter.__del__ trips over a writer whose TLS connection was lost during
# or right after the handshake (its transport is None); these tests cause exactly that on
# purpose.  Only that message is ignored.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.timeout(60),
]


def _certs(tmp: Path, names: list[str]) -> dict[str, tuple[bytes, str, str]]:
    out = {}
    for name in names:
        cert, key = tls.generate_node_certificate(name)
        (tmp / f"{name}.crt").write_bytes(cert)
        (tmp / f"{name}.key").write_bytes(key)
        out[name] = (cert, str(tmp / f"{name}.crt"), str(tmp / f"{name}.key"))
    return out


async def _eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Cluster:
    """Three transports a, b, c on ephemeral ports; each records what it receives."""

    def __init__(self, tmp: Path) -> None:
        self.certs = _certs(tmp, ["a", "b", "c", "x"])
        self.got: dict[str, Received] = {n: [] for n in "abc"}
        self.t: dict[str, Transport] = {}

    async def start(self, **kw: Any) -> None:
        ports = {}
        for name in "abc":
            cert, crt, key = self.certs[name]

            def on_raft(peer: str, m: dict[str, Any], name: str = name) -> None:
                if m.get("from") != peer:
                    raise FrameError("sender does not match certificate")
                self.got[name].append(("raft", peer, m))

            def on_app(peer: str, ch: str, d: bytes, name: str = name) -> None:
                self.got[name].append(("app", peer, (ch, d)))

            # Addresses are filled in after binding (port 0); placeholders first.
            members = [Member(n, "127.0.0.1:1", self.certs[n][0]) for n in "abc"]
            self.t[name] = Transport(name, crt, key, members, on_raft=on_raft, on_app=on_app, **kw)
        for name in "abc":
            ports[name] = await self.t[name].start()
        for name in "abc":
            for peer in "abc":
                if peer != name:
                    self.t[name].set_override(peer, f"127.0.0.1:{ports[peer]}")
        self.ports = ports

    async def stop(self) -> None:
        for t in self.t.values():
            await t.stop()


def run(tmp: Path, body: Callable[[Cluster], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        cluster = Cluster(tmp)
        await cluster.start(**kw)
        try:
            await asyncio.wait_for(body(cluster), 20)
        finally:
            await cluster.stop()

    asyncio.run(main())


def test_raft_and_app_frames_reach_the_right_peer(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        for i in range(100):
            c.t["a"].send("b", {"from": "a", "i": i})
        await c.t["a"].send_app("c", "cosign", b"\x01sig")
        await _eventually(lambda: len(c.got["b"]) == 100 and len(c.got["c"]) == 1)
        assert [m["i"] for _, _, m in c.got["b"]] == list(range(100))  # order kept per link
        assert c.got["c"] == [("app", "a", ("cosign", b"\x01sig"))]
        assert c.t["a"].connected("b")

    run(tmp_path, body)


async def _raw_tls(
    port: int, crt: str, key: str, server_cert: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = tls.client_context(crt, key, [server_cert])
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)


def test_outsider_certificate_and_plain_tcp_are_refused_and_counted(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        _, x_crt, x_key = c.certs["x"]
        try:
            r, w = await _raw_tls(c.ports["a"], x_crt, x_key, c.certs["a"][0])
            w.write(struct.pack(">I", 6) + b"\x81\xa1k\xa1x\x00")
            await w.drain()
            assert await r.read() == b""  # the server closed it
        except (ssl.SSLError, ConnectionError):
            pass
        await _eventually(lambda: c.t["a"].counters["refused"] == 1)
        r, w = await asyncio.open_connection("127.0.0.1", c.ports["a"])
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        await w.drain()
        await _eventually(lambda: c.t["a"].counters["refused"] == 2)
        w.close()
        assert c.got["a"] == []
        # The node still works for members.
        c.t["b"].send("a", {"from": "b"})
        await _eventually(lambda: len(c.got["a"]) == 1)

    run(tmp_path, body)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">I", 3) + b"\xc1\xc1\xc1",  # not msgpack
        struct.pack(">I", 1 << 30),  # oversize length
        struct.pack(">I", 4) + b"\x81\xa1k\xa3",  # truncated
        struct.pack(">I", 9) + b"\x82\xa1k\xa4raft\xa1m\x01",  # raft frame without a map
        struct.pack(">I", 5) + b"\x81\xa1k\xa1z",  # unknown kind
    ],
)
def test_malformed_frame_closes_connection_and_is_counted(tmp_path: Path, payload: bytes) -> None:
    async def body(c: Cluster) -> None:
        _, b_crt, b_key = c.certs["b"]
        r, w = await _raw_tls(c.ports["a"], b_crt, b_key, c.certs["a"][0])
        w.write(payload)
        await w.drain()
        await _eventually(lambda: c.t["a"].counters["malformed"] == 1)
        assert await r.read() == b""
        c.t["b"].send("a", {"from": "b", "after": True})
        await _eventually(lambda: len(c.got["a"]) == 1)

    run(tmp_path, body)


def test_spoofed_sender_is_refused_by_the_handler(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        c.t["b"].send("a", {"from": "c"})
        await _eventually(lambda: c.t["a"].counters["malformed"] == 1)
        assert c.got["a"] == []

    run(tmp_path, body)


def test_removed_member_is_cut_off(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        c.t["c"].send("a", {"from": "c"})
        await _eventually(lambda: len(c.got["a"]) == 1)
        a = c.t["a"]
        a.update_members([m for n, m in a.members.items() if n != "c"])
        assert not a.connected("c")
        refused = a.counters["refused"]
        c.t["c"].send("a", {"from": "c"})
        # c reconnects and its certificate (still a trust anchor in OpenSSL) fails the pin.
        await _eventually(lambda: a.counters["refused"] > refused)
        assert len(c.got["a"]) == 1

    run(tmp_path, body)


def test_override_reaching_the_wrong_node_fails_the_pin(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        a = c.t["a"]
        a.set_override("b", f"127.0.0.1:{c.ports['c']}")
        a.send("b", {"from": "a"})
        await _eventually(lambda: a.counters["pin_mismatch"] >= 1)
        assert c.got["c"] == []
        a.set_override("b", f"127.0.0.1:{c.ports['b']}")
        a.send("b", {"from": "a"})
        await _eventually(lambda: len(c.got["b"]) >= 1)

    run(tmp_path, body)


def test_full_queues_drop_raft_and_hold_back_app_frames(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        a = c.t["a"]
        a.set_override("b", "127.0.0.1:9")  # nothing listens: the link stays down
        await asyncio.sleep(0.05)
        sent = [a.send("b", {"from": "a"}) for _ in range(5)]
        assert sent == [True, True, False, False, False]
        assert a.counters["dropped"] == 3
        await a.send_app("b", "blocks", b"1")
        blocked = asyncio.create_task(a.send_app("b", "blocks", b"2"))
        await asyncio.sleep(0.1)
        assert not blocked.done()  # back-pressure: waits for room
        a.set_override("b", f"127.0.0.1:{c.ports['b']}")
        await asyncio.wait_for(blocked, 5)
        await _eventually(lambda: len([g for g in c.got["b"] if g[0] == "app"]) == 2)

    run(tmp_path, body, raft_queue=2, app_queue=1)


def test_handshake_flood_is_capped(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        a = c.t["a"]
        idle = [await asyncio.open_connection("127.0.0.1", c.ports["a"]) for _ in range(3)]
        await _eventually(lambda: a.counters["refused"] >= 1)  # the third is turned away
        for _, w in idle:
            w.close()
        c.t["b"].send("a", {"from": "b"})  # members still get through
        await _eventually(lambda: len(c.got["a"]) == 1)

    run(tmp_path, body, max_handshakes=2)


def test_addresses_are_checked() -> None:
    from consensus.transport import parse_address

    assert parse_address("[::1]:7000") == ("::1", 7000)
    assert parse_address("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
    for bad in ("127.0.0.1:0", "nohost", ":80", "h:99999", "h:x"):
        with pytest.raises(ValueError):
            parse_address(bad)
