"""A removed node's certificate is refused (issue 11, security suite). Budget: about a minute.

Three courts on loopback. A follower (and, in a second run, the leader itself) is removed by a
committed ``membership`` entry, built,
approved by a majority of the voting courts and submitted with the operator's commands
(``courtledger member remove|approve|submit``, docs/operations.md §4). Its process is left
running with its old certificate and key, as a careless or hostile operator would leave it.
From the block after the removal (DESIGN §2: membership changes take effect from the next
block) the other nodes no longer pin its certificate (DESIGN §3):

* its own process keeps dialling and every attempt is refused after the handshake, and counted
  in ``courtledger_peer_refused_total`` on the nodes it knocks at;
* a vote at a higher term and a cosignature frame sent with its certificate get no answer, the
  link is closed, the term does not move;
* a submission through its API is not stored;
* the two remaining voters keep committing; their checkpoints carry only their own signatures,
  and receipts issued after the removal verify offline against the genesis file alone (the
  removal travels as a consortium proof).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from consensus.framing import encode_frame
from ledger.entries import entry_id
from ledger.receipts import verify_receipt
from node.demo import Cluster
from tests.ops.opshelp import (
    cli,
    cluster_status,
    doc_env,
    post,
    start_cluster,
    tls_link_answers,
    token_header,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


def peer_refused(c: Cluster, node: str) -> float:
    """``courtledger_peer_refused_total`` of one node."""
    text = httpx.get(c.internal(node) + "/metrics", timeout=5).text
    m = re.search(r"^courtledger_peer_refused_total (\S+)$", text, re.M)
    assert m is not None, "courtledger_peer_refused_total is not exported"
    return float(m.group(1))


def receipt(c: Cluster, node: str, content: bytes) -> dict[str, Any]:
    r = post(c.internal(node), [doc_env(c, content)])
    assert r.status_code == 200, r.text
    item = r.json()["entries"][0]
    assert item.get("receipt") is not None, item
    return item["receipt"]  # type: ignore[no-any-return]


def members_of(c: Cluster, node: str) -> set[str]:
    return {m["id"] for m in cluster_status(c.internal(node))["members"]}


def leader_among(c: Cluster, nodes: list[str], timeout: float = 30) -> str:
    """The leader once every node of ``nodes`` names the same one, from ``nodes``."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {cluster_status(c.internal(n)).get("leader") for n in nodes}
        if len(seen) == 1 and (leader := seen.pop()) in nodes:
            return str(leader)
        assert time.monotonic() < deadline, f"no leader among {nodes}: {seen}"
        time.sleep(0.3)


