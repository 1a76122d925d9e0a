"""One load generator for courtledger and etcd, on the path a user takes (issue 12).

    python bench/loadgen.py [--seconds S] [--concurrency 1,16,64,256] [--json]

What a court would otherwise pick is "store the record in etcd". So the same closed-loop
generator (``C`` keep-alive HTTP/1.1 connections, each sending its next request when the last
was answered; one asyncio process; the same minimal client, :class:`Conn`, for both systems)
drives:

* courtledger: ``POST /v1/entries?wait=commit`` on the leader's internal listener, one
  pre-signed ``document`` envelope per request (canonical msgpack, padded with a ``title`` to
  about 500 bytes), answered once the entry is committed: admitted (signature checked), in a
  block that every node checked (signatures again) and fsynced, Merkle-logged, indexed, and
  cosigned;
* etcd: ``POST /v3/kv/put`` through its HTTP gateway on the leader, key ``doc/<sha256>``,
  value the very same envelope bytes (see ``etcd_peer``), answered after its WAL fsync.

at concurrency 1, 16, 64 and 256, each for ``--seconds`` (a warm-up first), then the
verify-by-hash look-up at concurrency 16 against the node's public listener, etcd's range
read of the same key, and a bare FastAPI endpoint reading the same LevelDB key from a copy of
the node's store (``cluster_bench.BARE_APP``, after the cluster stopped), and a new court's
catch-up: ``courtledger follow --once`` from an empty folder to the leader's head (every block
checked as the auditor does). Records are signed
before the clock starts; each is used once (a duplicate would be refused).

Nothing is left running: nodes, etcd members and the bare app each run in their own session
and are killed by process group in ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from cluster_bench import BARE_APP  # noqa: E402
from etcd_peer import EtcdCluster  # noqa: E402

from consensus.demo_node import free_port  # noqa: E402
from ledger.crypto import Ed25519Signer  # noqa: E402
from ledger.encoding import canonical  # noqa: E402
from ledger.entries import make_payload, sign_entry  # noqa: E402
from node.demo import Cluster  # noqa: E402
from node.init import DEMO_COURTS, init_consortium  # noqa: E402

CONCURRENCY = (1, 16, 64, 256)
RECORD_BYTES = 500


class Conn:
    """One keep-alive HTTP/1.1 connection: GET and POST with a content type, status returned."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      ctype: str = "application/json") -> tuple[int, bytes]:
        """Send one request and read the whole answer: ``(status, body)``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if method == "POST":
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while (size := int((await self.reader.readline()).strip(), 16)) != 0:
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            await self.reader.readline()
            data = b"".join(parts)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self) -> None:
        """Drop the connection (the next request reconnects)."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


