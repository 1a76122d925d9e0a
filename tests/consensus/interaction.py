"""A scripted harness for the Raft core, in the style of etcd raft's ``rafttest``.

Scenario files under ``testdata/`` hold blocks of::

    # why this block exists (the paper section or etcd behaviour it checks)
    command arg ...
    ----
    the expected transcript

separated by blank lines. :func:`run_file` executes each command against an :class:`Env` and
compares transcripts; with ``REWRITE=1`` in the environment it rewrites the file instead.

Commands:

- ``cluster n1 n2 n3 [learners=n4,n5] [prevote=false] [checkquorum=false] [bugs=a,b]``
- ``add-node n4``: start an empty node (it learns the membership from the leader)
- ``campaign n1``: its election timeout fires now
- ``tick n1 [count]``
- ``propose n1 data`` / ``conf n1 add_learner|promote|remove n4`` / ``transfer n1 n2`` /
  ``read n1 ctx``
- ``process-ready n1 [crash-before-sync]``: handle one ``Ready`` (or write it, then crash
  before the fsync: what was written is lost, nothing was sent)
- ``deliver n1 [from=n2]`` / ``drop n1 [from=n2]``: the messages waiting for ``n1``
- ``stabilize [n1 n2 ...]``: handle readies and deliver messages until nothing moves
- ``partition n1 [n2 ...]`` (cut those nodes off from the rest) / ``heal``
- ``crash n1`` / ``restart n1`` / ``compact n1`` (up to what it applied); messages in
  flight to a crashed node stay in the network and arrive after its restart
- ``inject TYPE from=n1 to=n2 term=T index=I logterm=L``: a message from the network
- ``inbox n1``: the messages waiting for ``n1`` (a node that stopped reading)
- ``status`` / ``log n1``
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from consensus.core import Config, NotLeader, ProposalDropped, RaftCore
from consensus.storage import MemoryStorage
from consensus.types import (
    ENTRY_CONF_CHANGE,
    ConfChange,
    Entry,
    Message,
    MsgType,
    Ready,
)


def fmt_entry(e: Entry) -> str:
    """``index/term type payload``."""
    s = f"{e.index}/{e.term} {e.type}"
    if e.type == ENTRY_CONF_CHANGE and e.change is not None:
        s += f" {e.change.op} {e.change.node}"
    elif e.data:
        s += f" {e.data.decode(errors='replace')}"
    return s


def fmt_msg(m: Message) -> str:
    """One message on one line."""
    s = f"{m.frm}->{m.to} {m.type} term={m.term}"
    t = m.type
    if t in (MsgType.VOTE, MsgType.PRE_VOTE):
        s += f" last={m.index}/{m.log_term}"
        if m.context:
            s += f" ctx={m.context.decode()}"
    elif t in (MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP):
        s += " rejected" if m.reject else " granted"
    elif t == MsgType.APP:
        s += f" prev={m.index}/{m.log_term} commit={m.commit}"
        if m.entries:
            s += " [" + ", ".join(fmt_entry(e) for e in m.entries) + "]"
    elif t == MsgType.APP_RESP:
        if m.reject:
            s += f" rejected index={m.index} hint={m.reject_hint}/{m.log_term}"
        else:
            s += f" index={m.index}"
    elif t == MsgType.HEARTBEAT:
        s += f" commit={m.commit}"
        if m.context:
            s += f" ctx={m.context.decode()}"
    elif t == MsgType.HEARTBEAT_RESP:
        if m.context:
            s += f" ctx={m.context.decode()}"
    elif t == MsgType.SNAP and m.snapshot is not None:
        sn = m.snapshot
        s += f" snapshot={sn.index}/{sn.term} voters={','.join(sn.conf.voters)}"
        if sn.conf.learners:
            s += f" learners={','.join(sn.conf.learners)}"
    return s


class Env:
    """Nodes, their storage, and the messages waiting for each."""

    def __init__(self) -> None:
        self.nodes: dict[str, RaftCore | None] = {}
        self.storage: dict[str, MemoryStorage] = {}
        self.applied: dict[str, int] = {}
        self.inbox: dict[str, list[Message]] = {}
        self.cut: set[str] = set()
        self.voters: list[str] = []
        self.learners: list[str] = []
        self.opts: dict[str, str] = {}

    # -- node lifecycle ----------------------------------------------------------------

    def _config(self, nid: str) -> Config:
        bugs = frozenset(b for b in self.opts.get("bugs", "").split(",") if b)
        return Config(
            id=nid,
            voters=list(self.voters),
            learners=list(self.learners),
            election_tick=10,
            heartbeat_tick=1,
            max_size_per_msg=int(self.opts.get("maxmsg", "1048576")),
            max_inflight_msgs=int(self.opts.get("inflight", "256")),
            check_quorum=self.opts.get("checkquorum", "true") == "true",
            pre_vote=self.opts.get("prevote", "true") == "true",
            applied=self.applied.get(nid, 0),
            bugs=bugs,
        )

    def _start(self, nid: str) -> None:
        # Each node's randomized timeout comes from a seed of its own name: replayable.
        self.nodes[nid] = RaftCore(self._config(nid), self.storage[nid], random.Random(nid))
        self.inbox.setdefault(nid, [])

    def core(self, nid: str) -> RaftCore:
        c = self.nodes.get(nid)
        if c is None:
            raise ValueError(f"{nid} is not running")
        return c

    # -- ready handling ----------------------------------------------------------------

    def process_ready(self, nid: str, out: list[str], crash_before_sync: bool = False) -> bool:
        core = self.core(nid)
        rd = core.ready()
        if rd is None:
            return False
        out.append(f"> {nid} ready")
        self._print_ready(rd, out)
        st = self.storage[nid]
        if rd.snapshot is not None:
            self.applied[nid] = max(self.applied.get(nid, 0), rd.snapshot.index)
            st.apply_snapshot(rd.snapshot)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        st.append(rd.entries)
        if crash_before_sync:
            lost = st.crash()
            self.nodes[nid] = None
            out.append(f"  CRASH before fsync (unsynced writes lost: {lost})")
            return True
        if rd.must_sync:
            st.sync()
        for m in rd.messages:
            self.inbox.setdefault(m.to, []).append(m)
        if rd.committed_entries:
            self.applied[nid] = rd.committed_entries[-1].index
        core.advance(rd)
        return True

    @staticmethod
    def _print_ready(rd: Ready, out: list[str]) -> None:
        if rd.soft_state is not None:
            ss = rd.soft_state
            out.append(f"  state: {ss.role} leader={ss.leader or '-'}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            out.append(f"  hard: term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
        if rd.snapshot is not None:
            sn = rd.snapshot
            out.append(f"  snapshot: catch up to {sn.index}/{sn.term} voters={sn.conf.voters}")
        for e in rd.entries:
            out.append(f"  append: {fmt_entry(e)}")
        if rd.must_sync:
            out.append("  fsync")
        for m in rd.messages:
            out.append(f"  send: {fmt_msg(m)}")
        for e in rd.committed_entries:
            out.append(f"  apply: {fmt_entry(e)}")
        for rs in rd.read_states:
            out.append(f"  read: index={rs.index} ctx={rs.context.decode()}")

    def deliver(self, nid: str, out: list[str], frm: str | None = None, drop: bool = False) -> int:
        msgs = self.inbox.get(nid, [])
        keep, take = [], []
        for m in msgs:
            (take if frm is None or m.frm == frm else keep).append(m)
        self.inbox[nid] = keep
        core = self.nodes.get(nid)
        for m in take:
            if drop or core is None or (m.frm in self.cut) != (m.to in self.cut):
                out.append(f"  dropped: {fmt_msg(m)}")
                continue
            out.append(f"  deliver: {fmt_msg(m)}")
            core.step(m)
        return len(take)

    def stabilize(self, only: list[str], out: list[str]) -> None:
        names = only or sorted(self.nodes)
        for _ in range(1000):
            moved = False
            for nid in names:
                if self.nodes.get(nid) is not None and self.process_ready(nid, out):
                    moved = True
            for nid in names:
                if self.inbox.get(nid):
                    out.append(f"> {nid} receives")
                    self.deliver(nid, out)
                    moved = True
            if not moved:
                return
        raise RuntimeError("stabilize did not settle")

    # -- commands -------------------------------------------------------------------

    def run(self, cmd: str) -> str:
        args = cmd.split()
        name, rest = args[0], args[1:]
        pos = [a for a in rest if "=" not in a]
        kw = dict(a.split("=", 1) for a in rest if "=" in a)
        out: list[str] = []
        try:
            self._dispatch(name, pos, kw, out)
        except (NotLeader, ProposalDropped) as e:
            out.append(f"refused: {type(e).__name__}: {e}")
        return "\n".join(out) if out else "ok"

    def _dispatch(self, name: str, pos: list[str], kw: dict[str, str], out: list[str]) -> None:
        if name == "cluster":
            self.opts = kw
            self.voters = pos
            self.learners = [x for x in kw.get("learners", "").split(",") if x]
            for nid in self.voters + self.learners:
                self.storage[nid] = MemoryStorage()
                self._start(nid)
        elif name == "add-node":
            self.storage[pos[0]] = MemoryStorage()
            self._start(pos[0])
        elif name == "campaign":
            self.core(pos[0]).campaign()
        elif name == "tick":
            n = int(pos[1]) if len(pos) > 1 else 1
            for _ in range(n):
                self.core(pos[0]).tick()
        elif name == "propose":
            idx = self.core(pos[0]).propose(pos[1].encode())
            out.append(f"index {idx}")
        elif name == "conf":
            idx = self.core(pos[0]).propose_conf_change(ConfChange(pos[1], pos[2]), b"")
            out.append(f"index {idx}")
        elif name == "transfer":
            self.core(pos[0]).transfer_leadership(pos[1])
        elif name == "read":
            self.core(pos[0]).read_index(pos[1].encode())
        elif name == "process-ready":
            if not self.process_ready(pos[0], out, crash_before_sync="crash-before-sync" in pos):
                out.append("no ready")
        elif name == "deliver":
            self.deliver(pos[0], out, kw.get("from"))
        elif name == "drop":
            self.deliver(pos[0], out, kw.get("from"), drop=True)
        elif name == "stabilize":
            self.stabilize(pos, out)
        elif name == "partition":
            self.cut = set(pos)
        elif name == "heal":
            self.cut = set()
        elif name == "crash":
            lost = self.storage[pos[0]].crash()
            self.nodes[pos[0]] = None
            out.append(f"unsynced writes lost: {lost}")
        elif name == "restart":
            self._start(pos[0])
            out.append(self._status_line(pos[0]))
        elif name == "compact":
            c = self.core(pos[0])
            st = self.storage[pos[0]]
            st.compact(c.log.applied, c.conf_state())
            out.append(f"first index {st.first_index()}")
        elif name == "inject":
            # A message from the network (a duplicate, or one delayed past a restart).
            m = Message(
                pos[0],
                kw["from"],
                kw["to"],
                term=int(kw.get("term", "0")),
                index=int(kw.get("index", "0")),
                log_term=int(kw.get("logterm", "0")),
            )
            self.inbox.setdefault(m.to, []).append(m)
        elif name == "inbox":
            for m in self.inbox.get(pos[0], []):
                out.append(fmt_msg(m))
            out.append(f"{len(self.inbox.get(pos[0], []))} waiting")
        elif name == "status":
            for nid in sorted(self.nodes):
                out.append(self._status_line(nid))
        elif name == "log":
            c = self.core(pos[0])
            st = self.storage[pos[0]]
            out.append(f"snapshot {st.snapshot_meta().index}/{st.snapshot_meta().term}")
            lo = c.log.first_index()
            for e in c.log.slice(lo, c.log.last_index() + 1, 1 << 62):
                out.append(fmt_entry(e))
        else:
            raise ValueError(f"unknown command {name!r}")

    def _status_line(self, nid: str) -> str:
        c = self.nodes.get(nid)
        if c is None:
            return f"{nid}: down"
        conf = c.conf_state()
        role = "learner" if nid in conf.learners else c.role
        if nid not in conf.voters and nid not in conf.learners:
            role = f"{c.role} (not a member)"
        return (
            f"{nid}: {role} term={c.term} vote={c.vote or '-'} leader={c.lead or '-'} "
            f"commit={c.log.committed} last={c.log.last_index()} applied={c.log.applied}"
        )


def parse(text: str) -> list[tuple[list[str], str, str]]:
    """Blocks of (comment lines, command, expected output)."""
    blocks: list[tuple[list[str], str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            elif comments:
                comments.append("")
            i += 1
        if i >= len(lines):
            if comments:
                blocks.append((comments, "", ""))
            break
        cmd = lines[i]
        i += 1
        if i >= len(lines) or lines[i] != "----":
            raise ValueError(f"line {i}: expected ---- after {cmd!r}")
        i += 1
        exp: list[str] = []
        while i < len(lines) and lines[i].strip():
            exp.append(lines[i])
            i += 1
        while comments and comments[-1] == "":
            comments.pop()
        blocks.append((comments, cmd, "\n".join(exp)))
    return blocks


def run_file(path: Path) -> list[str]:
    """Run a scenario file; returns the mismatches (rewrites the file with ``REWRITE=1``)."""
    blocks = parse(path.read_text())
    env = Env()
    rewrite = os.environ.get("REWRITE") == "1"
    errors: list[str] = []
    out_text: list[str] = []
    for comments, cmd, expected in blocks:
        if not cmd:
            out_text.append("\n".join(comments))
            continue
        got = env.run(cmd)
        if got != expected:
            errors.append(f"{path.name}: {cmd}\n--- expected\n{expected}\n--- got\n{got}")
        block = "\n".join([*comments, cmd, "----", got])
        out_text.append(block)
    if rewrite:
        path.write_text("\n\n".join(out_text) + "\n")
        return []
    return errors
