"""Raft replication benchmark: three real processes on loopback, mutual TLS, fsync (issue 5).

    python bench/raft_bench.py [--quick] [--no-etcd]

Each 500-byte proposal is its own Raft entry, proposed in-process on the leader (the
``consensus.demo_node`` control port's ``load`` command) and counted once committed, i.e. once
a majority has fsynced it.  Printed: entries/s and p50/p99 commit latency at 1, 16, 64 and 256
outstanding proposals; p50/p99 under an open-loop offered load of 5,000 entries/s; blocks/s
for 100 KiB and 1 MiB entries.  Targets (issue 5): 10,000 entries/s; p99 < 50 ms at 5,000/s.

For context the same run measures a 3-member etcd (Debian's ``etcd-server``; installed with
apt-get if missing and possible) on the same machine, through its own client path: the v3
HTTP/JSON gateway (``POST /v3/kv/put``) over keep-alive HTTP/1.1 connections, one per
outstanding request, from a small asyncio client in this process (so the gateway's JSON and
this Python client weigh on etcd's figures), then, in the full run, its native Go gRPC client
path, ``etcdctl check perf --load=l``.  etcd's peers talk plain HTTP here (ours use TLS 1.3);
its fsync is on (its default).  The ``cpu`` column is CPU time per entry summed over the three
members (for us it includes the in-process load generator; for etcd it excludes the client).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.demo_node import ProcessCluster, free_port  # noqa: E402

OUTSTANDING = (1, 16, 64, 256)
ENTRY = 500
BLOCKS = ((100 * 1024, "100 KiB"), (1024 * 1024, "1 MiB"))


def _counts(quick: bool) -> dict[str, Any]:
    if quick:
        return {"entries": {1: 200, 16: 2000, 64: 4000, 256: 6000}, "paced": 5000, "blocks": 30}
    return {"entries": {1: 500, 16: 5000, 64: 15000, 256: 25000}, "paced": 15000, "blocks": 100}


def row(system: str, what: str, unit: str, r: dict[str, Any]) -> None:
    """One result line.  ``cpu`` is CPU time per entry summed over the three members: a
    figure that a busy machine disturbs less than rates and latencies."""
    print(
        f"{system:<12} {what:<28} {r['rate']:>8.0f} {unit:<10} p50 {r['p50_ms']:>7.1f} ms"
        f"  p99 {r['p99_ms']:>7.1f} ms  cpu {r['cpu_us']:>6.0f} us/entry",
        flush=True,
    )


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- courtledger --------------------------------------------------------------------------


def _ours(cluster: ProcessCluster, _lead: str, req: dict[str, Any]) -> dict[str, Any]:
    """One load run on the current leader; if leadership moved during it (a starved machine
    misses heartbeats), say so and run it once more on the new leader."""
    for attempt in (1, 2):
        lead = cluster.leader()
        before = sum(cluster.status(n)["cpu_s"] for n in cluster.ids)
        r = cluster.request(lead, req, timeout=600)
        after = sum(cluster.status(n)["cpu_s"] for n in cluster.ids)
        r["cpu_us"] = 1e6 * (after - before) / max(1, r["committed"])
        if not r.get("errors"):
            return r
        print(f"  (leadership moved during the run: {r['errors']}; attempt {attempt} of 2)")
    return r


def bench_ours(quick: bool) -> None:
    """The three demo nodes."""
    counts = _counts(quick)
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        # etcd's default timing: 100 ms heartbeats, elections after 1-2 s of silence.
        cluster = ProcessCluster(Path(tmp), fsync=True, tick_ms=100, election_tick=10)
        try:
            cluster.start_all()
            lead = cluster.leader()
            cluster.request(lead, {"op": "load", "count": 500, "size": ENTRY, "outstanding": 64})
            for out in OUTSTANDING:
                r = _ours(
                    cluster,
                    lead,
                    {
                        "op": "load",
                        "count": counts["entries"][out],
                        "size": ENTRY,
                        "outstanding": out,
                        "tag": f"o{out}",
                    },
                )
                row("courtledger", f"500 B, {out} outstanding", "entries/s", r)
            r = _ours(
                cluster,
                lead,
                {
                    "op": "load",
                    "count": counts["paced"],
                    "size": ENTRY,
                    "outstanding": 0,
                    "rate": 5000,
                    "tag": "paced",
                },
            )
            row("courtledger", "500 B, offered 5,000/s", "entries/s", r)
            for size, label in BLOCKS:
                n = counts["blocks"] if size < 1 << 20 else max(10, counts["blocks"] // 2)
                r = _ours(
                    cluster,
                    lead,
                    {"op": "load", "count": n, "size": size, "outstanding": 4, "tag": label},
                )
                row("courtledger", f"{label} blocks, 4 outstanding", "blocks/s", r)
        finally:
            cluster.stop_all()


# -- etcd ---------------------------------------------------------------------------------


def ensure_etcd() -> str | None:
    """Path of the etcd binary, installing Debian's etcd-server if needed; None if impossible."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("etcd: not installed and apt-get is not usable here (need root and apt-get)")
        return None
    print("etcd: installing Debian's etcd-server with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "etcd-server"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            print(f"etcd: {' '.join(cmd)} failed: {tail}")
            return None
    return shutil.which("etcd")


class HttpConn:
    """One keep-alive HTTP/1.1 connection for JSON POSTs (enough for etcd's gateway)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await self.writer.drain()
        status = await self.reader.readline()
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        if b" 200 " not in status:
            raise RuntimeError(f"etcd answered {status!r}: {data[:200]!r}")
        return data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def etcd_load(port: int, count: int, size: int, outstanding: int, tag: str) -> dict[str, Any]:
    """``count`` puts of ``size``-byte values with ``outstanding`` in flight (closed loop)."""
    value = base64.b64encode(b"v" * size).decode()
    latencies: list[float] = []
    next_seq = 0

    async def worker() -> None:
        nonlocal next_seq
        conn = HttpConn("127.0.0.1", port)
        try:
            while next_seq < count:
                seq = next_seq
                next_seq += 1
                key = base64.b64encode(f"{tag}/{seq}".encode()).decode()
                body = json.dumps({"key": key, "value": value}).encode()
                t0 = time.perf_counter()
                await conn.post("/v3/kv/put", body)
                latencies.append(time.perf_counter() - t0)
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(outstanding)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


async def etcd_paced(port: int, count: int, rate: float) -> dict[str, Any]:
    """Open-loop puts at ``rate``/s over a pool of 256 connections."""
    value = base64.b64encode(b"v" * ENTRY).decode()
    pool = [HttpConn("127.0.0.1", port) for _ in range(256)]
    free: asyncio.Queue[HttpConn] = asyncio.Queue()
    for c in pool:
        free.put_nowait(c)
    latencies: list[float] = []

    async def one(seq: int) -> None:
        t0 = time.perf_counter()
        conn = await free.get()
        try:
            key = base64.b64encode(f"paced/{seq}".encode()).decode()
            await conn.post("/v3/kv/put", json.dumps({"key": key, "value": value}).encode())
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    tasks = []
    for seq in range(count):
        delay = start + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for c in pool:
        c.close()
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


async def _etcd_leader_port(client_ports: list[int]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for port in client_ports:
            conn = HttpConn("127.0.0.1", port)
            try:
                st = json.loads(await conn.post("/v3/maintenance/status", b"{}"))
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return port
            except (OSError, RuntimeError, ValueError, KeyError):
                pass
            finally:
                conn.close()
        await asyncio.sleep(0.2)
    raise TimeoutError("etcd elected no leader")


def bench_etcd(quick: bool) -> None:
    """A 3-member etcd on loopback, same matrix, through its HTTP gateway."""
    etcd = ensure_etcd()
    if etcd is None:
        print("etcd: not measured (see above)")
        return
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout
    print("etcd: " + " / ".join(line.strip() for line in version.splitlines()[:3]))
    counts = _counts(quick)
    names = ["e1", "e2", "e3"]
    peer = {n: free_port() for n in names}
    client = {n: free_port() for n in names}
    cluster = ",".join(f"{n}=http://127.0.0.1:{peer[n]}" for n in names)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="etcd-bench-") as tmp:
        try:
            for n in names:
                log = open(Path(tmp) / f"{n}.log", "wb")  # handed to the child
                procs.append(
                    subprocess.Popen(
                        [
                            etcd,
                            f"--name={n}",
                            f"--data-dir={tmp}/{n}",
                            f"--listen-client-urls=http://127.0.0.1:{client[n]}",
                            f"--advertise-client-urls=http://127.0.0.1:{client[n]}",
                            f"--listen-peer-urls=http://127.0.0.1:{peer[n]}",
                            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer[n]}",
                            f"--initial-cluster={cluster}",
                            "--initial-cluster-state=new",
                            "--initial-cluster-token=raft-bench",
                            "--max-request-bytes=10485760",
                            "--quota-backend-bytes=8589934592",
                            "--logger=zap",
                            "--log-level=error",
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                log.close()
            asyncio.run(_etcd_runs(list(client.values()), [p.pid for p in procs], counts))
            if not quick:
                _etcd_check_perf(list(client.values()))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


async def _etcd_runs(client_ports: list[int], pids: list[int], counts: dict[str, Any]) -> None:
    port = await _etcd_leader_port(client_ports)
    await etcd_load(port, 500, ENTRY, 64, "warm")

    async def measured(n: int, run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        before = sum(map(_proc_cpu, pids))
        r = await run
        r["cpu_us"] = 1e6 * (sum(map(_proc_cpu, pids)) - before) / n
        return r

    for out in OUTSTANDING:
        n = counts["entries"][out]
        r = await measured(n, etcd_load(port, n, ENTRY, out, f"o{out}"))
        row("etcd", f"500 B, {out} outstanding", "puts/s", r)
    r = await measured(counts["paced"], etcd_paced(port, counts["paced"], 5000))
    row("etcd", "500 B, offered 5,000/s", "puts/s", r)
    for size, label in BLOCKS:
        n = counts["blocks"] if size < 1 << 20 else max(10, counts["blocks"] // 2)
        r = await measured(n, etcd_load(port, n, size, 4, label))
        row("etcd", f"{label} values, 4 outstanding", "puts/s", r)


def _etcd_check_perf(client_ports: list[int]) -> None:
    """etcd's own Go gRPC client: ``etcdctl check perf --load=l`` (1 KiB puts offered at
    8,000/s by 500 clients for 60 s), printed as etcdctl reports it."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        print("etcd check perf: etcdctl not installed")
        return
    endpoints = ",".join(f"http://127.0.0.1:{p}" for p in client_ports)
    done = subprocess.run(
        [etcdctl, f"--endpoints={endpoints}", "check", "perf", "--load=l"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ETCDCTL_API="3"),
    )
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip() and "%" not in ln]
    for line in lines[-4:]:
        print(f"etcd check perf --load=l (Go gRPC client, 8,000/s offered): {line.strip()}")


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--no-etcd", action="store_true", help="skip the etcd comparison")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"python {sys.version.split()[0]}"
    )
    print("courtledger: 3 processes, TLS 1.3 mutual auth, LevelDB WriteBatch(sync=True)")
    bench_ours(args.quick)
    if not args.no_etcd:
        bench_etcd(args.quick)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