@pytest.mark.parametrize("who", ["follower", "leader"])
def test_removed_voter_is_refused_everywhere_and_the_cluster_keeps_committing(
        tmp_path: Path, who: str) -> None:
    c, _ = start_cluster(tmp_path / "c", courts=3, spare=0)
    try:
        leader = c.leader()
        assert leader is not None
        gone = leader if who == "leader" else next(n for n in c.ids if n != leader)
        stay = [n for n in c.ids if n != gone]
        courts = {n["id"]: n["court"] for n in c.genesis.consortium["nodes"]}
        before = receipt(c, leader, b"before the removal")

        # The removal, through the operator's commands: 2 of 3 voting courts approve.
        g = str(c.folder / "genesis.toml")
        change = tmp_path / "remove.json"
        out = cli("member", "remove", "--id", gone, "--court", courts[gone], "--genesis", g,
                  "--out", str(change))
        assert out.returncode == 0, out.stderr
        for n in stay:
            out = cli("member", "approve", str(change), "--genesis", g, "--key",
                      str(c.folder / "keys" / f"{n}-admin.key"), "--identity", f"{n}-admin")
            assert out.returncode == 0, out.stderr
        out = cli("member", "submit", str(change), "--genesis", g, "--key",
                  str(c.folder / "keys" / f"{stay[0]}-admin.key"), "--node",
                  c.internal(leader), "--wait")
        assert out.returncode == 0, out.stderr
        removed_at = int(json.loads(out.stdout)["entries"][0]["height"])  # the removal block
        deadline = time.monotonic() + 30
        while any(gone in members_of(c, n) for n in stay):
            assert time.monotonic() < deadline, "the removal never took effect"
            time.sleep(0.3)
        # A removed leader steps down once its removal commits (Raft thesis §4.2.2).
        leader = leader_among(c, stay)

        # Its process runs on, with its old certificate; it keeps dialling and is refused.
        assert c.procs[gone].poll() is None
        counts = {n: peer_refused(c, n) for n in stay}
        term = cluster_status(c.internal(leader))["term"]
        deadline = time.monotonic() + 20
        while not all(peer_refused(c, n) > counts[n] for n in stay):
            assert time.monotonic() < deadline, (
                f"the removed node's dials were not refused and counted: {counts}")
            time.sleep(0.5)

        # Frames sent with its certificate: no answer, the link closed, nothing moves.
        keys = c.folder / "keys"
        vote = encode_frame({"k": "raft", "m": {
            "type": "vote", "frm": gone, "to": leader, "term": term + 9, "index": 10**6,
            "log_term": term + 9}})
        prevote = encode_frame({"k": "raft", "m": {
            "type": "prevote", "frm": gone, "to": leader, "term": term + 9, "index": 10**6,
            "log_term": term + 9}})
        cosign = encode_frame({"k": "app", "ch": "cosign", "d": b"\x80"})
        for n in stay:
            refused = peer_refused(c, n)
            port = c.configs[n].listen.raft.port
            for frame in (vote, prevote, cosign):
                assert not tls_link_answers(keys / f"{gone}.tls.crt", keys / f"{gone}.tls.key",
                                    keys / f"{n}.tls.crt", port, frame), n
            assert peer_refused(c, n) >= refused + 3, n

        # A submission through the removed node's API is not stored.
        env = doc_env(c, b"through the removed node")
        eid = entry_id(c.genesis.hash_alg, env["payload"]).hex()
        try:
            r = httpx.post(c.internal(gone) + "/v1/entries", params={"wait": "commit"},
                           json={"entries": [envelope_to_json(env)]}, timeout=15)
            assert r.status_code != 200 or r.json()["entries"][0].get("height") is None, r.text
        except httpx.HTTPError:
            pass  # no answer at all is a refusal too

        # The two remaining voters keep committing, with only their own signatures.
        after = [receipt(c, n, b"after the removal, through %s" % n.encode()) for n in stay]
        for rec in after:
            verify_receipt(rec, c.genesis)  # the removal arrives as a consortium proof
            assert rec["checkpoint"]["height"] > removed_at
            assert {s["node"] for s in rec["signatures"]} == set(stay), rec["signatures"]
            assert len(rec["consortium"]) == 1
        verify_receipt(before, c.genesis)
        for n in stay:
            st = cluster_status(c.internal(n))
            # Its campaigns and the vote at term + 9 moved nothing (a leader change among the
            # two on a loaded machine may add a term, never nine, and never elects it).
            assert st["term"] < term + 9 and st["leader"] in stay, (n, term, st)
            assert gone not in {m["id"] for m in st["members"]}
            got = httpx.get(c.internal(n) + f"/v1/entries/{eid}", headers=token_header(c),
                            timeout=5)
            assert got.status_code == 404, got.text
            head = httpx.get(c.internal(n) + "/v1/head", timeout=5).json()
            for h in range(removed_at + 1, head["height"] + 1):
                block = httpx.get(c.internal(n) + f"/v1/blocks/{h}", headers=token_header(c),
                                  timeout=5).json()
                assert block["header"]["proposer"] != gone, (n, h)
        assert c.procs[gone].poll() is None  # it was running (and refused) all along
    finally:
        c.stop_all()
