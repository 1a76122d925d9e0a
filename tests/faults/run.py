"""Fault schedules against a real three-node cluster, and the long run (``make faults``).

``python -m tests.faults.run --seed S --seeds N [--steps K]`` runs N schedules (seeds S…S+N-1),
each on a fresh cluster whose peer links pass through :class:`~tests.faults.proxy.FaultProxy`:

1. start the cluster and the recorded workload (:mod:`tests.faults.history`);
2. run the schedule the seed chooses (printed first): kill -9 of the leader or a follower and a
   restart, SIGSTOP/SIGCONT pauses longer than the election timeout, a node cut off by a
   partition, a one-way partition (the leader hears but is not heard), delayed links;
   With membership changes on (the default), a fourth court joins as a learner, is promoted
   and a voter of the first three is removed, each through the operator's commands and each
   overlapped by the faults that follow it in the schedule (:mod:`tests.faults.membership`);
3. heal every fault, restart and resume every node, let the workload run a little longer,
   stop it, wait until every node holds the same head, and run the checker
   (:mod:`tests.faults.checker`), on the new node too; the removed node's store must be a
   prefix of the chain and it must never again propose a block or sign a counted checkpoint.

A clean schedule's folder is removed; a failing one keeps its data directories, logs and
history, and the seed is printed with the folder.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from node.demo import Cluster
from node.init import init_consortium
from tests.ops.opshelp import free_base

from .checker import check_live, check_removed, check_stored, run_audit
from .history import History, Workload
from .membership import MEMBER_KINDS, NEW_NODE, MembershipOps
from .proxy import FaultProxy

#: Fault kinds a schedule draws from.
KINDS = ("kill_leader", "kill_follower", "pause_leader", "pause_follower", "isolate_leader",
         "isolate_follower", "oneway_leader", "delay")


class FaultCluster(Cluster):
    """A :class:`Cluster` whose peers talk through a proxy, with kill/pause bookkeeping."""

    def __init__(self, folder: Path, proxy: FaultProxy, extra_env: dict[str, str] | None = None,
                 first_env: dict[str, dict[str, str]] | None = None,
                 spare: dict[str, tuple[str, int]] | None = None) -> None:
        """``spare``: nodes that may join later (id → Raft address); their links pass through
        the proxy too, so every node is told its proxied address from its first start."""
        super().__init__(folder, extra_env)
        self.proxy = proxy
        self.removed: list[str] = []  #: nodes removed from the consortium during the run
        #: Environment for a node's first start only (e.g. a one-shot crash failpoint).
        self.first_env = first_env or {}
        self.started: set[str] = set()
        self.crashes = 0  #: processes that died on their own (a crash failpoint) and restarted
        self.exits: list[str] = []  #: how each of those ended
        spare = spare or {}
        everyone = [*self.ids, *spare]
        self.node_env: dict[str, dict[str, str]] = {i: {} for i in everyone}
        for src in everyone:
            for dst in everyone:
                if src != dst:
                    if dst in spare:
                        target = spare[dst]
                    else:
                        raft = self.configs[dst].listen.raft
                        target = (raft.host, raft.port)
                    port = proxy.add(src, dst, target)
                    # DESIGN §4: [peers] overrides a peer's address; the pin still applies.
                    self.node_env[src][f"COURTLEDGER_PEERS__{dst.upper()}"] = \
                        f"127.0.0.1:{port}"
        self.paused: set[str] = set()
        self.kills = 0
        self.pauses = 0

    def start(self, node_id: str, env: dict[str, str] | None = None) -> None:
        first = self.first_env.get(node_id, {}) if node_id not in self.started else {}
        self.started.add(node_id)
        super().start(node_id, {**self.node_env[node_id], **first, **(env or {})})

    def reap_crashed(self) -> list[str]:
        """Restart every node whose process exited by itself; return ``"<id> exit <code>:
        <last log line>"`` for each (a crash failpoint is exit -9)."""
        out = []
        for n, p in list(self.procs.items()):
            code = p.poll()
            if code is None:
                continue
            self.procs.pop(n)
            self.paused.discard(n)
            self.crashes += 1
            try:
                lines = (self.folder / "logs" / f"{n}.log").read_text(
                    errors="replace").strip().splitlines()
                last = next((x for x in reversed(lines) if "Cancelled" not in x), "")[:200]
            except OSError:
                last = ""
            out.append(f"{n} exit {code}: {last}")
            if n not in self.removed:  # a removed node is not brought back
                self.start(n)
        self.exits += out
        return out

    def kill(self, node_id: str) -> None:
        """kill -9 (works on a paused process too)."""
        self.paused.discard(node_id)
        self.stop(node_id, signal.SIGKILL)
        self.kills += 1

    def pause(self, node_id: str) -> None:
        self.procs[node_id].send_signal(signal.SIGSTOP)
        self.paused.add(node_id)
        self.pauses += 1

    def resume(self, node_id: str) -> None:
        if node_id in self.paused and node_id in self.procs:
            self.procs[node_id].send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    def stop_all(self) -> None:
        for n in list(self.paused):
            self.resume(n)
        super().stop_all()

    def leader(self) -> str | None:
        for i in self.ids:  # not a removed node: it may still believe in an old leader
            if i in self.paused or i not in self.procs:
                continue
            st = self.status(i)
            if st and st.get("leader"):
                return str(st["leader"])
        return None


