"""Cluster benchmark (issue 6): ``python bench/cluster_bench.py [--entries N] [--clients K]``.

Starts 3 court nodes on loopback (validity, fsync, indexing and cosigning all on), pre-signs
every entry before the timed window, drives the internal API from several client processes with
100 entries per request and then 1 per request (``wait=commit``: an entry counts once
committed), and prints:

* committed entries per second end to end, p50/p99 submit-to-commit latency per request;
* verify-by-hash requests per second on a node's public listener, beside a bare FastAPI
  endpoint reading the same LevelDB key from a copy of that node's store, in the same run;
* RSS per node and CPU milliseconds per committed entry for each process;
* the physical ceiling: the single-core Ed25519 verify rate (pinned to one core, cluster
  stopped, median of 5, before and after), times the cores, divided by the signature
  verifications done per entry across the cluster, and the ratio of the measured rate to it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from ledger.crypto import Ed25519Signer  # noqa: E402
from ledger.encoding import canonical  # noqa: E402
from ledger.entries import make_payload, sign_entry  # noqa: E402
from node.demo import Cluster  # noqa: E402
from node.init import DEMO_COURTS, init_consortium  # noqa: E402

#: Signature verifications per entry across a 3-node cluster: validity on apply on each of the
#: 3 nodes. The leader's admission check is not counted because apply reuses its result
#: (node.chain.verified, ledger.entries.VerifiedSignatures). Checkpoint signatures are per
#: block, not per entry.
SIGS_PER_ENTRY = 3


# --------------------------------------------------------------------------- Ed25519 ceiling


def _verify_rate_worker(seconds: float, q: Any) -> None:
    os.sched_setaffinity(0, {0})
    import nacl.signing

    key = nacl.signing.SigningKey(b"\x07" * 32)
    msg = b"courtledger:entry:v1\x00" + b"\x00" * 32 + b"x" * 300
    sm = key.sign(msg)
    vk = key.verify_key
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            vk.verify(sm)
        n += 200
    q.put((n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)))


def verify_rate() -> tuple[float, float]:
    """Median of 5 single-core Ed25519 verify rates pinned to core 0: per wall second, and per
    CPU second (the latter does not depend on what else the shared machine runs)."""
    wall, cpu = [], []
    for _ in range(5):
        q: Any = mp.Queue()
        p = mp.Process(target=_verify_rate_worker, args=(0.6, q))
        p.start()
        w, c = q.get()
        wall.append(w)
        cpu.append(c)
        p.join()
    return statistics.median(wall), statistics.median(cpu)


# --------------------------------------------------------------------------- workload


def presign(folder: Path, n: int, per_request: int, tag: str) -> list[bytes]:
    """``n`` document entries signed by the courts' clerks, as msgpack request bodies."""
    from ledger.genesis import load_genesis

    g = load_genesis(folder / "genesis.toml")
    signers = []
    for node in g.nodes:
        slug = next(c.slug for c in DEMO_COURTS if c.code == node.court)
        key = folder / "keys" / f"{slug}-clerk1.key"
        signers.append((node.court, Ed25519Signer.from_file(key)))
    now = int(time.time() * 1000)
    envs = []
    for i in range(n):
        court, s = signers[i % len(signers)]
        case = f"（2025）{court}执{1 + i % 5000}号"
        content = f"{tag} bench document {i}".encode()
        import hashlib

        body = {"doc_type": "执行裁定书", "doc_no": case,
                "sha256": hashlib.sha256(content).digest(), "size": len(content),
                "media_type": "application/pdf"}
        envs.append(sign_entry(s, g.chain_id, make_payload("document", court, s.public_key(),
                                                             body, now, case=case)))
    return [canonical(envs[i:i + per_request]) for i in range(0, n, per_request)]


