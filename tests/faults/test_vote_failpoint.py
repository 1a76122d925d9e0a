"""``crash-before-vote-reply``: a vote is on disk before the reply that grants it leaves.

Every node starts with the failpoint at its first new vote, so the first election kills each
node that votes (a candidate's vote for itself included) after the vote was fsynced and before
any message that depends on it left (Raft §5.2, Figure 2: ``votedFor`` is persistent state,
written before responding). The Raft log read offline afterwards must hold that vote in that
term; restarted without failpoints, the nodes elect a leader in a later term and commit.
Real node processes and LevelDB files. Budget: ~30 s.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx

from consensus.logstore import LogStore
from ledger.entries import envelope_to_json
from node.demo import Cluster
from node.init import init_consortium
from tests.e2e.test_cluster import doc_env, free_base_port

FAILPOINT = {"COURTLEDGER_FAILPOINTS": "crash-before-vote-reply=1"}
FIRED = "failpoint crash-before-vote-reply: kill -9"


def test_a_vote_is_durable_before_its_reply_leaves(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    init_consortium(folder, 3, base_port=free_base_port())
    c = Cluster(folder)
    try:
        for n in c.ids:
            c.start(n, env=FAILPOINT)
        # Until every node has voted and died, or two have (a lone survivor cannot win even
        # a pre-vote, so it never votes).
        deadline = time.monotonic() + 60
        dead: list[str] = []
        while time.monotonic() < deadline:
            dead = [n for n in c.ids if c.procs[n].poll() is not None]
            if len(dead) >= 2:
                break
            time.sleep(0.2)
        assert len(dead) >= 2, f"the failpoint fired on {dead} only"
        # A survivor is stopped too (kill -9) so that every node restarts without failpoints.
        for n in c.ids:
            c.stop(n, signal.SIGKILL)
        crashed = list(dead)
        terms: dict[str, int] = {}
        for n in crashed:
            log = (folder / "logs" / f"{n}.log").read_text(errors="replace")
            assert FIRED in log, f"{n} died otherwise:\n{log[-2000:]}"
            store = LogStore(str(c.configs[n].data_dir / "raft"))
            try:
                hs, _ = store.initial_state()
            finally:
                store.close()
            # The vote that was about to be answered is on disk, in its term.
            assert hs.term >= 1 and hs.vote in c.ids, (n, hs)
            terms[n] = hs.term
        for n in c.ids:
            c.start(n)  # no failpoints now
        c.wait_ready(timeout=120)
        # They remember: no node is back in a term below the one it voted in.
        for n in crashed:
            st = c.status(n) or {}
            assert st.get("term", 0) >= terms[n], (n, st.get("term"), terms)
        leader = c.leader()
        assert leader is not None
        env = doc_env(c, b"after every voter crashed mid-election")
        r = httpx.post(c.internal(leader) + "/v1/entries", params={"wait": "commit"},
                       json={"entries": [envelope_to_json(env)]}, timeout=30)
        assert r.status_code == 200, r.text
        assert re.fullmatch(r"[0-9a-f]{64}", r.json()["entries"][0]["entry_id"])
    finally:
        c.stop_all()
