"""The checker: after healing and convergence, compare the history with what every node holds.

Violations it looks for (issue 11; each is a broken promise of docs/guarantees.md):

1. two nodes hold different blocks at one height (the block hash differs);
2. an entry appears more than once in the chain (no entry is ever stored twice);
3. an acknowledged entry is missing, or sits at another ``height``/``leaf_index`` than its
   acknowledgement named, on some node (an acknowledged write is never lost or moved);
4. entries one client had acknowledged in order are committed out of that order;
5. an entry refused with a 4xx is in the chain (a refusal changes nothing);
6. a receipt issued during the run does not verify offline, or its checkpoint is not a prefix of
   the final cosigned checkpoint (RFC 9162 §2.1.4 consistency);
7. ``courtledger audit chain`` over a node does not pass;
8. after a membership change removed a voter (:func:`check_removed`): its store is not a prefix
   of the chain, or a block above the removal was proposed by it, or a checkpoint above it
   carries its signature (a removed node's messages must stop counting: DESIGN §2, membership
   changes take effect from the next block).

Unknown outcomes may be present or absent, at most once (2 covers them). The nodes checked are
the members at the end (``c.ids``): a node that joined during the run is held to every rule.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from ledger.consortium import ConsortiumState
from ledger.entries import entry_id
from ledger.errors import LedgerError
from ledger.receipts import verify_consistency_proof, verify_receipt, voters_after
from ledger.store import LedgerStore
from node.demo import Cluster

ROOT = Path(__file__).resolve().parents[2]


def _auth(c: Cluster) -> dict[str, str]:
    t = (c.folder / "keys" / "ji01-inspector.token").read_text().strip()
    return {"Authorization": f"Bearer {t}"}


def read_chain(c: Cluster, node: str) -> list[tuple[str, list[str], int]]:
    """Blocks 1.. of a *stopped* node, from its store: (block hash, entry ids, first leaf)."""
    store = LedgerStore.open(c.configs[node].data_dir / "ledger", c.genesis)
    try:
        out = []
        for b in store.iter_blocks(1):
            h = b["header"]["height"]
            bh = store.block_hash(h)
            assert bh is not None
            ids = [entry_id(c.genesis.hash_alg, e["payload"]).hex() for e in b["entries"]]
            out.append((bh.hex(), ids, int(b["header"]["first_index"])))
        return out
    finally:
        store.close()


def check_live(c: Cluster, history: list[dict[str, Any]]) -> list[str]:
    """The checks that need the (converged, running) nodes: every acknowledgement is answered
    the same by every node's API, and every receipt holds against the final checkpoint."""
    violations: list[str] = []
    acked = [r for r in history if r["op"] == "ok"]
    with httpx.Client(timeout=30) as http:
        for n in c.ids:
            for r in acked[:: max(1, len(acked) // 100)]:
                got = http.get(c.internal(n) + f"/v1/entries/{r['eid']}", headers=_auth(c))
                if got.status_code != 200 or (got.json()["height"], got.json()["leaf_index"]) \
                        != (r["height"], r["leaf_index"]):
                    violations.append(f"node {n} answers {got.status_code} {got.text[:120]} "
                                      f"for acknowledged {r['eid']}")
    violations += check_receipts(c, acked)
    return violations


def check_stored(c: Cluster, history: list[dict[str, Any]], *, audit: bool = True) -> tuple[
        list[str], dict[str, Any]]:
    """The checks on the stores of the *stopped* nodes; return (violations, figures)."""
    violations: list[str] = []
    chains = {n: read_chain(c, n) for n in c.ids}
    height = min(len(ch) for ch in chains.values())
    first = max(c.ids, key=lambda n: len(chains[n]))
    for n in c.ids:
        for h, (a, b) in enumerate(zip(chains[first], chains[n], strict=False), start=1):
            if a[0] != b[0]:
                violations.append(f"nodes {first} and {n} hold different blocks at height {h}")
                break
    # Where each entry is, on the longest node (the others hold the same prefix, above).
    where: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for h, (_, ids, first_index) in enumerate(chains[first], start=1):
        for i, eid in enumerate(ids):
            where[eid].append((h, first_index + i))
    for eid, places in where.items():
        if len(places) > 1:
            violations.append(f"entry {eid} stored {len(places)} times: {places}")
    acked = [r for r in history if r["op"] == "ok"]
    unknown = [r for r in history if r["op"] == "unknown"]
    failed = [r for r in history if r["op"] == "fail"]
    for r in acked:
        at = where.get(r["eid"])
        if not at:
            violations.append(f"acknowledged entry {r['eid']} (client {r['client']} seq "
                              f"{r['seq']}, height {r['height']}) is not in the chain")
        elif at[0] != (r["height"], r["leaf_index"]):
            violations.append(f"acknowledged entry {r['eid']} at {at[0]}, acknowledged at "
                              f"{(r['height'], r['leaf_index'])}")
        elif r["height"] > height:
            violations.append(f"acknowledged entry {r['eid']} at height {r['height']} is "
                              f"missing on a node that stops at {height}")
    for r in failed:
        if r["eid"] in where:
            violations.append(f"refused entry {r['eid']} ({r['code']}) is in the chain")
    by_client: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in acked:
        by_client[r["client"]].append(r)
    for client, rs in by_client.items():
        rs.sort(key=lambda r: r["seq"])
        for r1, r2 in zip(rs, rs[1:], strict=False):
            if r1["leaf_index"] >= r2["leaf_index"]:
                violations.append(f"client {client}: seq {r1['seq']} at leaf "
                                  f"{r1['leaf_index']} but seq {r2['seq']} at leaf "
                                  f"{r2['leaf_index']}")
    if audit:
        violations += run_audit(c, first)
    figures = {"height": height, "entries": sum(len(x[1]) for x in chains[first]),
               "acked": len(acked), "unknown": len(unknown), "failed": len(failed),
               "unknown_present": sum(1 for r in unknown if r["eid"] in where),
               "receipts": sum(1 for r in acked if r.get("receipt"))}
    return violations, figures


def check_receipts(c: Cluster, acked: list[dict[str, Any]]) -> list[str]:
    """Each receipt verifies with the genesis file alone, and its checkpoint is consistent with
    the final cosigned checkpoint of a node (a consistency proof, verified offline). The node
    that issued the receipt is asked first; a node that was down when that height got its
    quorum may lack that checkpoint, so any node's proof will do."""
    out: list[str] = []
    with_receipt = [r for r in acked if r.get("receipt")]
    if not with_receipt:
        return out
    latest: dict[str, tuple[int, str]] = {}
    # Past a membership change a checkpoint's quorum is counted among the voters in force at
    # its height, not the genesis voters. The latest receipt of the run carries every change
    # as a consortium proof (DESIGN §2); each height takes the changes checkpointed below it
    # (a change binds from the next block), verified by ``voters_after``.
    donor = max(with_receipt, key=lambda r: r["receipt"]["checkpoint"]["height"])
    changes = donor["receipt"].get("consortium") or []

    def state_at(height: int) -> ConsortiumState:
        below = [e for e in changes if e["checkpoint"]["height"] < height]
        return voters_after(c.genesis, below, height)

    with httpx.Client(timeout=30) as http:
        for n in c.ids:
            cp = http.get(c.internal(n) + "/v1/checkpoints/latest", headers=_auth(c)).json()
            latest[n] = (int(cp["checkpoint"]["tree_size"]), cp["checkpoint"]["root"])
        for r in with_receipt:
            try:
                facts = verify_receipt(r["receipt"], c.genesis)
            except LedgerError as exc:
                out.append(f"receipt of {r['eid']} does not verify: {exc}")
                continue
            problems = []
            # The issuing node first, if it is still a member (a removed one is not asked).
            for n in [x for x in c.ids if x == r["node"]] + [x for x in c.ids if x != r["node"]]:
                size, root = latest[n]
                if facts.tree_size > size:
                    problems.append(f"{n}: final checkpoint {size} < {facts.tree_size}")
                    continue
                if facts.tree_size == size:
                    if facts.root.hex() == root:
                        break
                    problems.append(f"{n}: another root at {size}")
                    continue
                resp = http.get(c.internal(n) + "/v1/consistency",
                                params={"first": facts.tree_size, "second": size},
                                headers=_auth(c))
                if resp.status_code != 200:
                    problems.append(f"{n}: {resp.status_code} {resp.text[:100]}")
                    continue
                proof = resp.json()
                try:
                    verify_consistency_proof(
                        proof, c.genesis,
                        first_state=state_at(int(proof["first"]["checkpoint"]["height"])),
                        second_state=state_at(int(proof["second"]["checkpoint"]["height"])))
                except LedgerError as exc:
                    out.append(f"{n}: consistency proof {facts.tree_size}→{size}: {exc}")
                    break
                if proof["first"]["checkpoint"]["root"] != facts.root.hex():
                    out.append(f"{n}: receipt root at {facts.tree_size} is not the cosigned one")
                break
            else:
                out.append(f"receipt of {r['eid']} at tree size {facts.tree_size}: no node "
                           f"proves it consistent with its final checkpoint: {problems}")
    return out


def run_audit(c: Cluster, node: str) -> list[str]:
    """``courtledger audit chain --data`` over one stopped node's store (exit 0 expected)."""
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "audit", "chain", "--data",
         str(c.configs[node].data_dir / "ledger"), "--consortium",
         str(c.folder / "genesis.toml"), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    if out.returncode != 0:
        return [f"audit chain exit {out.returncode}: {out.stdout[-500:]} {out.stderr[-500:]}"]
    return []


def check_removed(c: Cluster, removed: str, removed_at: int) -> list[str]:
    """A voter removed by the membership entry in block ``removed_at`` (stopped, as every
    node now): its store is a prefix of every member's chain; no block above ``removed_at``
    names it as proposer; no stored checkpoint above ``removed_at`` carries its signature
    (from ``removed_at + 1`` it is no voter: DESIGN §2)."""
    out: list[str] = []
    ref = c.ids[0]  # check_stored has shown that every member holds the same blocks
    mine = read_chain(c, removed)
    theirs = read_chain(c, ref)
    for h, (a, b) in enumerate(zip(theirs, mine, strict=False), start=1):
        if a[0] != b[0]:
            out.append(f"removed node {removed} holds another block than {ref} at height {h}")
            break
    if len(mine) > len(theirs):
        out.append(f"removed node {removed} holds {len(mine)} blocks, {ref} only {len(theirs)}")
    for n in c.ids:
        store = LedgerStore.open(c.configs[n].data_dir / "ledger", c.genesis)
        try:
            height = store.head()[0]
            for h in range(removed_at + 1, height + 1):
                header = store.header(h)
                if header is not None and header["proposer"] == removed:
                    out.append(f"{n}: block {h} above the removal at {removed_at} was "
                               f"proposed by the removed node {removed}")
                got = store.checkpoint(h)
                if got is not None and any(s["node"] == removed for s in got[1]):
                    out.append(f"{n}: checkpoint {h} above the removal at {removed_at} "
                               f"carries a signature of the removed node {removed}")
        finally:
            store.close()
    return out