#: ``--failpoints``: node 0 has a slow disk, node 1 a clock 3 s ahead, and each node crashes
#: once by a failpoint (node/failpoints.py) early in the run.
FAILPOINT_VARIANT: dict[str, Any] = {
    "node_env": {0: {"COURTLEDGER_FAILPOINTS": "slow-fsync=20ms"},
                 1: {"COURTLEDGER_FAILPOINTS": "clock-skew=+3000"}},
    "first_env": {0: {"COURTLEDGER_FAILPOINTS": "slow-fsync=20ms,crash-after-block-persist=7"},
                  1: {"COURTLEDGER_FAILPOINTS": "clock-skew=+3000,crash-before-vote-reply=2"},
                  2: {"COURTLEDGER_FAILPOINTS": "crash-before-block-persist=11"}},
}


@dataclass
class Step:
    """One fault of a schedule: its kind, how long it lasts, the pause after it."""

    kind: str
    hold_s: float
    gap_s: float


def schedule(seed: int, steps: int, membership: bool = True) -> list[Step]:
    """The schedule a seed chooses (deterministic; printed before the run).

    With ``membership``, the steps ``join``, ``promote`` and ``remove`` are inserted (in that
    order) after the first fault and at seeded places further on, each followed by at least
    one fault that overlaps it.
    """
    rng = random.Random(seed)
    out = []
    for i in range(steps):
        # Kills of the leader come first in short runs: the fault that matters most.
        kind = "kill_leader" if i == 0 else rng.choice(KINDS)
        out.append(Step(kind, round(rng.uniform(1.0, 3.0), 2), round(rng.uniform(0.5, 1.5), 2)))
    if membership and steps >= 4:
        # Places after fault 1, then two later ones, each leaving a fault after it.
        rest = sorted(rng.sample(range(2, steps), 2))
        for kind, after in reversed(list(zip(MEMBER_KINDS, [1, *rest], strict=True))):
            out.insert(after, Step(kind, 0.0, 0.5))
    return out


