"""A node that was down while heights got their quorum collects those checkpoints on return.

Real node processes (kill -9, restart): while one voter is down the other two commit blocks
and cosign them (two of three is a majority). The returning node applies the blocks it missed
and must end up holding every cosigned checkpoint the others hold (DESIGN §2: a checkpoint
counts once it holds a quorum of voter signatures, wherever they were collected), so that it
can answer ``wait=receipt`` and consistency proofs at those sizes. Three ways back:

* a follower, then the leader, down while the others cosign;
* a node down while the others cosign, and then both others restarted before it returns: they
  hold those checkpoints in their stores only, not the signatures they made in memory. This is
  the case a returning node used to miss: its peers could not answer its signature, and its
  cosigned height stayed below theirs (and the heights in between had no checkpoint there).

The fast tests below pin the rules without a network: a peer that restarted answers from its
store; a restarted node's re-made signature counts; a height refused for clock skew is never
signed later. Budget: ≤ 2 minutes (the fast ones < 5 s).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from ledger.checkpoints import sign_checkpoint
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical, decode
from node.demo import Cluster
from node.init import init_consortium
from node.process import Node
from tests.e2e.test_cluster import doc_env, start_cluster, wait_same_head
from tests.node.test_pipeline import _apply_one, doc, node_of

# --------------------------------------------------------------------------- fast: the rules


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("three") / "c"
    init_consortium(out, 3, base_port=38400)  # no sockets are opened here
    return out


class Wire:
    """Records what the cosigner sends instead of sending it."""

    def __init__(self, node: Node) -> None:
        self.sent: list[tuple[str | None, dict[str, Any]]] = []
        node.cosigner.send_one = self.send_one
        node.cosigner.send_all = self.send_all

    async def send_one(self, peer: str, channel: str, data: bytes) -> None:
        self.sent.append((peer, decode(data, max_size=8192)))

    async def send_all(self, channel: str, data: bytes) -> None:
        self.sent.append((None, decode(data, max_size=8192)))


def body(node: Node, h: int) -> dict[str, Any]:
    cp = node.chain.checkpoint_body(h)
    assert cp is not None
    return cp


def frame(folder: Path, node_id: str, cp: dict[str, Any]) -> bytes:
    signer = Ed25519Signer.from_file(folder / "keys" / f"{node_id}.node.key")
    return canonical({"cp": cp, "node": node_id, "sig": sign_checkpoint(signer, cp["chain"], cp)})


def test_a_restarted_peer_answers_from_its_store(three: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(three, "spc", tmp_path)
        try:
            header, bhash = _apply_one(node, doc(three, node, 40))
            cp = body(node, 1)
            # Height 1 got its quorum (spc + ji01) before a restart: only the store has it.
            mine = sign_checkpoint(node.signer, node.chain.chain_id, cp)
            ji01 = decode(frame(three, "ji01", cp), max_size=8192)["sig"]
            node.chain.put_checkpoint(cp, [{"node": "ji01", "sig": ji01},
                                           {"node": "spc", "sig": mine}])
            wire = Wire(node)
            # The node that was away signs height 1 and asks.
            await node.cosigner.on_frame("ji", frame(three, "ji", cp))
            assert [(p, m["node"], m["sig"]) for p, m in wire.sent] == [("ji", "spc", mine)]
        finally:
            node.chain.close()

    asyncio.run(main())


def test_a_restarted_nodes_own_signature_counts_again(three: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(three, "spc", tmp_path)
        try:
            _apply_one(node, doc(three, node, 41))  # applied before the restart, no quorum
            wire = Wire(node)
            await node.cosigner.resend([1])
            assert [(p, m["node"]) for p, m in wire.sent] == [(None, "spc")]
            # One peer's answer now completes the quorum (2 of 3).
            await node.cosigner.on_frame("ji01", frame(three, "ji01",
                                                       body(node, 1)))
            assert node.chain.cosigned(1)
        finally:
            node.chain.close()

    asyncio.run(main())


def test_a_height_refused_for_clock_skew_is_never_signed_later(three: Path,
                                                               tmp_path: Path) -> None:
    async def main() -> None:
        node = node_of(three, "spc", tmp_path)
        try:
            header, bhash = _apply_one(node, doc(three, node, 42))
            skewed = dict(header, time=header["time"] - 10 * 60 * 1000)
            wire = Wire(node)
            await node.cosigner.on_applied(skewed, bhash, caught_up=True)
            assert "clock_skew" in node.alarms
            await node.cosigner.on_frame("ji", frame(three, "ji", body(node, 1)))
            await node.cosigner.resend([1])
            assert not any(m["node"] == "spc" for _, m in wire.sent), wire.sent
        finally:
            node.chain.close()

    asyncio.run(main())


def test_a_signature_for_a_height_not_applied_is_judged_by_that_heights_voters(
    three: Path, tmp_path: Path
) -> None:
    """A returning node gets signatures of heights it has not applied yet. They are judged
    once it has applied them, against the voters in force there: a node promoted by a block
    still ahead of this one's head must count (seen in a fault run: dropped as invalid, that
    quorum was never completed here)."""
    async def main() -> None:
        ahead = node_of(three, "spc", tmp_path / "ahead")
        node = node_of(three, "spc", tmp_path / "behind")
        try:
            header, bhash = _apply_one(ahead, doc(three, ahead, 43))
            cp = body(ahead, 1)
            block = ahead.chain.block(1)
            assert block is not None
            everyone = node.chain.voters_at(1)
            # Until height 1 is applied here, ji01 is not a voter as far as the head knows.
            real = node.chain.voters_at
            node.chain.voters_at = lambda h: (  # type: ignore[method-assign]
                [v for v in everyone if v[0] != "ji01"] if node.chain.height < 1 else real(h))
            Wire(node)
            await node.cosigner.on_frame("ji01", frame(three, "ji01", cp))
            assert not node.chain.cosigned(1) and 1 in node.cosigner.early
            _, ids = node.chain.check(block)
            node.chain.append(block, bhash, ids, 1)
            await node.cosigner.on_applied(header, bhash, caught_up=False)
            assert node.chain.cosigned(1), node.cosigner.sigs
            assert set(node.cosigner.sigs[1]) == {"spc", "ji01"}
        finally:
            ahead.chain.close()
            node.chain.close()

    asyncio.run(main())


def test_a_node_judges_block_times_only_once_settled_near_the_commit_index(
    three: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last blocks of a backlog are applied near the commit index but long after their
    time: they must not be refused as skewed (which would leave them without this node's
    signature). Judging starts once the node has stayed near the commit index a while."""
    import node.process as process

    node = node_of(three, "spc", tmp_path)
    try:
        clock = [1000.0]
        monkeypatch.setattr(process.time, "monotonic", lambda: clock[0])
        commit = [500]
        monkeypatch.setattr(node.replicator, "commit_index", lambda: commit[0])
        assert not node._caught_up(100)  # far behind
        assert not node._caught_up(499)  # the end of the backlog, just reached
        clock[0] += process.SETTLE_S / 2
        assert not node._caught_up(500)
        clock[0] += process.SETTLE_S
        assert node._caught_up(500)  # settled: its clock judges block times now
        commit[0] = 900
        assert not node._caught_up(501)  # behind again (a pause, a partition)
        assert not node._caught_up(899)
    finally:
        node.chain.close()


