"""A 3-node PySyncObj cluster on loopback: the pure-Python Raft beside ours (issue 12).

    python bench/pysyncobj_peer.py [--seconds S] [--outstanding 1,16,64,256] [--json]

Client path, stated: like ``raft_bench`` for courtledger's Raft, each 500-byte proposal is
its own Raft entry, proposed in-process on the leader (a ``@replicated`` method called with a
callback, ``outstanding`` calls in flight) and counted when the callback reports it applied,
i.e. committed by a majority. PySyncObj batches many commands per AppendEntries (its
``appendEntriesUseBatch``, default on). Its journal is ``FileJournal`` (an mmap'ed file that
is never fsynced per entry), so its durability is weaker than ours and etcd's: the figure is
an upper bound for what a fsyncing PySyncObj would do. Peers talk plain TCP (no TLS). Its
ticks are tuned down for latency (``autoTickPeriod`` 5 ms, ``appendEntriesPeriod`` 10 ms,
instead of the defaults 50 and 100 ms, which put ~100 ms under every commit).

The three nodes are three processes, each in its own session; the driver kills their process
groups in ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

OUTSTANDING = (1, 16, 64, 256)
ENTRY = 500


def node_main(me: int, ports: list[int], work: Path, seconds: float, levels: list[int]) -> None:
    """One member. The one that becomes leader runs the load and prints one JSON line."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Store(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = SyncObjConf(journalFile=str(work / f"journal-{me}"),
                               commandsQueueSize=1_000_000, dynamicMembershipChange=False,
                               autoTickPeriod=0.005, appendEntriesPeriod=0.01)
            super().__init__(f"127.0.0.1:{ports[me]}",
                             [f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != me], conf)
            self.count = 0
            self.bytes = 0

        @replicated  # type: ignore[misc]
        def add(self, data: bytes) -> int:
            self.count += 1
            self.bytes += len(data)
            return self.count

    obj = Store()
    deadline = time.monotonic() + 60
    while not (obj.isReady() and obj._getLeader() is not None):  # noqa: SLF001
        if time.monotonic() > deadline:
            raise SystemExit("no leader")
        time.sleep(0.05)
    time.sleep(0.5)
    if not obj._isLeader():  # noqa: SLF001
        while True:  # a follower: serve until the driver kills the group
            time.sleep(1)
    results = []
    for out in [16, *levels]:  # the first run warms up
        lock = threading.Semaphore(out)
        lat: list[float] = []
        errors = [0]
        stop_at = time.perf_counter() + (1.0 if len(results) == 0 and out == 16 else seconds)

        def done(t0: float, lat: list[float] = lat, errors: list[int] = errors,
                 lock: threading.Semaphore = lock) -> Any:
            def cb(result: Any, err: Any) -> None:
                if err == 0:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors[0] += 1
                lock.release()
            return cb

        t0 = time.perf_counter()
        seq = 0
        while time.perf_counter() < stop_at:
            lock.acquire()
            seq += 1
            data = f"{out}:{seq}:".encode().ljust(ENTRY, b".")
            obj.add(data, callback=done(time.perf_counter()))
        for _ in range(out):
            lock.acquire()
        elapsed = time.perf_counter() - t0
        lat.sort()
        results.append({"outstanding": out, "ok": len(lat), "errors": errors[0],
                        "rate": len(lat) / elapsed,
                        "p50_ms": 1000 * lat[len(lat) // 2] if lat else float("nan"),
                        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]
                        if lat else float("nan")})
    print(json.dumps(results[1:]), flush=True)
    os._exit(0)


def run(seconds: float, levels: list[int]) -> list[dict[str, Any]]:
    """Start three members, wait for the leader's results, kill every member."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from consensus.demo_node import free_port

    ports = [free_port() for _ in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pysyncobj-") as tmp:
        outs = [Path(tmp) / f"out-{i}" for i in range(3)]
        try:
            for i in range(3):
                with outs[i].open("wb") as fh:
                    procs.append(subprocess.Popen(
                        [sys.executable, __file__, "--node", str(i), "--ports",
                         ",".join(map(str, ports)), "--work", tmp, "--seconds", str(seconds),
                         "--outstanding", ",".join(map(str, levels))],
                        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + 120 + seconds * (len(levels) + 2)
            while time.monotonic() < deadline:
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        text = outs[i].read_text()
                        if p.returncode == 0 and text.strip():
                            return json.loads(text.strip().splitlines()[-1])  # type: ignore[no-any-return]
                        raise RuntimeError(f"pysyncobj node {i} failed: {text[-500:]}")
                time.sleep(0.2)
            raise TimeoutError("pysyncobj: no result")
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def version() -> str:
    """PySyncObj's installed version."""
    from importlib.metadata import version as v

    return v("pysyncobj")


def main() -> int:
    """Driver (or, with ``--node``, one member)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per outstanding level")
    ap.add_argument("--outstanding", default=",".join(map(str, OUTSTANDING)))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--node", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    levels = [int(x) for x in args.outstanding.split(",")]
    if args.node is not None:
        node_main(args.node, [int(p) for p in args.ports.split(",")], Path(args.work),
                  args.seconds, levels)
        return 0
    res = run(args.seconds, levels)
    if args.json:
        print(json.dumps({"version": version(), "results": res}))
        return 0
    print(f"pysyncobj {version()}: 3 processes, in-process proposals on the leader, no fsync")
    for r in res:
        print(f"  {r['outstanding']:>3} outstanding: {r['rate']:8.0f} entries/s  "
              f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