def _wait_node(c: FaultCluster, node: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(c.internal(node) + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def apply_step(c: FaultCluster, step: Step, rng: random.Random, log: list[str],
               ops: MembershipOps | None = None) -> None:
    """Inject one fault, hold it, lift it; or begin a membership change (``ops``)."""
    if step.kind in MEMBER_KINDS:
        if ops is not None:
            ops.begin(step.kind)
            time.sleep(step.gap_s)
        return
    leader = c.leader()
    running = [n for n in c.ids if n in c.procs and n not in c.paused]
    if leader is None or leader not in running:
        leader = rng.choice(running)
    followers = [n for n in running if n != leader] or [leader]
    target = leader if step.kind.endswith("leader") else rng.choice(followers)
    log.append(f"{time.strftime('%H:%M:%S')} {step.kind} {target} hold {step.hold_s}s")
    if step.kind.startswith("kill"):
        c.kill(target)
        time.sleep(step.hold_s)
        c.start(target)
        _wait_node(c, target, 30)
    elif step.kind.startswith("pause"):
        c.pause(target)
        time.sleep(step.hold_s)  # > the election timeout (10 ticks of 50 ms)
        c.resume(target)
    elif step.kind.startswith("isolate"):
        c.proxy.partition([target], [n for n in c.ids if n != target])
        time.sleep(step.hold_s)
        c.proxy.heal()
    elif step.kind == "oneway_leader":
        for n in c.ids:
            if n != target:
                c.proxy.cut(target, n)  # it hears the others; nobody hears it
        time.sleep(step.hold_s)
        c.proxy.heal()
    elif step.kind == "delay":
        for n in c.ids:
            if n != target:
                c.proxy.delay(target, n, 0.05)
                c.proxy.delay(n, target, 0.05)
        time.sleep(step.hold_s)
        c.proxy.heal()
    time.sleep(step.gap_s)


def wait_ready_reaping(c: FaultCluster, timeout: float = 120) -> None:
    """Wait until every node is ready, restarting nodes that a crash failpoint killed."""
    deadline = time.monotonic() + timeout
    while True:
        c.reap_crashed()
        try:
            c.wait_ready(timeout=5)
            return
        except (TimeoutError, RuntimeError):
            if time.monotonic() > deadline:
                raise


def converge(c: FaultCluster, timeout: float = 120, same_head: bool = True) -> None:
    """Heal, resume, restart; wait until every node is ready (and holds the same head)."""
    c.proxy.heal()
    for n in list(c.paused):
        c.resume(n)
    for n in c.ids:
        if n not in c.procs:
            c.start(n)
    wait_ready_reaping(c, timeout)
    if not same_head:
        return
    deadline = time.monotonic() + timeout
    while True:
        heads = []
        for n in c.ids:
            try:
                heads.append(httpx.get(c.internal(n) + "/v1/head", timeout=5).json())
            except httpx.HTTPError:
                heads.append({})
        if heads[0] and all(h == heads[0] for h in heads):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence: {heads}")
        time.sleep(0.5)


def removed_refused(c: FaultCluster, removed: str, figures: dict[str, Any]) -> list[str]:
    """The removed node, still running with its old certificate, keeps dialling its former
    peers: each refuses it after the handshake and counts it (``courtledger_peer_refused``).
    Records the members' total in ``figures``; a violation if it ran and nobody counted it."""
    total = 0.0
    for n in c.ids:
        try:
            text = httpx.get(c.internal(n) + "/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith("courtledger_peer_refused_total "):
                total += float(line.split()[1])
    figures["peer_refused"] = int(total)
    p = c.procs.get(removed)
    if p is not None and p.poll() is None and total == 0:
        return [f"removed node {removed} runs but no member refused a connection from it"]
    return []


@dataclass
class Result:
    """What one schedule did and found."""

    seed: int
    folder: Path
    steps: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    membership: list[tuple[str, str, int]] = field(default_factory=list)
    kills: int = 0
    pauses: int = 0
    crashes: int = 0
    seconds: float = 0.0


def run_schedule(seed: int, steps: int, root: Path, *, clients: int = 3,
                 keep: bool = False, out: Any = sys.stdout,
                 env: dict[str, str] | None = None,
                 first_env: dict[int, dict[str, str]] | None = None,
                 node_env: dict[int, dict[str, str]] | None = None,
                 membership: bool = True, sched: list[Step] | None = None) -> Result:
    """One seeded schedule on a fresh cluster under ``root``; see the module docstring.
    ``sched`` replaces the seed's schedule (an explicit one, for a deterministic test)."""
    t0 = time.monotonic()
    folder = root / f"seed-{seed}"
    if folder.exists():
        shutil.rmtree(folder)
    sched = sched if sched is not None else schedule(seed, steps, membership)
    membership = any(s.kind in MEMBER_KINDS for s in sched)
    print(f"fault schedule seed={seed}: " + ", ".join(s.kind for s in sched), file=out,
          flush=True)
    base = free_base(4)  # a fourth slot for the court that joins
    init_consortium(folder, 3, base_port=base)
    proxy = FaultProxy()
    ids = [n.id for n in Cluster(folder).genesis.nodes]
    c = FaultCluster(folder, proxy, extra_env=env,
                     first_env={ids[i]: e for i, e in (first_env or {}).items()},
                     spare={NEW_NODE: ("127.0.0.1", base + 3)} if membership else None)
    for i, e in (node_env or {}).items():
        c.node_env[ids[i]].update(e)  # kept across restarts (slow disk, skewed clock)
    res = Result(seed, folder)
    history = History(folder / "history.jsonl")
    work: Workload | None = None
    ops: MembershipOps | None = None
    try:
        if membership:
            ops = MembershipOps(c, base, random.Random(seed ^ 0xA11), res.steps)
            ops.keygen()
        c.start_all()
        wait_ready_reaping(c)
        work = Workload(c, history, clients=clients, seed=seed)
        work.start()
        time.sleep(1.5)
        rng = random.Random(seed ^ 0x5EED)
        for step in sched:
            apply_step(c, step, rng, res.steps, ops)
            c.reap_crashed()
        if ops is not None:
            # The last change finishes on a healed cluster at the latest.
            c.proxy.heal()
            for n in list(c.paused):
                c.resume(n)
            ops.wait()
            res.violations += ops.errors
            res.membership = list(ops.done)
        converge(c, same_head=False)
        time.sleep(2.0)  # the workload runs on the healed cluster a little
        work.stop()
        converge(c)
        res.violations += check_live(c, history.records)
        if ops is not None and ops.removed is not None:
            res.violations += removed_refused(c, ops.removed, res.figures)
        c.stop_all()
        v, figures = check_stored(c, history.records)
        res.figures.update(figures)
        res.violations += v
        if ops is not None:
            if NEW_NODE in c.ids:
                res.violations += [f"on {NEW_NODE}: {x}" for x in run_audit(c, NEW_NODE)]
            if ops.removed is not None and ops.removed_at is not None:
                res.violations += check_removed(c, ops.removed, ops.removed_at)
        res.figures["membership_changes"] = len(res.membership)
        if ops is not None:
            res.figures["membership"] = [f"{op} {n}@{h}" for op, n, h in res.membership]
            res.figures["removed_leader"] = ops.removed_leader
    except Exception as exc:  # noqa: BLE001 - a run that cannot finish is a failure to report
        res.violations.append(f"run failed: {type(exc).__name__}: {exc}")
    finally:
        if work is not None:
            work.stop()
        history.close()
        res.kills, res.pauses, res.crashes = c.kills, c.pauses, c.crashes
        res.steps += c.exits
        odd = [e for e in c.exits if " exit -9:" not in e]
        if odd:  # not a failpoint's kill -9: worth a look even when the checker is content
            print(f"seed {seed}: nodes exited by themselves: {odd[:5]}", file=out, flush=True)
        c.stop_all()
        proxy.close()
        res.seconds = round(time.monotonic() - t0, 1)
        if folder.exists():  # what happened when, beside the history (kept on failure)
            (folder / "steps.log").write_text("\n".join(res.steps) + "\n", encoding="utf-8")
    if res.violations:
        print(f"FAULT RUN FAILED seed={seed}: data, logs and history kept in {folder}",
              file=out, flush=True)
        for line in res.violations[:20]:
            print("  " + line, file=out, flush=True)
    elif not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__)
    ap.add_argument("--seed", type=int, default=None, help="first seed (random if omitted)")
    ap.add_argument("--seeds", type=int, default=1, help="how many schedules")
    ap.add_argument("--steps", type=int, default=12, help="faults per schedule")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where runs live (default: a temp dir)")
    ap.add_argument("--minutes", type=float, default=None, help="stop starting schedules after")
    ap.add_argument("--failpoints", action="store_true",
                    help="also a slow disk and a skewed clock on two nodes, and one-shot crash "
                         "failpoints (before/after a block is persisted, before a vote reply)")
    ap.add_argument("--no-membership", action="store_true",
                    help="leave out the join / promote / remove steps")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    root = args.dir or Path(tempfile.mkdtemp(prefix="courtledger-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"fault runs: first seed {seed}, {args.seeds} schedule(s) of {args.steps} faults, "
          f"in {root}", flush=True)
    t0 = time.monotonic()
    totals = {"schedules": 0, "failed": 0, "kills": 0, "pauses": 0, "crashes": 0, "acked": 0,
              "unknown": 0, "membership_changes": 0, "leaders_removed": 0}
    for s in range(seed, seed + args.seeds):
        if args.minutes is not None and time.monotonic() - t0 > args.minutes * 60:
            break
        r = run_schedule(s, args.steps, root, clients=args.clients,
                         membership=not args.no_membership,
                         **(FAILPOINT_VARIANT if args.failpoints else {}))
        totals["schedules"] += 1
        totals["failed"] += bool(r.violations)
        totals["kills"] += r.kills
        totals["pauses"] += r.pauses
        totals["crashes"] += r.crashes
        totals["acked"] += int(r.figures.get("acked", 0))
        totals["unknown"] += int(r.figures.get("unknown", 0))
        totals["membership_changes"] += len(r.membership)
        totals["leaders_removed"] += bool(r.figures.get("removed_leader"))
        print(json.dumps({"seed": s, "ok": not r.violations, "kills": r.kills,
                          "pauses": r.pauses, "crashes": r.crashes, "seconds": r.seconds,
                          **r.figures}), flush=True)
    print("TOTAL " + json.dumps(totals), flush=True)
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
