"""Ledger benchmark (issue 2): append, verify, proofs, chain verification and memory.

Run ``python bench/ledger_bench.py`` (``--entries N`` for the proof log size, default 1M).
It pins itself to one core (``os.sched_setaffinity``) so that every rate is single-core, and
prints one line per figure:

* Ed25519 verify rate, single core, before and after the rest (the machine's yardstick);
* signed entries appended to the LevelDB store per second, in blocks of 1,000, with validity
  checks on (``ledger.blocks.check_block`` against the store's shadow log, then
  ``LedgerStore.append_block``: one synced batch per block), and its ratio to the verify rate;
* full-chain verification entries per second (``ledger.chain.verify_chain`` over the store);
* inclusion proofs per second for uniformly random indexes over a 1M-entry log, and
  consistency proofs per second for random (old, new) pairs, with the node cache bounded to
  64 MiB and the store reopened first (a cold cache);
* memory (RSS, and its anonymous and file-mapped parts) as the proof log grows from 100k to
  1M entries, and after the proof runs.

Targets (issue 2): append ≥ 0.8 × verify rate; proofs ≥ 5,000/s; memory within 1.5× from 100k
to 1M entries.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.blocks import build_block, check_block, entry_leaf  # noqa: E402
from ledger.chain import verify_chain  # noqa: E402
from ledger.consortium import ConsortiumState  # noqa: E402
from ledger.crypto import (  # noqa: E402
    TAG_ENTRY,
    Ed25519Signer,
    sha256,
    signing_message,
    verify_signature,
)
from ledger.entries import make_payload, sign_entry  # noqa: E402
from ledger.genesis import (  # noqa: E402
    DEFAULT_ROLES,
    Genesis,
    IdentitySpec,
    NodeSpec,
    make_genesis,
    pem_certificate_der,
)
from ledger.merkle import MerkleLog  # noqa: E402
from ledger.store import DEFAULT_CACHE_BYTES, LedgerStore, OverlayNodeStore  # noqa: E402

GENESIS_TIME = 1_767_225_600_000
BLOCK = 1000


class Rate:
    """Operations per second by the wall clock and per second of this process's CPU time.

    On an idle core the two agree; on a shared machine the CPU figure is the one that says
    what the code costs, and the wall figure what this machine delivered.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.ops = 0

    def stop(self, ops: int | None = None) -> Rate:
        if ops is not None:
            self.ops = ops
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        return self

    @property
    def per_s(self) -> float:
        return self.ops / self.wall

    @property
    def per_cpu_s(self) -> float:
        return self.ops / self.cpu

    def __str__(self) -> str:
        return f"{self.per_s:,.0f} /s ({self.per_cpu_s:,.0f} per CPU-second)"