def _client(url: str, bodies: list[bytes], q: Any) -> None:
    lat = []
    ok = 0
    with httpx.Client(timeout=60) as c:
        for body in bodies:
            t0 = time.perf_counter()
            for _ in range(100):
                r = c.post(url + "/v1/entries", params={"wait": "commit"}, content=body,
                           headers={"content-type": "application/msgpack"})
                if r.status_code == 200:
                    ok += len(r.json()["entries"])
                    break
                if r.status_code != 503:
                    raise SystemExit(f"refused: {r.status_code} {r.text[:200]}")
                time.sleep(0.05)
            lat.append(time.perf_counter() - t0)
    q.put((ok, lat))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive(cluster: Cluster, bodies: list[bytes], clients: int, per_request: int) -> dict[str, Any]:
    """Run ``clients`` processes over the bodies; return rates, latencies and CPU per entry."""
    urls = [cluster.internal(i) for i in cluster.ids]
    shares = [bodies[k::clients] for k in range(clients)]
    q: Any = mp.Queue()
    procs = [mp.Process(target=_client, args=(urls[k % len(urls)], shares[k], q))
             for k in range(clients)]
    node_pids = {i: p.pid for i, p in cluster.procs.items()}
    cpu0 = {i: cpu_seconds(pid) for i, pid in node_pids.items()}
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    cpu1 = {i: cpu_seconds(pid) for i, pid in node_pids.items()}
    committed = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    return {
        "per_request": per_request,
        "clients": clients,
        "committed": committed,
        "seconds": round(elapsed, 2),
        "entries_per_s": round(committed / elapsed, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "cpu_ms_per_entry": {i: round(1000 * (cpu1[i] - cpu0[i]) / max(committed, 1), 3)
                             for i in node_pids},
    }


# --------------------------------------------------------------------------- verify-by-hash


def _hammer(url: str, seconds: float, q: Any) -> None:
    n = 0
    with httpx.Client(timeout=10) as c:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            r = c.get(url)
            if r.status_code == 200:
                n += 1
    q.put(n)


def rps(url: str, seconds: float = 3.0, clients: int = 4) -> float:
    q: Any = mp.Queue()
    procs = [mp.Process(target=_hammer, args=(url, seconds, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


BARE_APP = r'''
import sys, plyvel, uvicorn
from fastapi import FastAPI
db = plyvel.DB(sys.argv[1])
app = FastAPI()
@app.get("/bare/{h}")
def bare(h: str):
    digest = bytes.fromhex(h)
    found = False
    for _k, _v in db.iterator(prefix=b"S" + digest):
        found = True
        break
    return {"anchored": found}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=20000, help="entries at 100 per request")
    ap.add_argument("--single", type=int, default=1000, help="entries at 1 per request")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print("measuring the single-core Ed25519 verify rate (before) …", file=sys.stderr)
    before = verify_rate()
    tmp = Path(tempfile.mkdtemp(prefix="courtledger-bench-"))
    folder = tmp / "c"
    init_consortium(folder, 3, base_port=29100)
    print("pre-signing …", file=sys.stderr)
    batch_bodies = presign(folder, args.entries, 100, "b")
    single_bodies = presign(folder, args.single, 1, "s")
    # The public rate limit protects a node from one client; the bench is that one client.
    cluster = Cluster(folder, extra_env={"COURTLEDGER_PUBLIC__RATE_PER_SECOND": "1000000",
                                         "COURTLEDGER_PUBLIC__RATE_BURST": "1000000"})
    cluster.start_all()
    out: dict[str, Any] = {"cores": cores}
    try:
        cluster.wait_ready(timeout=120)
        print("driving 100 per request …", file=sys.stderr)
        out["batch_100"] = drive(cluster, batch_bodies, args.clients, 100)
        print("driving 1 per request …", file=sys.stderr)
        out["single_1"] = drive(cluster, single_bodies, args.clients, 1)
        out["rss_mib"] = {i: round(rss_mib(p.pid), 1) for i, p in cluster.procs.items()}
        import hashlib

        known = hashlib.sha256(b"b bench document 7").hexdigest()
        first = cluster.ids[0]
        out["verify_rps_node"] = round(rps(cluster.public(first) + f"/v1/verify/{known}"), 1)
    finally:
        cluster.stop_all()
    # The bare endpoint reads the same LevelDB key from a copy of that node's store.
    copy = tmp / "bare-store"
    shutil.copytree(folder / "data" / cluster.ids[0] / "ledger", copy)
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(copy), "29999"])
    try:
        for _ in range(100):
            try:
                httpx.get("http://127.0.0.1:29999/bare/00", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        out["verify_rps_bare"] = round(rps(f"http://127.0.0.1:29999/bare/{known}"), 1)
    finally:
        bare.terminate()
        bare.wait()
    print("measuring the single-core Ed25519 verify rate (after) …", file=sys.stderr)
    after = verify_rate()
    rate = statistics.median([before[0], after[0]])
    cpu_rate = statistics.median([before[1], after[1]])
    ceiling = cores * rate / SIGS_PER_ENTRY
    out["ed25519_verify_per_s"] = {"before": round(before[0]), "after": round(after[0]),
                                   "per_cpu_second": round(cpu_rate)}
    # The same comparison in CPU time, robust to a shared machine: entries per CPU-second of
    # the whole cluster against the verifications one CPU-second can do.
    cpu_ms = sum(out["batch_100"]["cpu_ms_per_entry"].values())
    out["cpu_ms_per_entry_cluster"] = round(cpu_ms, 3)
    out["cpu_ratio_to_ceiling"] = round((1000 / cpu_ms) / (cpu_rate / SIGS_PER_ENTRY), 3)
    out["sig_verifications_per_entry"] = SIGS_PER_ENTRY
    out["ceiling_entries_per_s"] = round(ceiling, 1)
    out["ratio_to_ceiling"] = round(out["batch_100"]["entries_per_s"] / ceiling, 3)
    out["verify_ratio_to_bare"] = round(out["verify_rps_node"] / out["verify_rps_bare"], 3)
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    b, s = out["batch_100"], out["single_1"]
    print(f"cores {cores}; Ed25519 verify {before[0]:.0f}/s before, {after[0]:.0f}/s after "
          f"(1 core, wall); {cpu_rate:.0f} per CPU-second")
    print(f"ceiling = {cores} × {rate:.0f} ÷ {SIGS_PER_ENTRY} sig checks/entry = "
          f"{ceiling:.0f} entries/s")
    for name, r in (("100/request", b), ("1/request", s)):
        print(f"{name:>12}: {r['committed']} committed in {r['seconds']} s = "
              f"{r['entries_per_s']} entries/s; p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms "
              f"per request; CPU ms/entry {r['cpu_ms_per_entry']}")
    print(f"ratio to ceiling (100/request): {out['ratio_to_ceiling']}; in CPU time: "
          f"{cpu_ms:.3f} CPU-ms per entry across the cluster vs "
          f"{1000 * SIGS_PER_ENTRY / cpu_rate:.3f} for its signature checks = "
          f"{out['cpu_ratio_to_ceiling']}")
    print(f"verify-by-hash: node {out['verify_rps_node']}/s, bare FastAPI+LevelDB "
          f"{out['verify_rps_bare']}/s, ratio {out['verify_ratio_to_bare']}")
    print(f"RSS per node (MiB): {out['rss_mib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