Op = Callable[[Conn, int], Awaitable[bool]]


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of sorted ``xs`` in milliseconds (nearest rank)."""
    return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def closed_loop(port: int, op: Op, concurrency: int, seconds: float,
                      start: int = 0) -> dict[str, Any]:
    """``concurrency`` connections each looping ``op(conn, seq)`` for ``seconds``.

    ``seq`` numbers the requests from ``start`` (each record used once). Returns the rate of
    successful requests, p50/p99 latency in ms, failures, and the next unused ``seq``.
    """
    lat: list[float] = []
    failed = 0
    nxt = start
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal nxt, failed
        conn = Conn("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                seq = nxt
                nxt += 1
                t0 = time.perf_counter()
                try:
                    ok = await op(conn, seq)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    conn.close()
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    failed += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {"concurrency": concurrency, "ok": len(lat), "failed": failed,
            "rate": len(lat) / elapsed, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "next": nxt}


# --------------------------------------------------------------------------- workload


def records(folder: Path, n: int, size: int = RECORD_BYTES) -> list[tuple[bytes, bytes]]:
    """``n`` signed ``document`` envelopes of about ``size`` bytes: ``(sha256, canonical)``.

    Signed by the consortium's clerks in turn (each court's clerk for its own court), padded
    with a ``title`` so that the canonical envelope is ``size`` bytes give or take one.
    """
    from ledger.genesis import load_genesis

    g = load_genesis(folder / "genesis.toml")
    signers = []
    for node in g.nodes:
        slug = next(c.slug for c in DEMO_COURTS if c.code == node.court)
        key = folder / "keys" / f"{slug}-clerk1.key"
        signers.append((node.court, Ed25519Signer.from_file(key)))
    now = int(time.time() * 1000)
    out = []
    pad = 0
    for i in range(n):
        court, s = signers[i % len(signers)]
        case = f"（2026）{court}执{1 + i % 5000}号"
        digest = hashlib.sha256(b"loadgen document %d" % i).digest()
        body = {"doc_type": "执行裁定书", "doc_no": case, "sha256": digest, "size": 4096 + i,
                "media_type": "application/pdf", "title": "t" * pad}
        env = canonical(sign_entry(s, g.chain_id, make_payload("document", court,
                                                                s.public_key(), body, now,
                                                                case=case)))
        if i == 0 and len(env) < size:  # one padding length fits all: sizes barely vary
            pad = size - len(env)
            body["title"] = "t" * pad
            env = canonical(sign_entry(s, g.chain_id, make_payload(
                "document", court, s.public_key(), body, now, case=case)))
        out.append((digest, env))
    return out


def courtledger_submit(recs: list[tuple[bytes, bytes]]) -> Op:
    """``POST /v1/entries?wait=commit`` of record ``seq``; True once it is committed."""
    async def op(conn: Conn, seq: int) -> bool:
        status, data = await conn.request("POST", "/v1/entries?wait=commit", recs[seq][1],
                                          "application/msgpack")
        return status == 200 and json.loads(data)["entries"][0]["status"] == "committed"
    return op


def etcd_put(recs: list[tuple[bytes, bytes]]) -> Op:
    """The same record as an etcd put through the gateway; True once etcd answered 200."""
    import base64

    async def op(conn: Conn, seq: int) -> bool:
        digest, env = recs[seq % len(recs)]  # etcd refuses no repeat: a put is a put
        body = json.dumps({"key": base64.b64encode(b"doc/" + digest.hex().encode()).decode(),
                           "value": base64.b64encode(env).decode()}).encode()
        status, _ = await conn.request("POST", "/v3/kv/put", body)
        return status == 200
    return op


def verify_get(prefix: str, digests: list[bytes]) -> Op:
    """``GET {prefix}{sha256-hex}`` over known digests (courtledger's public API or bare)."""
    async def op(conn: Conn, seq: int) -> bool:
        status, data = await conn.request("GET", prefix + digests[seq % len(digests)].hex())
        return status == 200 and b"true" in data
    return op


def etcd_lookup(digests: list[bytes]) -> Op:
    """etcd's range read of the key a put stored: the same look-up on etcd."""
    import base64

    async def op(conn: Conn, seq: int) -> bool:
        key = b"doc/" + digests[seq % len(digests)].hex().encode()
        status, data = await conn.request(
            "POST", "/v3/kv/range", json.dumps({"key": base64.b64encode(key).decode()}).encode())
        return status == 200 and b'"kvs"' in data
    return op


# --------------------------------------------------------------------------- the run


def catch_up(cluster: Cluster, folder: Path, lead: str, data: Path) -> dict[str, Any]:
    """A new court's copy: ``courtledger follow --once`` from empty to the leader's head.

    Every block is fetched over the internal API and checked as the auditor checks it
    (signatures, links, Merkle roots, checkpoint quorums) before it is stored. Timed by the
    wall clock and by the follower's CPU time.
    """
    import resource

    import httpx

    head = httpx.get(cluster.internal(lead) + "/v1/head", timeout=10).json()
    token = sorted((folder / "keys").glob("*-inspector.token")) or sorted(
        (folder / "keys").glob("*.token"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "node.cli", "follow", "--from",
                          cluster.internal(lead), "--token", str(token[0]), "--data", str(data),
                          "--genesis", str(folder / "genesis.toml"), "--once"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=900)
    finally:
        _killpg(p)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise RuntimeError(f"follow --once failed: {err.decode()[-500:]}")
    n = int(head["tree_size"])
    return {"entries": n, "blocks": int(head["height"]), "seconds": round(wall, 2),
            "cpu_s": round(cpu, 2), "entries_per_s": n / wall,
            "entries_per_cpu_s": n / cpu if cpu else None}


def _killpg(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def run(seconds: float, levels: tuple[int, ...], work: Path) -> dict[str, Any]:
    """Both systems, every concurrency, and the look-ups; the results as one dict."""
    out: dict[str, Any] = {"seconds_per_level": seconds, "record_bytes": RECORD_BYTES}
    folder = work / "consortium"
    init_consortium(folder, 3, base_port=free_port() // 10 * 10 % 50000 + 10000)
    # Enough records for the fastest plausible rate at every level, plus the warm-ups.
    need = int(sum(min(4000, 60 * c) for c in levels) * seconds / 2) + 2000
    t0 = time.perf_counter()
    recs = records(folder, need)
    out["presign"] = {"records": need, "seconds": round(time.perf_counter() - t0, 1),
                      "envelope_bytes": len(recs[0][1])}
    print(f"pre-signed {need} records of {len(recs[0][1])} B", file=sys.stderr)
    cluster = Cluster(folder, extra_env={"COURTLEDGER_PUBLIC__RATE_PER_SECOND": "1000000",
                                         "COURTLEDGER_PUBLIC__RATE_BURST": "1000000"})
    ours: list[dict[str, Any]] = []
    try:
        cluster.start_all()
        cluster.wait_ready(timeout=120)
        lead = cluster.leader()
        assert lead is not None
        port = _port(cluster.internal(lead))
        submit = courtledger_submit(recs)
        seq = asyncio.run(closed_loop(port, submit, 16, 2.0))["next"]  # warm-up
        for c in levels:
            r = asyncio.run(closed_loop(port, submit, c, seconds, seq))
            seq = r.pop("next")
            if seq >= len(recs):
                raise RuntimeError("ran out of pre-signed records: raise the estimate")
            ours.append(r)
            print(f"courtledger c={c}: {r}", file=sys.stderr)
        committed = [d for d, _ in recs[:seq]]
        pub = _port(cluster.public(lead))
        r = asyncio.run(closed_loop(pub, verify_get("/v1/verify/", committed[:5000]), 16, seconds))
        r.pop("next")
        out["verify_node"] = r
        out["catch_up"] = catch_up(cluster, folder, lead, work / "follower")
    finally:
        cluster.stop_all()
        for p in list(cluster.procs.values()):
            _killpg(p)
    out["courtledger"] = ours
    theirs: list[dict[str, Any]] = []
    with EtcdCluster(work / "etcd") as etcd:
        out["etcd_version"] = etcd.version
        put = etcd_put(recs)
        seq = asyncio.run(closed_loop(etcd.leader_port, put, 16, 2.0))["next"]
        for c in levels:
            r = asyncio.run(closed_loop(etcd.leader_port, put, c, seconds, seq))
            seq = r.pop("next")
            theirs.append(r)
            print(f"etcd c={c}: {r}", file=sys.stderr)
        r = asyncio.run(closed_loop(etcd.leader_port, etcd_lookup(committed[:5000]), 16, seconds))
        r.pop("next")
        out["verify_etcd"] = r
    out["etcd"] = theirs
    # The bare endpoint: the same LevelDB key, read from a copy of that node's store.
    copy = work / "bare-store"
    shutil.copytree(folder / "data" / lead / "ledger", copy)
    bare_port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(copy), str(bare_port)],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                asyncio.run(Conn("127.0.0.1", bare_port).request("GET", "/bare/00"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        r = asyncio.run(closed_loop(bare_port, verify_get("/bare/", committed[:5000]), 16,
                                    seconds))
        r.pop("next")
        out["verify_bare"] = r
    finally:
        _killpg(bare)
    return out


def main() -> int:
    """Run and print (or print JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    levels = tuple(int(x) for x in args.concurrency.split(","))
    work = Path(tempfile.mkdtemp(prefix="loadgen-"))
    try:
        out = run(args.seconds, levels, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return 0
    for a, b in zip(out["courtledger"], out["etcd"], strict=True):
        print(f"c={a['concurrency']:>3}: courtledger {a['rate']:8.0f}/s p99 {a['p99_ms']:7.1f} ms"
              f" | etcd {b['rate']:8.0f}/s p99 {b['p99_ms']:7.1f} ms"
              f" | ratio {a['rate'] / b['rate']:.2f}")
    cu = out["catch_up"]
    print(f"catch-up (follow --once): {cu['entries']} entries in {cu['blocks']} blocks, "
          f"{cu['seconds']} s ({cu['entries_per_s']:.0f}/s; {cu['cpu_s']} CPU-s)")
    for k in ("verify_node", "verify_bare", "verify_etcd"):
        print(f"{k}: {out[k]['rate']:.0f}/s p99 {out[k]['p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