def pin_one_core() -> int:
    """Pin this process to one allowed core; return it."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def memory_mib() -> dict[str, float]:
    """This process's memory now, in MiB, from /proc/self/status.

    ``rss`` is all resident pages; ``anon`` the process's own (heap, Python objects, caches);
    ``file`` the resident pages of mapped files, mostly LevelDB's table files, which LevelDB
    reads through mmap: page cache the kernel can drop, counted in RSS all the same.
    """
    wanted = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(maxsplit=1)[0] if line.strip() else ""
            if name in wanted:
                out[wanted[name]] = int(line.split()[1]) / 1024
    return out


def describe_memory(mem: dict[str, float]) -> str:
    nan = float("nan")
    rss, anon, mapped = (mem.get(k, nan) for k in ("rss", "anon", "file"))
    return f"RSS {rss:,.1f} MiB (anonymous {anon:,.1f}, mapped files {mapped:,.1f})"


def key(name: str) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(b"bench key " + name.encode()).digest())


def bench_genesis() -> Genesis:
    import base64

    nodes = []
    for i, court in enumerate(("吉0102", "吉0103", "吉01")):
        name = f"node-{i}"
        pem = (
            "-----BEGIN CERTIFICATE-----\n"
            + base64.b64encode(b"bench certificate " + name.encode()).decode()
            + "\n-----END CERTIFICATE-----\n"
        )
        nodes.append(
            NodeSpec(
                id=name,
                court=court,
                public_key=key(name).public_key(),
                tls_certificate=pem,
                tls_fingerprint=sha256(pem_certificate_der(pem)),
                role="voter",
                raft_addr=f"127.0.0.1:{7000 + i}",
            )
        )
    identities = [IdentitySpec("clerk-0", "吉0102", ("clerk",), key("clerk-0").public_key())]
    return make_genesis(
        chain_name="courtledger-bench",
        hash_alg="sha256",
        genesis_time=GENESIS_TIME,
        nodes=nodes,
        identities=identities,
        roles=DEFAULT_ROLES,
    )


def verify_rate(seconds: float = 2.0) -> Rate:
    """Single-core Ed25519 verifications per second (strict libsodium verify)."""
    signer = key("yardstick")
    pk = signer.public_key()
    msgs = [
        signing_message(TAG_ENTRY, b"\x00" * 32, {"n": i, "pad": b"x" * 200}) for i in range(256)
    ]
    sigs = [signer.sign(TAG_ENTRY, m[len(TAG_ENTRY) :]) for m in msgs]
    rate = Rate()
    while time.perf_counter() - rate.wall < seconds:
        for m, s in zip(msgs, sigs, strict=True):
            verify_signature(pk, m, s)
        rate.ops += len(msgs)
    return rate.stop()


def document(genesis: Genesis, n: int) -> dict[str, Any]:
    body = {
        "doc_type": "执行通知书",
        "doc_no": f"（2026）吉0102执{n + 1}号",
        "sha256": sha256(n.to_bytes(8, "big")),
        "size": 1000 + n,
        "media_type": "application/pdf",
    }
    payload = make_payload(
        "document",
        "吉0102",
        key("clerk-0").public_key(),
        body,
        GENESIS_TIME + 1000,
        case=f"（2026）吉0102执{n % 5000 + 1}号",
        nonce=n.to_bytes(16, "big"),
    )
    return sign_entry(key("clerk-0"), genesis.chain_id, payload)


def bench_append(genesis: Genesis, path: Path, blocks: int) -> tuple[Rate, LedgerStore]:
    """Signed entries per second through check_block + append_block, blocks of 1,000."""
    store = LedgerStore.open(path, genesis, create=True)
    state = ConsortiumState.from_genesis(genesis)
    proposer = key("node-0")
    # Blocks are built (and entries signed) before the clock starts: that is the clients' and
    # the leader's work, not the applying node's.
    built: list[dict[str, Any]] = []
    log = MerkleLog(genesis.hash_alg)
    prev = genesis.header
    for b in range(blocks):
        entries = [document(genesis, b * BLOCK + i) for i in range(BLOCK)]
        block = build_block(
            proposer,
            genesis.chain_id,
            prev,
            entries,
            log=log,
            time=prev["time"] + 1000,
            proposer="node-0",
            term=1,
        )
        for e in entries:
            log.append(entry_leaf(genesis.hash_alg, e))
        prev = block["header"]
        built.append(block)
    rate = Rate()
    for i, block in enumerate(built):
        check_block(
            state,
            genesis.chain_id,
            store.head()[1],
            block,
            log=store.shadow_log(),
            is_known=lambda eid: store.location(eid) is not None,
        )
        store.append_block(block, raft_index=i + 1)
        state = state.apply_block(block)
    return rate.stop(blocks * BLOCK), store


def bench_chain_verification(genesis: Genesis, store: LedgerStore) -> Rate:
    rate = Rate()
    report = verify_chain(genesis, store.iter_blocks(), pinned_chain_id=genesis.chain_id)
    rate.stop(store.tree_size)
    if report.problems:
        raise SystemExit(f"chain verification found problems: {report.problems[:3]}")
    return rate


def build_big_log(genesis: Genesis, path: Path, entries: int) -> dict[int, dict[str, float]]:
    """Append ``entries`` cheap (unsigned) entries in blocks of 1,000; RSS at checkpoints.

    The store does not judge validity, so for the proof figures the entries need not be
    signed; what matters is the log's shape and the store's memory as the chain grows.
    """
    store = LedgerStore.open(path, genesis, create=True)
    proposer = key("node-0")
    rss: dict[int, dict[str, float]] = {}
    marks = {100_000, entries}
    n = 0
    try:
        while n < entries:
            count = min(BLOCK, entries - n)
            envs = [
                {
                    "payload": {
                        "v": 1,
                        "kind": "document",
                        "court": "吉0102",
                        "time": GENESIS_TIME,
                        "nonce": (n + i).to_bytes(16, "big"),
                        "signer": b"\x01" * 32,
                        "body": {"sha256": sha256((n + i).to_bytes(8, "big"))},
                    },
                    "sig": b"\x00" * 64,
                }
                for i in range(count)
            ]
            height, prev, _ = store.head()
            block = build_block(
                proposer,
                genesis.chain_id,
                prev,
                envs,
                log=MerkleLog(genesis.hash_alg, OverlayNodeStore(store.nodes), size=n),
                time=prev["time"] + 1,
                proposer="node-0",
                term=1,
            )
            store.append_block(block, raft_index=height + 1)
            n += count
            if n in marks:
                rss[n] = memory_mib()
    finally:
        store.close()
    return rss


def bench_proofs(genesis: Genesis, path: Path, seconds: float = 4.0) -> tuple[Rate, Rate]:
    store = LedgerStore.open(path, genesis, cache_bytes=DEFAULT_CACHE_BYTES)
    size = store.tree_size
    rng = random.Random(2026)
    inclusion = Rate()
    while time.perf_counter() - inclusion.wall < seconds:
        store.inclusion_proof(rng.randrange(size), size)
        inclusion.ops += 1
    inclusion.stop()
    consistency = Rate()
    while time.perf_counter() - consistency.wall < seconds:
        new = rng.randrange(1, size + 1)
        store.consistency_proof(rng.randrange(1, new + 1), new)
        consistency.ops += 1
    consistency.stop()
    store.close()
    return inclusion, consistency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="proof log size")
    parser.add_argument("--blocks", type=int, default=20, help="signed blocks of 1,000")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args()
    core = pin_one_core()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    genesis = bench_genesis()
    try:
        print(f"pinned to core {core}; work dir {work}")
        before = verify_rate()
        print(f"ed25519 verify, single core, before: {before}")
        append, store = bench_append(genesis, work / "signed", args.blocks)
        print(f"signed entries appended (blocks of {BLOCK}, validity on, synced): {append}")
        chain_rate = bench_chain_verification(genesis, store)
        store.close()
        print(f"full-chain verification, entries: {chain_rate}")
        after = verify_rate()
        print(f"ed25519 verify, single core, after: {after}")
        wall = append.per_s / ((before.per_s + after.per_s) / 2)
        cpu = append.per_cpu_s / ((before.per_cpu_s + after.per_cpu_s) / 2)
        print(f"append / verify ratio: {wall:.2f} by wall clock, {cpu:.2f} by CPU (target >= 0.8)")
        start = time.perf_counter()
        rss = build_big_log(genesis, work / "big", args.entries)
        print(f"built a {args.entries:,}-entry log in {time.perf_counter() - start:,.1f} s")
        for n in sorted(rss):
            print(f"memory at {n:,} entries: {describe_memory(rss[n])}")
        if len(rss) == 2:
            lo, hi = (rss[k] for k in sorted(rss))
            print(
                f"memory growth 100k -> {args.entries:,}: RSS {hi['rss'] / lo['rss']:.2f}x, "
                f"anonymous {hi['anon'] / lo['anon']:.2f}x (target <= 1.5x)"
            )
        inclusion, consistency = bench_proofs(genesis, work / "big")
        print(
            f"inclusion proofs, random index over {args.entries:,} entries, 64 MiB cache: "
            f"{inclusion}"
        )
        print(f"consistency proofs, random (old, new) pairs: {consistency}")
        print(f"memory after the proof runs: {describe_memory(memory_mib())}")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
