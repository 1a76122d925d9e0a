"""A 3-member etcd on loopback, the peer courtledger is compared with (issue 12).

    with EtcdCluster(workdir) as etcd:
        etcd.version          # "etcd Version: 3.4.23 / Git SHA: ... / Go Version: ..."
        etcd.leader_port      # the client port of the current leader
        await put(conn, key, value); await get(conn, key)

Client path, stated once for every figure that uses it: etcd's v3 HTTP/JSON gateway
(``POST /v3/kv/put``, ``POST /v3/kv/range``) on the leader's client port, over keep-alive
HTTP/1.1 connections (``raft_bench.HttpConn``), keys and values base64 as the gateway wants.
Peers talk plain HTTP on loopback (ours use TLS 1.3); fsync is on (etcd's default: its WAL is
fsynced before a put is answered).  The binary is Debian's ``etcd-server``, installed by
``raft_bench.ensure_etcd`` (``apt-get install -y etcd-server``) when missing.

Every member runs in its own session, so :meth:`EtcdCluster.stop` kills its whole process
group: nothing is left running whatever happened in between.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from raft_bench import HttpConn, _etcd_leader_port, ensure_etcd  # noqa: E402

from consensus.demo_node import free_port  # noqa: E402

__all__ = ["EtcdCluster", "HttpConn", "get", "put"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def put(conn: HttpConn, key: bytes, value: bytes) -> None:
    """One put through the gateway; raises unless etcd answered 200 (committed and fsynced)."""
    await conn.post("/v3/kv/put", json.dumps({"key": _b64(key), "value": _b64(value)}).encode())


async def get(conn: HttpConn, key: bytes) -> bytes | None:
    """The verify-by-hash look-up on etcd: a range read of one key (linearizable, etcd's
    default, which costs a ReadIndex round like ours does not); its value or None."""
    data = json.loads(await conn.post("/v3/kv/range", json.dumps({"key": _b64(key)}).encode()))
    kvs = data.get("kvs") or []
    return base64.b64decode(kvs[0]["value"]) if kvs else None


class EtcdCluster:
    """Three etcd members in ``workdir`` (data and logs), started on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        binary = ensure_etcd()
        if binary is None:
            raise RuntimeError("etcd is not installed and could not be installed")
        self.binary = binary
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.client_ports: list[int] = []
        self.leader_port = 0
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        self.version = " / ".join(line.strip() for line in out.splitlines()[:3])

    def start(self) -> None:
        """Start the members and wait for a leader."""
        names = ["e1", "e2", "e3"]
        peer = {n: free_port() for n in names}
        client = {n: free_port() for n in names}
        self.client_ports = [client[n] for n in names]
        cluster = ",".join(f"{n}=http://127.0.0.1:{peer[n]}" for n in names)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for n in names:
            with open(self.workdir / f"{n}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [self.binary, f"--name={n}", f"--data-dir={self.workdir}/{n}",
                     f"--listen-client-urls=http://127.0.0.1:{client[n]}",
                     f"--advertise-client-urls=http://127.0.0.1:{client[n]}",
                     f"--listen-peer-urls=http://127.0.0.1:{peer[n]}",
                     f"--initial-advertise-peer-urls=http://127.0.0.1:{peer[n]}",
                     f"--initial-cluster={cluster}", "--initial-cluster-state=new",
                     "--initial-cluster-token=bench", "--quota-backend-bytes=8589934592",
                     "--logger=zap", "--log-level=error"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True))
        self.leader_port = asyncio.run(_etcd_leader_port(self.client_ports))

    def pids(self) -> list[int]:
        """The members' process ids (for CPU accounting)."""
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """Kill every member's process group and reap it."""
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="etcd-peer-") as tmp, EtcdCluster(Path(tmp)) as c:
        async def _smoke() -> None:
            conn = HttpConn("127.0.0.1", c.leader_port)
            await put(conn, b"k", b"v" * 500)
            assert await get(conn, b"k") == b"v" * 500
            assert await get(conn, b"missing") is None
            conn.close()
        asyncio.run(_smoke())
        print(f"{c.version}: leader on port {c.leader_port}; put and get work")
