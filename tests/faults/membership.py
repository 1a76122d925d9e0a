"""Membership changes during a fault schedule: a court joins as a learner, is promoted, a voter
is removed (issue 11: "a learner joining and a voter being removed during faults").

Everything goes through the operator's path (issue 7, node/member.py, docs/operations.md):

* before the run the new court makes its keys with ``courtledger keygen`` (a node and its
  first admin), like any court that asks to join;
* each change is built with ``courtledger member add-learner|promote|remove``, approved with
  ``courtledger member approve`` by admins of a majority of the voting courts at that time
  (DESIGN §2), and submitted as the signed ``membership`` entry ``member submit`` makes
  (:func:`node.member.change_envelope`). Under faults a submission may get no answer: the
  *same* envelope is re-sent to any node until one acknowledges it committed, which
  DESIGN §5's replay rule makes safe (a replay answers ``duplicate``, never a second change);
* the new node seeds its ledger with ``courtledger follow --once`` from any member (it must
  hold the block that admits it) and starts with empty Raft state; the leader brings it up to
  date while faults go on.

Each change runs in a background thread (:class:`MembershipOps`) so the schedule's next faults
(kill -9, pauses, partitions) hit the cluster *while* the change commits and while the learner
catches up. The removed node keeps running with its old certificate until the end: its peers
refuse it (node/raftlink.py ``sync_members``), and the checker proves it never again proposed
a block or signed a counted checkpoint.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

from api.codec import envelope_to_json
from ledger.crypto import Ed25519Signer
from node.config import load_config
from node.member import change_envelope, read_change
from tests.ops.opshelp import write_node_config

ROOT = Path(__file__).resolve().parents[2]

#: The court that joins during a run, its node and its first admin.
NEW_NODE, NEW_COURT, NEW_ADMIN = "ji0102", "吉0102", "ji0102-admin"
#: Membership steps of a schedule, in the only order they make sense.
MEMBER_KINDS = ("join", "promote", "remove")


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``courtledger ARGS…`` in a fresh process (the operator's commands)."""
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _ok(out: subprocess.CompletedProcess[str], what: str) -> None:
    if out.returncode != 0:
        raise RuntimeError(f"{what}: exit {out.returncode}: {out.stderr.strip()[-300:]}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class MembershipOps:
    """Join, promote and remove on a :class:`~tests.faults.run.FaultCluster`, one at a time,
    each in a background thread; what happened is in :attr:`done` and :attr:`errors`."""

    def __init__(self, c: Any, base: int, rng: random.Random, log: list[str]) -> None:
        self.c = c
        self.base = base
        self.rng = rng
        self.log = log
        self.keys = c.folder / "keys"
        self.genesis_path = c.folder / "genesis.toml"
        self.original = list(c.ids)
        self.courts = {n["id"]: n["court"] for n in c.genesis.consortium["nodes"]}
        self.courts[NEW_NODE] = NEW_COURT
        self.voters = list(c.ids)  #: voting nodes as this driver knows them
        #: (op, node id, height of the block holding the committed change)
        self.done: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        self.removed: str | None = None
        self.removed_at: int | None = None
        self.removed_leader = False  #: whether the removed voter led when its removal began
        self._thread: threading.Thread | None = None
        self._n = 0

    # ------------------------------------------------------------------ set-up

    def keygen(self) -> None:
        """The joining court's keys (before the run: a court prepares before it asks)."""
        _ok(cli("keygen", "--node", "--id", NEW_NODE, "--court", NEW_COURT, "--raft-addr",
                f"127.0.0.1:{self.base + 3}", "--out", str(self.keys)), "keygen --node")
        _ok(cli("keygen", "--identity", "--id", NEW_ADMIN, "--court", NEW_COURT, "--roles",
                "admin", "--out", str(self.keys)), "keygen --identity")

    # ------------------------------------------------------------------ running a step

    def begin(self, kind: str) -> None:
        """Start ``kind`` (join, promote or remove) in the background, after the previous
        change has finished (one membership change at a time, Raft thesis §4.1)."""
        self.wait()
        target = None
        if kind == "remove":
            # Any voter of the original three, the leader included (Raft §6: a leader that is
            # removed steps down once the change commits).
            target = self.rng.choice(self.original)
            self.removed_leader = target == self.c.leader()
        self.log.append(f"{time.strftime('%H:%M:%S')} {kind} {target or NEW_NODE} (begins)")
        self._thread = threading.Thread(target=self._run, args=(kind, target),
                                        name=f"member-{kind}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 240) -> None:
        """Wait for the change in progress (if any) to finish."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.errors.append(f"membership step {self._thread.name} still running after "
                                   f"{timeout:.0f} s")
            self._thread = None

    def _run(self, kind: str, target: str | None) -> None:
        if self.errors:
            self.log.append(f"{kind} skipped: an earlier membership step failed")
            return
        try:
            if kind == "join":
                self.join()
            elif kind == "promote":
                self.promote()
            else:
                assert target is not None
                self.remove(target)
        except Exception as exc:  # noqa: BLE001 - reported as a violation of the run
            self.errors.append(f"membership {kind} failed: {type(exc).__name__}: {exc}")
            self.log.append(traceback.format_exc()[-600:])

    # ------------------------------------------------------------------ the three changes

    def join(self) -> None:
        """Add the new court's node as a learner, seed and start it, let it catch up."""
        if "join" in {d[0] for d in self.done}:
            return
        build = ["add-learner", "--node-part", str(self.keys / f"{NEW_NODE}.node.toml"),
                 "--admin-part", str(self.keys / f"{NEW_ADMIN}.identity.toml")]
        height = self._change("add_learner", NEW_NODE, build, self._approvers(NEW_NODE, 2))
        self.wait_role(NEW_NODE, "learner")
        cfg = write_node_config(self.c.folder, NEW_NODE, self.base, 3)
        self.c.configs[NEW_NODE] = load_config(cfg, env={})
        self._seed_and_start(height)
        self.c.ids = [*self.c.ids, NEW_NODE]  # a new list: readers in other threads keep theirs
        self.wait_caught_up(NEW_NODE)
        self.log.append(f"{time.strftime('%H:%M:%S')} join: {NEW_NODE} caught up")

    def promote(self) -> None:
        """Promote the caught-up learner to voter."""
        self._change("promote", NEW_NODE, ["promote", "--id", NEW_NODE, "--court", NEW_COURT],
                     self._approvers(NEW_NODE, len(self.voters) // 2 + 1))
        self.wait_role(NEW_NODE, "voter")
        self.voters = [*self.voters, NEW_NODE]

    def remove(self, target: str) -> None:
        """Remove a voter; its process keeps running with its old certificate."""
        need = len(self.voters) // 2 + 1  # a majority of the voting courts (DESIGN §2)
        height = self._change("remove", target,
                              ["remove", "--id", target, "--court", self.courts[target]],
                              self._approvers(target, need))
        self.removed, self.removed_at = target, height
        self.voters = [v for v in self.voters if v != target]
        # From here on the schedule, the workload and the checker treat it as gone.
        self.c.ids = [n for n in self.c.ids if n != target]
        self.c.removed.append(target)
        self.wait_role(target, None)

    # ------------------------------------------------------------------ helpers

    def _approvers(self, subject: str, need: int) -> list[str]:
        """``need`` admins of voting courts, the subject's own court last."""
        courts = [v for v in self.voters if v != subject] + [v for v in self.voters
                                                            if v == subject]
        return [f"{v}-admin" if v != NEW_NODE else NEW_ADMIN for v in courts[:need]]

    def _change(self, op: str, node: str, build: list[str], approvers: list[str]) -> int:
        """Build, approve (CLI) and submit one change; the height of its committed block."""
        self._n += 1
        path = self.c.folder / f"change-{self._n}-{op}.json"
        g = str(self.genesis_path)
        _ok(cli("member", *build, "--genesis", g, "--out", str(path)), f"member {build[0]}")
        for a in approvers:
            _ok(cli("member", "approve", str(path), "--genesis", g, "--key",
                    str(self.keys / f"{a}.key"), "--identity", a), f"approve by {a}")
        # What ``member submit`` does, once: the signed entry; then resent unchanged.
        doc, change = read_change(path, self.c.genesis)
        submitter = approvers[0]
        signer = Ed25519Signer.from_file(self.keys / f"{submitter}.key")
        court = NEW_COURT if submitter == NEW_ADMIN else None
        env = change_envelope(self.c.genesis, doc, change, signer, court)
        height = self._submit(env, f"{op} {node}")
        self.done.append((op, node, height))
        self.log.append(f"{time.strftime('%H:%M:%S')} {op} {node} committed at height {height}")
        return height

    def _submit(self, env: dict[str, Any], what: str, timeout: float = 150) -> int:
        body = {"entries": [envelope_to_json(env)]}
        deadline = time.monotonic() + timeout
        last = ""
        with httpx.Client(timeout=20) as http:
            while time.monotonic() < deadline:
                live = [n for n in self.c.ids if n in self.c.procs and n not in self.c.paused]
                if not live:
                    time.sleep(0.3)
                    continue
                node = self.rng.choice(live)
                try:
                    r = http.post(self.c.internal(node) + "/v1/entries",
                                  params={"wait": "commit"}, json=body)
                except httpx.HTTPError as exc:
                    last = repr(exc)
                    time.sleep(0.3)
                    continue
                if r.status_code == 200:
                    (e,) = r.json()["entries"]
                    if e.get("height") is not None:
                        return int(e["height"])
                elif 400 <= r.status_code < 500:
                    raise RuntimeError(f"{what} refused by {node}: {r.status_code} "
                                       f"{r.text[:300]}")
                last = f"{r.status_code} {r.text[:200]}"
                time.sleep(0.3)
        raise TimeoutError(f"{what} not committed in {timeout:.0f} s (last: {last})")

    def _seed_and_start(self, admitted_at: int, timeout: float = 300) -> None:
        """``follow --once`` from a member, then start the node; retried until the node stays
        up (the member asked may be killed or paused meanwhile).

        The copy only has to reach the block that admits the node (``admitted_at``): the node
        catches up on the rest itself (Raft, or a verified block transfer past the leader's
        compacted log: DESIGN §3). ``follow --once`` stops at the head it saw first; a member
        paused or cut off mid-copy can still hold it up, so it is interrupted after a while
        (SIGINT: it closes its store cleanly) and resumed if the copy is still short.
        """
        deadline = time.monotonic() + timeout
        data = self.c.folder / "data" / NEW_NODE
        last = ""
        pull_s = 15.0
        while time.monotonic() < deadline:
            live = [n for n in self.c.ids if n in self.c.procs and n not in self.c.paused]
            if not live:
                time.sleep(0.3)
                continue
            src = self.rng.choice(live)
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "follow", "--from", self.c.internal(src),
                 "--token", str(self.keys / "ji01-inspector.token"), "--data", str(data),
                 "--genesis", str(self.genesis_path), "--once"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                # A run started in the background inherits SIGINT ignored; the follower must
                # get Python's KeyboardInterrupt to close its store cleanly.
                preexec_fn=_default_sigint)
            try:
                _, err = proc.communicate(timeout=pull_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    _, err = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    # Stuck: a hard stop is safe for the store (one synced batch per block).
                    proc.kill()
                    _, err = proc.communicate()
            text = err.decode(errors="replace")
            if "fails verification" in text or "not of our verified block" in text:
                # A member served a block or checkpoint that does not verify: a finding.
                raise RuntimeError(f"follow from {src}: {text.strip()[-300:]}")
            # Otherwise (caught up, interrupted, or the member unreachable: exit 3) try the
            # copy: the node itself says whether it holds its admission.
            self.c.start(NEW_NODE)
            time.sleep(3.0)
            p = self.c.procs.get(NEW_NODE)
            if p is not None and p.poll() is None:
                return
            if p is not None and self.c.procs.get(NEW_NODE) is p:
                self.c.procs.pop(NEW_NODE)  # exited: its copy does not reach the admission yet
            last = (f"{NEW_NODE} exited with {p.returncode if p else None} (copy short of "
                    f"height {admitted_at}?)")
        raise TimeoutError(f"{NEW_NODE} could not be seeded and started: {last}")

    def wait_role(self, node: str, role: str | None, timeout: float = 120) -> None:
        """Until a live member's ``/v1/cluster`` lists ``node`` with ``role`` (None: absent)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for n in [x for x in self.c.ids if x in self.c.procs and x not in self.c.paused
                      and x != node]:
                st = self.c.status(n)
                if not st:
                    continue
                members = {m["id"]: m["role"] for m in st.get("members", [])}
                seen[n] = members.get(node)
                if st.get("leader") == n and members.get(node) == role:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"{node} never became {role} on the leader: {seen}")

    def wait_caught_up(self, node: str, timeout: float = 150) -> None:
        """Until ``node`` has applied at least the height a live member had when asked."""
        target = 0
        for n in self.c.ids:
            if n != node and n in self.c.procs and n not in self.c.paused:
                st = self.c.status(n)
                if st:
                    target = max(target, int(st.get("applied_height", 0)))
        deadline = time.monotonic() + timeout
        got = -1
        while time.monotonic() < deadline:
            st = self.c.status(node)
            got = int(st.get("applied_height", -1)) if st else -1
            if got >= target:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{node} at height {got}, not caught up to {target}")
