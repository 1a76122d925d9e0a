"""How cost grows with the log (issue 12): ``make bench-scale`` / ``python bench/scale.py``.

    python bench/scale.py [--max-entries 10000000] [--max-seconds 3600] [--dir D]

Appends synthetic signed ``document`` entries (``ledger_bench.document``: real Ed25519
signatures by a clerk, each entry distinct) to one ``LedgerStore`` in blocks of 1,000 (one
synced LevelDB batch per block; validity checks off, as a block follower that trusts its
checkpoints would not skip them but the store's costs are what is measured here), until
``--max-entries`` or until ``--max-seconds`` are spent. Entries are signed by worker processes
(one per core) while the main process appends, so signing does not hide the store.

At log sizes 10k, 30k, 100k, 300k, 1M, 3M, 10M (and the last size reached) it measures, on
the open store as a node serves from it (64 MiB node cache):

* append rate: entries/s over the segment since the previous mark (wall clock);
* inclusion proof latency (random leaf, tree head size), p50 and p99 over 300 proofs;
* consistency proof latency (random old size, head size), p50 and p99 over 300 proofs;
* verify-by-hash latency: what ``GET /v1/verify/{sha256}`` reads (head, content index,
  entry, block header), p50 and p99 over 300 random known documents;
* RSS (and its anonymous part) of the process;
* bytes on disk per entry (the store folder's size ÷ entries) beside the raw envelope size.

It writes ``docs/scale.json`` and ``docs/scale.png`` (six panels against log size) and prints
one line per mark. Targets (issue 12): each per-operation cost within 1.5× from 1M to 10M
entries, RSS flat, disk per entry under 2× the raw envelope.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from ledger_bench import BLOCK, bench_genesis, document, key, memory_mib  # noqa: E402

from ledger.blocks import build_block  # noqa: E402
from ledger.crypto import sha256  # noqa: E402
from ledger.encoding import canonical  # noqa: E402
from ledger.merkle import MerkleLog  # noqa: E402
from ledger.store import LedgerStore, OverlayNodeStore  # noqa: E402

MARKS = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
SAMPLES = 300
_GENESIS: Any = None


def _sign_block(b: int) -> list[dict[str, Any]]:
    """Worker: the signed entries of block ``b`` (entry n anchors sha256(n))."""
    global _GENESIS
    if _GENESIS is None:
        _GENESIS = bench_genesis()
    return [document(_GENESIS, b * BLOCK + i) for i in range(BLOCK)]


def disk_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (what the store occupies)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _lat(fn: Any, args: list[Any]) -> tuple[float, float]:
    """p50 and p99 in microseconds of ``fn(*a)`` over ``args``."""
    xs = []
    for a in args:
        t0 = time.perf_counter()
        fn(*a)
        xs.append(time.perf_counter() - t0)
    xs.sort()
    return 1e6 * xs[len(xs) // 2], 1e6 * xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def measure(store: LedgerStore, path: Path, n: int, rng: random.Random) -> dict[str, Any]:
    """The per-operation costs, memory and disk at log size ``n``."""
    inc = _lat(store.inclusion_proof, [(rng.randrange(n), n) for _ in range(SAMPLES)])
    pairs = []
    for _ in range(SAMPLES):
        old = rng.randrange(1, n + 1)
        pairs.append((old, n))
    con = _lat(store.consistency_proof, pairs)

    def verify(digest: bytes) -> None:
        # What node.chain.verify_document reads for GET /v1/verify/{sha256}, uncached.
        store.head()
        for eid in store.entries_by_sha256(digest):
            got = store.entry(eid)
            assert got is not None
            store.header(got[1])

    ver = _lat(verify, [(sha256(rng.randrange(n).to_bytes(8, "big")),) for _ in range(SAMPLES)])
    mem = memory_mib()
    disk = disk_bytes(path)
    return {"entries": n, "inclusion_us": inc, "consistency_us": con, "verify_us": ver,
            "rss_mib": mem.get("rss"), "anon_mib": mem.get("anon"),
            "disk_bytes_per_entry": disk / n, "proof_hashes": len(store.inclusion_proof(0, n))}


def run(path: Path, max_entries: int, max_seconds: float) -> dict[str, Any]:
    """Append until done or out of time, measuring at each mark."""
    genesis = bench_genesis()
    store = LedgerStore.open(path, genesis, create=True)
    proposer = key("node-0")
    rng = random.Random(12)
    envelope = len(canonical(document(genesis, 0)))
    marks = sorted({m for m in MARKS if m < max_entries} | {max_entries})
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    seg_t, seg_n = time.perf_counter(), 0
    n = 0
    # Leave time for the last measurement (a few seconds) inside the budget.
    budget_end = started + max_seconds - 15
    workers = os.cpu_count() or 1  # signing is ~2x the append cost: keep every core busy
    stopped_by = "entries"
    with mp.get_context("fork").Pool(workers) as pool:
        # A bounded window of blocks being signed: results must not pile up in this process,
        # whose RSS is one of the figures.
        total, nxt = max_entries // BLOCK, 0
        pending: deque[Any] = deque()
        try:
            while pending or nxt < total:
                while nxt < total and len(pending) < 4 * workers:
                    pending.append(pool.apply_async(_sign_block, (nxt,)))
                    nxt += 1
                envs = pending.popleft().get()
                height, prev, _ = store.head()
                block = build_block(proposer, genesis.chain_id, prev, envs,
                                    log=MerkleLog(genesis.hash_alg, OverlayNodeStore(store.nodes),
                                                  size=n),
                                    time=prev["time"] + 1, proposer="node-0", term=1)
                store.append_block(block, raft_index=height + 1)
                n += len(envs)
                now = time.perf_counter()
                out_of_time = now > budget_end
                if n in marks or out_of_time:
                    rate = (n - seg_n) / (now - seg_t)
                    row = measure(store, path, n, rng)
                    row["append_per_s"] = rate
                    row["elapsed_s"] = now - started
                    rows.append(row)
                    print(f"{n:>11,} entries  append {rate:8,.0f}/s  inclusion p50 "
                          f"{row['inclusion_us'][0]:6.0f} us  consistency p50 "
                          f"{row['consistency_us'][0]:6.0f} us  verify p50 "
                          f"{row['verify_us'][0]:6.0f} us  RSS {row['rss_mib']:6.0f} MiB  "
                          f"disk {row['disk_bytes_per_entry']:5.0f} B/entry "
                          f"(envelope {envelope} B)  at {row['elapsed_s']:5.0f} s", flush=True)
                    seg_t, seg_n = time.perf_counter(), n
                if out_of_time:
                    stopped_by = "time"
                    break
        finally:
            pool.terminate()
            store.close()
    return {"max_entries": max_entries, "max_seconds": max_seconds, "reached": n,
            "stopped_by": stopped_by, "seconds": round(time.perf_counter() - started, 1),
            "envelope_bytes": envelope, "signing_workers": workers, "block": BLOCK,
            "cpus": os.cpu_count(), "rows": rows}


def plot(res: dict[str, Any], out: Path) -> None:
    """Six panels against log size (log-log where it helps)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    x = [r["entries"] for r in rows]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    panels = [
        ("append rate (entries/s)", [r["append_per_s"] for r in rows], None),
        ("inclusion proof (µs)", [r["inclusion_us"][0] for r in rows],
         [r["inclusion_us"][1] for r in rows]),
        ("consistency proof (µs)", [r["consistency_us"][0] for r in rows],
         [r["consistency_us"][1] for r in rows]),
        ("verify-by-hash read (µs)", [r["verify_us"][0] for r in rows],
         [r["verify_us"][1] for r in rows]),
        ("RSS (MiB)", [r["rss_mib"] for r in rows], [r["anon_mib"] for r in rows]),
        ("disk bytes per entry", [r["disk_bytes_per_entry"] for r in rows], None),
    ]
    for ax, (title, y, y2) in zip(axes.flat, panels, strict=True):
        ax.plot(x, y, "o-", label="p50" if y2 and "RSS" not in title else title.split(" (")[0])
        if y2:
            ax.plot(x, y2, "s--", label="anonymous" if "RSS" in title else "p99")
            ax.legend(fontsize=8)
        if "disk" in title:
            ax.axhline(res["envelope_bytes"], color="grey", ls=":", label="raw envelope")
            ax.axhline(2 * res["envelope_bytes"], color="red", ls=":", label="2× envelope")
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if "µs" in title:
            ax.set_yscale("log")  # p99 on a shared machine can be 100x p50
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_xlabel("log size (entries)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"courtledger store cost against log size (reached {res['reached']:,} "
                 f"entries in {res['seconds']:.0f} s)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


NATIONAL = 327_000_000  # 司法链's records at the end of 2019 (issue 12)
BEGIN, END = "<!-- projection:begin -->", "<!-- projection:end -->"


def projection(res: dict[str, Any], bench: dict[str, Any] | None) -> str:
    """Markdown: 327 million entries projected from the measured curves (and ``make bench``).

    Disk: the bytes per entry at the largest size reached, times the count (LevelDB's
    per-entry cost settles once compactions run; the curve shows whether it had). Proof
    costs: the hashes grow with log2(n) (RFC 9162 §2.1.3), so the measured latency at the
    largest size is scaled by log2(327M) / log2(n) — and the measured 1M→max growth is shown
    beside it, to judge that assumption. Audit and catch-up: the audit rate per CPU-second
    from ``make bench`` (``docs/benchmarks.json``), with the append rate measured here.
    """
    import math

    last = res["rows"][-1]
    n = last["entries"]
    levels = math.ceil(math.log2(NATIONAL))
    scale = math.log2(NATIONAL) / math.log2(n)
    disk = last["disk_bytes_per_entry"] * NATIONAL
    out = [f"Measured up to **{n:,} entries** in {res['seconds']:.0f} s "
           f"(`bench/scale.py --max-seconds {res['max_seconds']:g}`, stopped by "
           f"{res['stopped_by']}); projected to {NATIONAL:,}:", "",
           "| quantity | measured at " + f"{n:,}" + " | projected at 327M | how |",
           "| --- | --- | --- | --- |",
           f"| disk | {last['disk_bytes_per_entry']:.0f} B/entry "
           f"(envelope {res['envelope_bytes']} B) | {disk / 1e9:,.0f} GB | × entries |",
           f"| inclusion proof | {last['proof_hashes']} hashes, p50 "
           f"{last['inclusion_us'][0]:.0f} µs | {levels} hashes = {32 * levels} B, "
           f"~{last['inclusion_us'][0] * scale:.0f} µs | hashes ⌈log2 n⌉ (RFC 9162 §2.1.3) |",
           f"| consistency proof | p50 {last['consistency_us'][0]:.0f} µs | ≤ {levels + 1} "
           f"hashes ≤ {32 * (levels + 1)} B, ~{last['consistency_us'][0] * scale:.0f} µs "
           f"| ≤ ⌈log2 n⌉+1 hashes (RFC 9162 §2.1.4) |",
           f"| verify-by-hash read | p50 {last['verify_us'][0]:.0f} µs | "
           f"~{last['verify_us'][0] * scale:.0f} µs | LevelDB levels grow like log n |",
           f"| append (signed by workers, validity checks off) | "
           f"{last['append_per_s']:,.0f} entries/s | "
           f"{NATIONAL / last['append_per_s'] / 3600:,.1f} h to rebuild a store | "
           f"entries ÷ rate |"]
    if bench and "audit" in bench:
        rate = bench["audit"]["rate"]
        cores = bench["machine"]["cpus"]
        out.append(f"| full audit (`audit chain`) | {rate:,.0f} entries/CPU-s "
                   f"(`make bench`) | {NATIONAL / rate / 3600:,.1f} h on one core, "
                   f"{NATIONAL / rate / 3600 / 16:,.1f} h on 16 | entries ÷ rate |")
        wire = res["envelope_bytes"] * 1.2
        for mbit in (100, 1000):
            net_h = NATIONAL * wire * 8 / (mbit * 1e6) / 3600
            cpu_h = NATIONAL / (rate * cores) / 3600
            out.append(f"| new court catch-up, {mbit} Mbit/s, {cores} cores | — | "
                       f"{max(net_h, cpu_h):,.1f} h (network {net_h:,.1f} h, checks "
                       f"{cpu_h:,.1f} h) | the slower of download and verify |")
    cu = (bench or {}).get("loadgen", {}).get("catch_up")
    if cu and cu.get("entries_per_cpu_s"):
        rate = cu["entries_per_cpu_s"]
        out.append(f"| new court catch-up, `follow --once` as measured | {rate:,.0f} entries/"
                   f"CPU-s over {cu['entries']:,} entries (`make bench`) | "
                   f"{NATIONAL / rate / 3600:,.0f} h of one core | entries ÷ rate; a small "
                   f"run, start-up included: pessimistic |")
    big = [r for r in res["rows"] if r["entries"] >= 1_000_000]
    if len(big) >= 2:
        a, b = big[0], big[-1]
        growth = ", ".join(f"{k.split('_')[0]} {b[k][0] / a[k][0]:.2f}×"
                           for k in ("inclusion_us", "consistency_us", "verify_us"))
        out += ["", f"Per-operation growth from {a['entries']:,} to {b['entries']:,} "
                    f"(p50): {growth}; RSS {a['rss_mib']:.0f} → {b['rss_mib']:.0f} MiB."]
    return "\n".join(out)


def write_projection(doc: Path, res: dict[str, Any], bench: dict[str, Any] | None) -> None:
    """Replace the block between the projection markers of ``doc`` (if it has them)."""
    if not doc.exists():
        return
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(f"{head}{BEGIN}\n{projection(res, bench)}\n{END}{tail}")


def main() -> int:
    """Run, write docs/scale.json and docs/scale.png, print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-entries", type=int, default=10_000_000)
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--dir", default=None, help="store folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where scale.json/png go")
    ap.add_argument("--report", action="store_true",
                    help="only rewrite docs/scaling.md's projection from docs/scale.json")
    args = ap.parse_args()
    bench_json = args.out / "benchmarks.json"
    bench = json.loads(bench_json.read_text()) if bench_json.exists() else None
    if args.report:
        res = json.loads((args.out / "scale.json").read_text())
        write_projection(args.out / "scaling.md", res, bench)
        print(projection(res, bench))
        return 0
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        res = run(work / "store", args.max_entries, args.max_seconds)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    res["machine"] = {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(res, args.out / "scale.png")
    write_projection(args.out / "scaling.md", res, bench)
    rows = res["rows"]
    print(f"reached {res['reached']:,} entries in {res['seconds']:.0f} s "
          f"(stopped by {res['stopped_by']}); wrote {args.out / 'scale.json'} and scale.png")
    big = [r for r in rows if r["entries"] >= 1_000_000]
    if len(big) >= 2:
        a, b = big[0], big[-1]
        for k in ("inclusion_us", "consistency_us", "verify_us"):
            print(f"{k} p50 growth {a['entries']:,} -> {b['entries']:,}: "
                  f"{b[k][0] / a[k][0]:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
