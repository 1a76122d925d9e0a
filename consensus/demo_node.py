"""A Raft node process with a trivial application, for end-to-end tests and the benchmark.

``python -m consensus.demo_node --id n1 --config cluster.json`` runs one member: the LevelDB log
(fsync on), the mutual-TLS transport and the runtime, and applies committed entries to a list
of SHA-256 digests.  The test or benchmark drives it over a small control port (plain TCP on
loopback, one JSON object per line): ``status``, ``propose``, ``load`` (an in-process load
generator: proposals are made on the leader itself, as the benchmark requires) and ``digests``.

The cluster file (JSON)::

    {"data_dir": "...", "tick_ms": 50, "election_tick": 10, "fsync": true,
     "nodes": {"n1": {"raft": "127.0.0.1:7001", "control": "127.0.0.1:7101",
                      "cert": "n1.crt", "key": "n1.key"}, ...}}

Relative paths resolve against the cluster file's folder.  ``--peer ID=HOST:PORT`` overrides a
peer's Raft address (the certificate pin still applies).  This module is a test harness, not the
product: the node (``node/``) composes the same runtime with the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .core import Config, NotLeader, ProposalDropped, RaftCore
from .logstore import LogStore
from .runtime import CommitUnknown, Runtime
from .transport import Member, Transport
from .types import ConfState, Entry

__all__ = ["ProcessCluster", "main", "payload"]

log = logging.getLogger("consensus.demo_node")


def payload(tag: str, seq: int, size: int) -> bytes:
    """The deterministic data of proposal ``seq`` of load ``tag``, ``size`` bytes long."""
    head = f"{tag}:{seq}:".encode()
    return head + b"." * max(0, size - len(head))


def digest(data: bytes) -> str:
    """Short digest of applied data (what ``digests`` reports)."""
    return hashlib.sha256(data).hexdigest()[:16]


class DemoNode:
    """One process: store, transport, runtime, an applied-digest list and a control server."""

    def __init__(self, node_id: str, config_path: Path, overrides: dict[str, str]) -> None:
        cfg = json.loads(config_path.read_text())
        base = config_path.parent
        nodes: dict[str, dict[str, str]] = cfg["nodes"]
        me = nodes[node_id]
        self.node_id = node_id
        self.control_addr = me["control"]
        members = [
            Member(nid, spec["raft"], (base / spec["cert"]).read_bytes())
            for nid, spec in sorted(nodes.items())
        ]
        data_dir = base / cfg.get("data_dir", "data") / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        voters = sorted(nodes)
        self.store = LogStore(
            str(data_dir / "raft"), ConfState(voters), sync=bool(cfg.get("fsync", True))
        )
        hs, _ = self.store.initial_state()
        self.started_from = {"term": hs.term, "last_index": self.store.last_index()}
        core = RaftCore(
            Config(
                node_id,
                voters,
                election_tick=int(cfg.get("election_tick", 10)),
                heartbeat_tick=1,
            ),
            self.store,
            random.Random(),
        )
        self.applied: list[tuple[int, str]] = []
        self.runtime = Runtime(
            core,
            self.store,
            self._send,
            self._apply,
            tick_interval=int(cfg.get("tick_ms", 50)) / 1000,
            max_pending=int(cfg.get("max_pending", 8192)),
        )
        self.transport = Transport(
            node_id,
            str(base / me["cert"]),
            str(base / me["key"]),
            members,
            on_raft=self.runtime.receive,
            listen=me["raft"],
            overrides=overrides,
        )

    def _send(self, peer: str, message: dict[str, Any]) -> None:
        self.transport.send(peer, message)

    def _apply(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.type == "normal":
                self.applied.append((e.index, digest(e.data)))

    # -- control -------------------------------------------------------------------------

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                request = json.loads(line)
                op = request.get("op")
                if op == "load":
                    await self._load(request, writer)
                    continue
                if op == "status":
                    reply: dict[str, Any] = self.status()
                elif op == "propose":
                    reply = await self._propose_one(bytes.fromhex(request["data"]))
                elif op == "digests":
                    start = int(request.get("from", 0))
                    reply = {"digests": [d for d in list(self.applied) if d[0] >= start]}
                else:
                    reply = {"error": f"unknown op {op!r}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, json.JSONDecodeError, ValueError) as exc:
            log.info("control connection closed: %r", exc)
        finally:
            writer.close()

    def status(self) -> dict[str, Any]:
        """Runtime status, transport counters and where this process started from."""
        status = dict(self.runtime.status())
        status["applied_normal"] = len(self.applied)
        status["transport"] = dict(self.transport.counters)
        status["started_from"] = self.started_from
        status["cpu_s"] = time.process_time()  # user+system CPU of this process, all threads
        return status

    async def _propose_one(self, data: bytes) -> dict[str, Any]:
        try:
            return {"index": await self.runtime.propose(data)}
        except NotLeader as exc:
            return {"error": "not_leader", "leader": exc.leader}
        except (CommitUnknown, ProposalDropped) as exc:
            return {"error": type(exc).__name__, "detail": str(exc)}

    async def _load(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """Propose ``count`` entries of ``size`` bytes with ``outstanding`` in flight.

        With ``stream``, each commit is reported as it happens (``{"c": seq, "i": index}``),
        so a test that kills this process knows exactly which entries were acknowledged.
        """
        count, size = int(req["count"]), int(req["size"])
        outstanding, tag = int(req["outstanding"]), str(req.get("tag", "load"))
        stream = bool(req.get("stream", False))
        rate = float(req.get("rate", 0))  # open loop: start proposals at this rate (per second)
        latencies: list[float] = []
        errors: dict[str, int] = {}
        next_seq = 0

        async def one(seq: int) -> bool:
            t0 = time.perf_counter()
            try:
                index = await self.runtime.propose(payload(tag, seq, size))
            except (NotLeader, CommitUnknown, ProposalDropped) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return False
            latencies.append(time.perf_counter() - t0)
            if stream:
                writer.write(json.dumps({"c": seq, "i": index}).encode() + b"\n")
            return True

        async def worker() -> None:
            nonlocal next_seq
            while next_seq < count:
                seq = next_seq
                next_seq += 1
                if not await one(seq):
                    return

        async def paced() -> None:
            # Open loop (the "p99 at 5,000/s" figure): proposals start on schedule whatever
            # the latency; the runtime's own back-pressure (max_pending) is the only cap.
            tasks: list[asyncio.Task[bool]] = []
            t0 = time.perf_counter()
            for seq in range(count):
                delay = t0 + seq / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(seq)))
            await asyncio.gather(*tasks)

        started = time.perf_counter()
        if rate > 0:
            await paced()
        else:
            await asyncio.gather(*(worker() for _ in range(outstanding)))
        elapsed = time.perf_counter() - started
        latencies.sort()

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

        reply = {
            "done": True,
            "committed": len(latencies),
            "errors": errors,
            "elapsed": elapsed,
            "rate": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "saves": self.runtime.counters["saves"],
        }
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.transport.start()
        await self.runtime.start()
        host, _, port = self.control_addr.rpartition(":")
        server = await asyncio.start_server(self._control, host, int(port))
        print(f"{self.node_id} ready", flush=True)
        await stop.wait()
        server.close()
        await self.runtime.stop()
        await self.transport.stop()
        self.store.close()


def free_port() -> int:
    """A port that was free a moment ago on loopback (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ProcessCluster:
    """Real ``demo_node`` processes on loopback, for tests and the benchmark.

    Writes certificates (:func:`consensus.tls.generate_node_certificate`) and a cluster file
    under ``root``, starts and kills processes, and talks to their control ports.
    """

    def __init__(
        self,
        root: Path,
        ids: tuple[str, ...] = ("n1", "n2", "n3"),
        *,
        tick_ms: int = 50,
        election_tick: int = 10,
        fsync: bool = True,
    ) -> None:
        from . import tls

        self.root = root
        self.ids = ids
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        nodes: dict[str, dict[str, str]] = {}
        for nid in ids:
            cert, key = tls.generate_node_certificate(nid)
            (root / f"{nid}.crt").write_bytes(cert)
            (root / f"{nid}.key").write_bytes(key)
            (root / f"{nid}.key").chmod(0o600)
            nodes[nid] = {
                "raft": f"127.0.0.1:{free_port()}",
                "control": f"127.0.0.1:{free_port()}",
                "cert": f"{nid}.crt",
                "key": f"{nid}.key",
            }
        self.nodes = nodes
        self.config = root / "cluster.json"
        self.config.write_text(
            json.dumps(
                {
                    "data_dir": "data",
                    "tick_ms": tick_ms,
                    "election_tick": election_tick,
                    "fsync": fsync,
                    "nodes": nodes,
                },
                indent=1,
            )
        )

    def start(self, nid: str) -> None:
        """Start (or restart) node ``nid``; its output goes to ``root/<nid>.log``."""
        out = open(self.root / f"{nid}.log", "ab")  # handed to the child, closed below
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs[nid] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consensus.demo_node",
                "--id",
                nid,
                "--config",
                str(self.config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        out.close()

    def start_all(self) -> None:
        """Start every node and wait until each answers on its control port."""
        for nid in self.ids:
            self.start(nid)
        for nid in self.ids:
            self.wait_up(nid)

    def wait_up(self, nid: str, timeout: float = 20.0) -> None:
        """Wait until ``nid`` answers ``status``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request(nid, {"op": "status"}, timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline or self.procs[nid].poll() is not None:
                    raise
                time.sleep(0.05)

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default: kill -9) to ``nid`` and reap it."""
        proc = self.procs.pop(nid, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(30)

    def stop_all(self) -> None:
        """SIGTERM every node, then SIGKILL any that does not exit within 10 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def connect(self, nid: str, timeout: float = 10.0) -> socket.socket:
        """A control connection to ``nid``."""
        host, _, port = self.nodes[nid]["control"].rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)

    def request(self, nid: str, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """One control request and its (last-line) answer."""
        with self.connect(nid, timeout) as sock:
            sock.sendall(json.dumps(req).encode() + b"\n")
            with sock.makefile("rb") as f:
                while True:
                    line = f.readline()
                    if not line:
                        raise ConnectionError(f"{nid} closed the control connection")
                    reply: dict[str, Any] = json.loads(line)
                    if "c" not in reply:
                        return reply

    def status(self, nid: str) -> dict[str, Any]:
        """``status`` of ``nid``."""
        return self.request(nid, {"op": "status"}, timeout=5)

    def leader(self, among: tuple[str, ...] | None = None, timeout: float = 30.0) -> str:
        """Wait until the live nodes agree on one leader; return its id."""
        deadline = time.monotonic() + timeout
        among = among or tuple(n for n in self.ids if n in self.procs)
        while time.monotonic() < deadline:
            try:
                st = [self.status(n) for n in among]
            except OSError:
                time.sleep(0.1)
                continue
            leaders = {s["leader"] for s in st}
            if len(leaders) == 1 and "" not in leaders:
                lead = str(leaders.pop())
                if any(s["id"] == lead and s["role"] == "leader" for s in st):
                    return lead
            time.sleep(0.1)
        raise TimeoutError("no agreed leader")

    def digests(self, nid: str) -> list[tuple[int, str]]:
        """``(index, digest)`` of every normal entry ``nid`` applied, in order."""
        return [(int(i), str(d)) for i, d in self.request(nid, {"op": "digests"})["digests"]]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m consensus.demo_node")
    parser.add_argument("--id", required=True)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--peer", action="append", default=[], help="ID=HOST:PORT override")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=f"{args.id} %(levelname)s %(message)s")
    overrides = dict(p.split("=", 1) for p in args.peer)
    node = DemoNode(args.id, args.config, overrides)
    profile = os.environ.get("CONSENSUS_DEMO_PROFILE")
    if profile:  # for finding hot spots in the benchmark: cProfile stats to this file prefix
        import cProfile

        cProfile.runctx("asyncio.run(node.run())", globals(), locals(), f"{profile}.{args.id}")
    else:
        asyncio.run(node.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