# --------------------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = start_cluster(tmp_path_factory.mktemp("cosign-catchup") / "c")
    yield c
    c.stop_all()


def commit_blocks(c: Cluster, via: str, n: int, tag: str) -> None:
    """``n`` blocks, each cosigned before the next (``wait=receipt``)."""
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            env = doc_env(c, f"{tag} {i}".encode())
            r = http.post(c.internal(via) + "/v1/entries", params={"wait": "receipt"},
                          json={"entries": [envelope_to_json(env)]})
            assert r.status_code == 200 and r.json()["entries"][0]["receipt"], r.text


def auth(c: Cluster) -> dict[str, str]:
    t = (c.folder / "keys" / "ji01-inspector.token").read_text().strip()
    return {"Authorization": f"Bearer {t}"}


def missing_checkpoints(c: Cluster, node: str, heights: range) -> list[int]:
    """The heights whose cosigned checkpoint ``node`` does not serve."""
    missing = []
    with httpx.Client(timeout=10, headers=auth(c)) as http:
        for h in heights:
            size = http.get(c.internal(node) + f"/v1/blocks/{h}").json()["header"]["tree_size"]
            if http.get(c.internal(node) + f"/v1/checkpoints/{size}").status_code != 200:
                missing.append(h)
    return missing


def cosigned(c: Cluster) -> dict[str, Any]:
    return {n: (c.status(n) or {}).get("cosigned_height") for n in c.ids}


