"""Courts across a continent: the deterministic simulator with WAN latencies (issue 12).

    python bench/wan_sim.py [--voters 5,7] [--seconds 20] [--block-entries 200]
                            [--interval-ms 100] [--loss 0.005] [--json]

The real :class:`~consensus.core.RaftCore` of every voter runs in the simulator
(:mod:`consensus.sim`), given a WAN through its ``NetworkModel`` hook instead of the seeded
fault model. :class:`WanNetwork` states the model:

* each pair of voters (one per province) has a round-trip time drawn once, uniformly from
  20–60 ms (seeded); a message takes half of it, plus jitter (+|N(0, 10 %)| of the one-way
  time), plus its serialisation on that link (``--mbit``, default 100 Mbit/s per link, with a
  queue: a link sends one message after another);
* loss as TCP sees it: a lost segment is resent after about one round trip (fast
  retransmit), and the link stays in order (TCP), so a loss also holds back what follows;
* the nodes' fsync and CPU are free here (they are measured on one machine by
  ``make bench``): these figures are the network's share.

The leader is offered one block of ``--block-entries`` entries of 500 bytes every
``--interval-ms`` (one Raft entry per block, as DESIGN §3 says), from 1 s on, for
``--seconds``. Printed per voter count: Raft commit latency (proposal → the leader applies),
the time until a majority of voters applied it (after which each cosigns: one more one-way
hop gives the checkpoint), and messages and bytes on the wire per block, all voters' traffic
counted (heartbeats included). The simulator's invariants are checked throughout as usual.

Then 100 block followers, throughput only, from a stated model (:func:`followers`): each
follower pulls every block and its checkpoint over HTTP from a voter that is not the leader,
and checks it as the auditor does. Its figures are arithmetic on stated constants, not a
simulation; they say which resource bounds the fleet and when a relay tree is needed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.core import Config, NotLeader, ProposalDropped  # noqa: E402
from consensus.sim.cluster import SimNode, Simulation  # noqa: E402
from consensus.types import Entry, Message, MsgType  # noqa: E402

ENTRY_BYTES = 500


class WanNetwork:
    """Province-to-province links: fixed RTT per pair, jitter, TCP-like loss, bandwidth."""

    def __init__(self, ids: list[str], seed: int, rtt: tuple[float, float] = (20.0, 60.0),
                 jitter: float = 0.10, loss: float = 0.005, mbit: float = 100.0) -> None:
        r = random.Random(seed * 7919 + len(ids))
        self.one_way: dict[tuple[str, str], float] = {}
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                self.one_way[(a, b)] = self.one_way[(b, a)] = r.uniform(*rtt) / 2
        self.jitter, self.loss, self.mbit = jitter, loss, mbit
        self.link_free: dict[tuple[str, str], float] = {}  # serialisation queue per link
        self.last_arrival: dict[tuple[str, str], float] = {}  # TCP keeps a link in order
        self.msgs: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.counting = False
        self.losses = 0

    def delay(self, frm: str, to: str, m: Message, now: int, rng: random.Random) -> float | None:
        """When ``m`` arrives, in ms after ``now`` (never lost: TCP resends)."""
        size = len(msgpack.packb(m.to_dict(), use_bin_type=True)) + 40  # + framing, TCP/IP
        if self.counting:
            self.msgs[m.type] += 1
            self.bytes[m.type] += size
        link = (frm, to)
        base = self.one_way.get(link, 0.5)
        start = max(float(now), self.link_free.get(link, 0.0))
        sent = start + size * 8 / (self.mbit * 1000)  # bits / (bits per ms)
        self.link_free[link] = sent
        arrive = sent + base * (1 + abs(rng.gauss(0.0, self.jitter)))
        if rng.random() < self.loss:
            self.losses += 1
            arrive += 2 * base  # resent after about one round trip
        arrive = max(arrive, self.last_arrival.get(link, 0.0))
        self.last_arrival[link] = arrive
        return arrive - now


class WanSim(Simulation):
    """A steady block load on a healthy WAN: no crashes, partitions or membership changes."""

    def __init__(self, seed: int, voters: int, net: WanNetwork, block_entries: int,
                 interval_ms: int, seconds: float) -> None:
        self.block_bytes = block_entries * ENTRY_BYTES
        self.interval = interval_ms
        self.proposed_at: dict[bytes, int] = {}
        self.applied_by: dict[bytes, list[int]] = {}
        self.commit_ms: list[float] = []
        self.quorum_ms: list[float] = []
        self.blocks_committed = 0
        self.warm_ms = 1000
        super().__init__(seed, nodes=voters, duration_ms=self.warm_ms + int(seconds * 1000),
                         heal_ms=2000, membership=False, network=net)
        self.net = net
        # The seeded fault model is off: this run measures a healthy WAN.
        self.drop_p = self.dup_p = self.crash_point_p = self.isolate_leader_p = 0.0

    def _config(self, node: SimNode) -> Config:
        # WAN settings: a 300 ms election timeout (10 ms ticks) over 20-60 ms round trips;
        # whole blocks per append, and a deep pipeline (many blocks in flight per follower).
        return Config(id=node.id, voters=list(node.genesis), election_tick=30, heartbeat_tick=3,
                      max_size_per_msg=4 << 20, max_inflight_msgs=256,
                      max_inflight_bytes=64 << 20, applied=node.app_applied)

    def run(self) -> Any:  # noqa: D102
        t = self.warm_ms
        while t < self.duration:
            self._at(t, "block", None)
            t += self.interval
        self._at(self.warm_ms, "count", None)
        return super().run()

    def _event(self, kind: str, payload: Any) -> None:
        if kind == "block":
            self._propose_block()
        elif kind == "count":
            self.net.counting = True
        else:
            super()._event(kind, payload)

    def _chaos(self) -> None:  # no faults: a healthy WAN
        return

    def _client(self) -> None:  # the block load replaces the random clients
        return

    def _propose_block(self) -> None:
        node = self._leader()
        if node is None or node.core is None:
            return
        core = node.core
        self._pseq += 1
        head = b"block %d " % self._pseq
        data = head + b"." * (self.block_bytes - len(head))
        try:
            idx = core.propose(data)
        except (NotLeader, ProposalDropped):
            return
        self.proposals[data] = (node.id, core.term, idx)
        self.proposed_at[data] = self.now
        self._after_step(node)

    def _apply(self, node: SimNode, e: Entry) -> None:
        super()._apply(node, e)
        t0 = self.proposed_at.get(e.data)
        if t0 is None:
            return
        seen = self.applied_by.setdefault(e.data, [])
        seen.append(self.now)
        if self.proposals[e.data][0] == node.id:
            self.commit_ms.append(self.now - t0)
            self.blocks_committed += 1
        if len(seen) == self.n // 2 + 1:
            self.quorum_ms.append(self.now - t0)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def simulate(voters: int, seed: int, seconds: float, block_entries: int, interval_ms: int,
             loss: float, mbit: float) -> dict[str, Any]:
    """One WAN run; its latencies and traffic per block."""
    ids = [f"n{i}" for i in range(1, voters + 1)]
    net = WanNetwork(ids, seed, loss=loss, mbit=mbit)
    sim = WanSim(seed, voters, net, block_entries, interval_ms, seconds)
    t0 = time.perf_counter()
    res = sim.run()
    if res.violations:
        raise SystemExit(res.violations[0].format())
    blocks = max(1, sim.blocks_committed)
    return {
        "voters": voters, "seed": seed, "simulated_s": seconds, "blocks": sim.blocks_committed,
        "block_bytes": sim.block_bytes, "interval_ms": interval_ms, "loss": loss, "mbit": mbit,
        "rtt_ms": {"min": round(2 * min(net.one_way.values()), 1),
                   "median": round(2 * statistics.median(net.one_way.values()), 1),
                   "max": round(2 * max(net.one_way.values()), 1)},
        "commit_ms": {"p50": _pct(sim.commit_ms, 0.5), "p99": _pct(sim.commit_ms, 0.99)},
        "quorum_applied_ms": {"p50": _pct(sim.quorum_ms, 0.5),
                              "p99": _pct(sim.quorum_ms, 0.99)},
        "msgs_per_block": round(sum(net.msgs.values()) / blocks, 1),
        "bytes_per_block": round(sum(net.bytes.values()) / blocks),
        "append_msgs_per_block": round(net.msgs[MsgType.APP] / blocks, 1),
        "payload_ratio": round(sum(net.bytes.values()) / blocks / sim.block_bytes, 2),
        "losses": net.losses, "wall_s": round(time.perf_counter() - t0, 1),
    }


def verify_rate(seconds: float = 1.0) -> float:
    """Single-core Ed25519 verifications per CPU-second here (PyNaCl), for the model."""
    import nacl.signing

    key = nacl.signing.SigningKey(b"\x01" * 32)
    sm = key.sign(b"x" * 400)
    vk = key.verify_key
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        for _ in range(100):
            vk.verify(sm)
        n += 100
    return n / (time.process_time() - t0)


def followers(count: int, voters: int, entries_per_s: float, verify_per_s: float,
              audit_ratio: float = 0.7, uplink_mbit: float = 1000.0,
              follower_cores: int = 2, serve_ms_per_mib: float = 2.0,
              serve_ms_per_request: float = 0.3, block_entries: int = 200,
              entry_wire_bytes: int = 600) -> dict[str, Any]:
    """Throughput of ``count`` block followers, from a stated model (no simulation).

    Model: every follower fetches every block (entries ~``entry_wire_bytes`` on the wire with
    headers and checkpoint) from one of the ``voters - 1`` voters that are not the leader,
    spread evenly. A serving voter spends ``serve_ms_per_request`` CPU-ms per block request
    and ``serve_ms_per_mib`` per MiB sent, and has ``uplink_mbit`` of uplink. A follower
    checks each entry as the auditor does: ``audit_ratio`` × the single-core verify rate per
    core, on ``follower_cores`` cores. The sustainable chain rate is the least of the three
    bounds; a relay tree (followers serving followers, fan-out 10) lifts the voters' bounds.
    """
    servers = max(1, voters - 1)
    per_server = count / servers
    block_mib = block_entries * entry_wire_bytes / 2**20
    # Blocks per second one serving voter can hand to its followers, by CPU and by uplink.
    cpu_blocks = 1000 / (serve_ms_per_request + serve_ms_per_mib * block_mib) / per_server
    net_blocks = uplink_mbit * 1e6 / 8 / (block_mib * 2**20) / per_server
    follower_rate = audit_ratio * verify_per_s * follower_cores
    bounds = {"voter_cpu": cpu_blocks * block_entries, "voter_uplink": net_blocks * block_entries,
              "follower_cpu": follower_rate}
    limit = min(bounds, key=lambda k: bounds[k])
    tree_fanout = 10
    tree = {"voter_cpu": bounds["voter_cpu"] * per_server / min(per_server, tree_fanout),
            "voter_uplink": bounds["voter_uplink"] * per_server / min(per_server, tree_fanout),
            "follower_cpu": follower_rate}
    return {
        "followers": count, "serving_voters": servers, "offered_entries_per_s": entries_per_s,
        "bounds_entries_per_s": {k: round(v) for k, v in bounds.items()},
        "bound_by": limit, "sustainable_entries_per_s": round(bounds[limit]),
        "keeps_up": bounds[limit] >= entries_per_s,
        "tree_fanout": tree_fanout,
        "tree_bounds_entries_per_s": {k: round(v) for k, v in tree.items()},
        "voter_uplink_share_at_offered": round(
            entries_per_s / bounds["voter_uplink"], 3),
        "model": {"audit_ratio": audit_ratio, "verify_per_s": round(verify_per_s),
                  "uplink_mbit": uplink_mbit, "follower_cores": follower_cores,
                  "serve_ms_per_mib": serve_ms_per_mib,
                  "serve_ms_per_request": serve_ms_per_request,
                  "entry_wire_bytes": entry_wire_bytes, "block_entries": block_entries},
    }


SCENARIOS = (  # (label, block entries, interval ms, loss)
    ("2,000 entries/s in 100 KB blocks, 0.5 % loss", 200, 100, 0.005),
    ("2,000 entries/s in 100 KB blocks, 2 % loss", 200, 100, 0.02),
    ("10,000 entries/s in 500 KB blocks, 0.5 % loss", 1000, 100, 0.005),
)


def markdown(seed: int, seconds: float, mbit: float, count: int) -> str:
    """The scenarios above for 5 and 7 voters, and the follower model, as Markdown."""
    vr = verify_rate()
    lines = ["| offered | voters | RTT min–median–max (ms) | commit p50 / p99 (ms) | "
             "majority applied p50 / p99 (ms) | messages per block | bytes per block |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    fol = []
    for label, entries, interval, loss in SCENARIOS:
        for v in (5, 7):
            r = simulate(v, seed, seconds, entries, interval, loss, mbit)
            rtt = r["rtt_ms"]
            lines.append(
                f"| {label} | {v} | {rtt['min']}–{rtt['median']}–{rtt['max']} | "
                f"{r['commit_ms']['p50']:.0f} / {r['commit_ms']['p99']:.0f} | "
                f"{r['quorum_applied_ms']['p50']:.0f} / {r['quorum_applied_ms']['p99']:.0f} | "
                f"{r['msgs_per_block']} | {r['bytes_per_block']:,} ({r['payload_ratio']}× "
                f"the block) |")
            if loss == 0.005:
                fol.append((label, followers(count, v, entries * 1000 / interval, vr,
                                             block_entries=entries)))
    lines += ["", f"Simulated {seconds:g} s of load per row, seed {seed}, {mbit:g} Mbit/s per "
              "link (`python bench/wan_sim.py --doc docs/scaling.md`).", "",
              f"**{count} block followers** (throughput only, from the model in "
              "`bench/wan_sim.followers`: each follower fetches every block from a voter that "
              "is not the leader, spread evenly; a serving voter spends 0.3 CPU-ms per request "
              "and 2 CPU-ms per MiB, with 1 Gbit/s uplink; a follower checks entries at 0.7 × "
              f"the single-core Ed25519 verify rate measured here ({vr:,.0f}/s) on 2 cores; "
              "~600 B per entry on the wire):", "",
              "| offered | voters (serving) | bound by voter CPU | by voter uplink | "
              "by follower CPU | sustainable | keeps up | with a relay tree (fan-out 10) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, f in fol:
        b, t = f["bounds_entries_per_s"], f["tree_bounds_entries_per_s"]
        lines.append(f"| {label.split(' in ')[0]} | {f['serving_voters'] + 1} "
                     f"({f['serving_voters']}) | {b['voter_cpu']:,}/s | {b['voter_uplink']:,}/s "
                     f"| {b['follower_cpu']:,}/s | {f['sustainable_entries_per_s']:,}/s "
                     f"({f['bound_by']}) | {'yes' if f['keeps_up'] else 'no'} | "
                     f"{min(t.values()):,}/s |")
    return "\n".join(lines)


def main() -> int:
    """Run the voter counts, then the follower model; print (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voters", default="5,7")
    ap.add_argument("--seconds", type=float, default=20.0, help="simulated seconds of load")
    ap.add_argument("--block-entries", type=int, default=200)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--loss", type=float, default=0.005)
    ap.add_argument("--mbit", type=float, default=100.0, help="per link")
    ap.add_argument("--followers", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--doc", type=Path, help="rewrite this doc's wan block (the scenarios)")
    args = ap.parse_args()
    if args.doc:
        text = args.doc.read_text()
        head, rest = text.split("<!-- wan:begin -->", 1)
        _, tail = rest.split("<!-- wan:end -->", 1)
        block = markdown(args.seed, args.seconds, args.mbit, args.followers)
        args.doc.write_text(f"{head}<!-- wan:begin -->\n{block}\n<!-- wan:end -->{tail}")
        print(block)
        return 0
    runs = [simulate(int(v), args.seed, args.seconds, args.block_entries, args.interval_ms,
                     args.loss, args.mbit) for v in args.voters.split(",")]
    offered = args.block_entries * 1000 / args.interval_ms
    vr = verify_rate()
    fol = [followers(args.followers, r["voters"], offered, vr,
                     block_entries=args.block_entries) for r in runs]
    out = {"runs": runs, "followers": fol}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"offered: one block of {args.block_entries} x {ENTRY_BYTES} B every "
          f"{args.interval_ms} ms = {offered:,.0f} entries/s; loss {args.loss:.1%}; "
          f"{args.mbit:g} Mbit/s per link")
    for r in runs:
        print(f"{r['voters']} voters (RTT {r['rtt_ms']['min']}-{r['rtt_ms']['max']} ms, median "
              f"{r['rtt_ms']['median']}): {r['blocks']} blocks; commit p50 "
              f"{r['commit_ms']['p50']:.0f} ms p99 {r['commit_ms']['p99']:.0f} ms; majority "
              f"applied p50 {r['quorum_applied_ms']['p50']:.0f} ms p99 "
              f"{r['quorum_applied_ms']['p99']:.0f} ms; {r['msgs_per_block']} msgs and "
              f"{r['bytes_per_block']:,} B per block ({r['payload_ratio']}x the block)")
    for f in fol:
        print(f"{f['followers']} followers on {f['serving_voters']} serving voters: bounds "
              f"{f['bounds_entries_per_s']} entries/s -> {f['sustainable_entries_per_s']:,}/s "
              f"({f['bound_by']}); keeps up with {offered:,.0f}/s: {f['keeps_up']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