def wait_same_cosigned(c: Cluster, timeout: float = 30) -> int:
    """Every node's cosigned height equal to the applied head, within ``timeout``."""
    head = int(wait_same_head(c, c.ids, timeout=60)["height"])
    deadline = time.monotonic() + timeout
    while True:
        got = cosigned(c)
        if all(h == head for h in got.values()):
            return head
        if time.monotonic() > deadline:
            raise AssertionError(f"cosigned heights {got}, head {head}")
        time.sleep(0.2)


def down_and_back(c: Cluster, victim: str, tag: str) -> None:
    c.stop(victim, signal.SIGKILL)
    others = [n for n in c.ids if n != victim]
    deadline = time.monotonic() + 60
    while c.leader() is None or c.leader() == victim:
        assert time.monotonic() < deadline, "no leader among the others"
        time.sleep(0.2)
    commit_blocks(c, others[0], 6, tag)
    c.start(victim)
    c.wait_ready([victim], timeout=120)
    head = wait_same_cosigned(c)
    # The returning node answers wait=receipt itself, and serves the checkpoints it missed.
    r = httpx.post(c.internal(victim) + "/v1/entries", params={"wait": "receipt"},
                   json={"entries": [envelope_to_json(doc_env(c, f"{tag} back".encode()))]},
                   timeout=30)
    assert r.status_code == 200 and r.json()["entries"][0]["receipt"], r.text
    assert wait_same_cosigned(c) == head + 1


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_follower_down_during_quorums_gets_every_checkpoint(cluster: Cluster) -> None:
    commit_blocks(cluster, cluster.ids[0], 2, "warm-up")
    wait_same_cosigned(cluster)
    leader = cluster.leader()
    follower = next(n for n in cluster.ids if n != leader)
    down_and_back(cluster, follower, "follower away")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_leader_down_during_quorums_gets_every_checkpoint(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    down_and_back(cluster, leader, "leader away")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_node_back_after_its_peers_restarted_gets_every_checkpoint(cluster: Cluster) -> None:
    c = cluster
    wait_same_cosigned(c)
    leader = c.leader()
    away = next(n for n in c.ids if n != leader)
    others = [n for n in c.ids if n != away]
    c.stop(away, signal.SIGKILL)
    start = wait_same_head(c, others)["height"] + 1
    commit_blocks(c, others[0], 4, "peers restart")
    # Both others restart, one at a time (the pair keeps a quorum between restarts): they now
    # hold the checkpoints of these heights only in their stores.
    for n in others:
        c.stop(n, signal.SIGKILL)
        c.start(n)
        c.wait_ready([n], timeout=120)
    c.start(away)
    c.wait_ready([away], timeout=120)
    head = wait_same_cosigned(c)
    assert missing_checkpoints(c, away, range(start, head + 1)) == []
    r = httpx.post(c.internal(away) + "/v1/entries", params={"wait": "receipt"},
                   json={"entries": [envelope_to_json(doc_env(c, b"peers restart back"))]},
                   timeout=30)
    assert r.status_code == 200 and r.json()["entries"][0]["receipt"], r.text
