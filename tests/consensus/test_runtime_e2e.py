"""Real processes on loopback: three ``consensus.demo_node`` runtimes over mutual TLS with
fsync on (issue 5).  Budget: about a minute in all; every child is killed in the finalizer."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus import tls
from consensus.demo_node import ProcessCluster, digest, payload
from consensus.framing import encode_frame

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    c = ProcessCluster(tmp_path, tick_ms=100)  # 1-2 s elections: robust on a busy machine
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def _wait(cond: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _same_everywhere(c: ProcessCluster, nodes: tuple[str, ...], n: int) -> list[tuple[int, str]]:
    """Wait until ``nodes`` applied at least ``n`` entries and agree on their commit index,
    then require identical applied logs."""

    def done() -> bool:
        st = [c.status(x) for x in nodes]
        return (
            all(s["applied_normal"] >= n for s in st)
            and len({(s["commit"], s["app_applied"]) for s in st}) == 1
        )

    _wait(done, 60, f"{n} entries applied on {nodes}")
    logs = [c.digests(x) for x in nodes]
    assert all(log == logs[0] for log in logs), "nodes applied different entries"
    return logs[0]


def _load_all(
    c: ProcessCluster, count: int, tag: str, outstanding: int = 256
) -> list[tuple[str, int]]:
    """Have ``count`` entries acknowledged, following the leader if it moves mid-run (on a
    starved machine CheckQuorum may depose it): what was acknowledged stays, the rest is
    proposed again to the new leader under a new tag.  Returns (tag, acknowledged) per run."""
    acked: list[tuple[str, int]] = []
    for attempt in range(5):
        todo = count - sum(n for _, n in acked)
        if todo <= 0:
            break
        run_tag = f"{tag}{attempt}"
        req = {"op": "load", "count": todo, "size": 64, "outstanding": outstanding, "tag": run_tag}
        acked.append((run_tag, c.request(c.leader(), req)["committed"]))
    assert sum(n for _, n in acked) == count
    return acked


def _propose(c: ProcessCluster, data: bytes) -> int:
    for _ in range(5):
        reply = c.request(c.leader(), {"op": "propose", "data": data.hex()})
        if "index" in reply:
            return int(reply["index"])
    raise AssertionError(f"could not propose: {reply}")


def test_three_nodes_elect_and_replicate_10000_entries(cluster: ProcessCluster) -> None:
    acked = _load_all(cluster, 10_000, "r")
    applied = {d for _, d in _same_everywhere(cluster, cluster.ids, 10_000)}
    if len(acked) == 1:  # the usual case: exactly the 10,000, in order
        tag, n = acked[0]
        assert [d for _, d in cluster.digests(cluster.ids[0])] == [
            digest(payload(tag, i, 64)) for i in range(n)
        ]
    # Each acknowledged entry of each attempt is applied (workers take sequence numbers in
    # order, so an attempt's acknowledged entries are among its first ``n + 256``).
    for tag, n in acked:
        have = sum(digest(payload(tag, i, 64)) in applied for i in range(n + 256))
        assert have >= n


def test_kill_9_of_the_leader_mid_stream_loses_no_committed_entry(cluster: ProcessCluster) -> None:
    lead = cluster.leader()
    acked: dict[int, int] = {}  # seq -> index, as acknowledged by the leader before it died
    sock = cluster.connect(lead)
    sock.sendall(
        json.dumps(
            {"op": "load", "count": 50_000, "size": 100, "outstanding": 64, "tag": "k", "stream": 1}
        ).encode()
        + b"\n"
    )

    def read_acks() -> None:
        with sock.makefile("rb") as f:
            for line in f:
                msg = json.loads(line)
                if "c" in msg:
                    acked[msg["c"]] = msg["i"]

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    _wait(lambda: len(acked) >= 2000, 60, "2000 acknowledged commits")
    cluster.kill(lead)  # kill -9, mid-stream
    reader.join(10)
    sock.close()
    survivors = tuple(n for n in cluster.ids if n != lead)
    new = cluster.leader(survivors)
    assert new != lead
    # A proposal in the new term commits everything before it (Raft §5.4.2).
    _propose(cluster, b"after")
    last = max(acked.values())
    _wait(
        lambda: all(c["app_applied"] > last for c in map(cluster.status, survivors)),
        30,
        "survivors to apply past the last acknowledged index",
    )
    for node in survivors:
        applied = dict(cluster.digests(node))
        missing = [s for s, i in acked.items() if applied.get(i) != digest(payload("k", s, 100))]
        assert missing == [], f"{node} lost {len(missing)} acknowledged entries"


def test_restarted_node_resumes_from_its_log(cluster: ProcessCluster) -> None:
    _load_all(cluster, 500, "a", outstanding=16)
    lead = cluster.leader()
    victim = next(n for n in cluster.ids if n != lead)
    _same_everywhere(cluster, cluster.ids, 500)
    before = cluster.status(victim)
    cluster.kill(victim)
    _load_all(cluster, 300, "b", outstanding=16)  # two of three still commit
    cluster.start(victim)
    cluster.wait_up(victim)
    started = cluster.status(victim)["started_from"]
    assert started["term"] >= before["term"]  # term and vote were durable
    assert started["last_index"] >= before["commit"]  # read back from LevelDB, not refetched
    _same_everywhere(cluster, cluster.ids, 800)


def _raft_port(c: ProcessCluster, nid: str) -> int:
    return int(c.nodes[nid]["raft"].rpartition(":")[2])


def test_certificate_outside_the_consortium_is_refused_and_counted(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    lead = cluster.leader()
    term = cluster.status(lead)["term"]
    cert, key = tls.generate_node_certificate("n2")  # right name, wrong certificate
    (tmp_path / "rogue.crt").write_bytes(cert)
    (tmp_path / "rogue.key").write_bytes(key)
    ctx = tls.client_context(
        str(tmp_path / "rogue.crt"),
        str(tmp_path / "rogue.key"),
        [(tmp_path / f"{lead}.crt").read_bytes()],
    )
    vote = {
        "type": "vote",
        "frm": "n2",
        "to": lead,
        "term": term + 5,
        "index": 10**6,
        "log_term": term + 5,
    }
    frame = encode_frame({"k": "raft", "m": vote})
    for _ in range(3):
        try:
            with socket.create_connection(("127.0.0.1", _raft_port(cluster, lead)), 5) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.sendall(frame)
                    s.recv(1)
        except (ssl.SSLError, OSError):
            pass
    # And a plain TCP client with no certificate at all.
    with socket.create_connection(("127.0.0.1", _raft_port(cluster, lead)), 5) as raw:
        raw.sendall(frame)
        try:
            raw.recv(1)
        except OSError:
            pass
    _wait(lambda: cluster.status(lead)["transport"].get("refused", 0) >= 4, 10, "refusals counted")
    assert cluster.status(lead)["term"] < term + 5  # the rogue's vote of term + 5 never got in
    _propose(cluster, b"still ok")


def test_malformed_frame_is_survived(cluster: ProcessCluster) -> None:
    lead = cluster.leader()
    follower = next(n for n in cluster.ids if n != lead)
    # A member's own certificate (a buggy or compromised peer), sending garbage.
    ctx = tls.client_context(
        str(cluster.root / f"{lead}.crt"),
        str(cluster.root / f"{lead}.key"),
        [(cluster.root / f"{follower}.crt").read_bytes()],
    )
    for junk in (
        struct.pack(">I", 3) + b"\xc1\xc1\xc1",
        struct.pack(">I", 1 << 31),
        b"\x00\x00\x00\x05hello",
    ):
        with socket.create_connection(("127.0.0.1", _raft_port(cluster, follower)), 5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(junk)
                try:
                    s.recv(1)
                except (ssl.SSLError, OSError):
                    pass
    _wait(
        lambda: cluster.status(follower)["transport"].get("malformed", 0) >= 3,
        10,
        "malformed counted",
    )
    _load_all(cluster, 100, "m", outstanding=8)
    _same_everywhere(cluster, cluster.ids, 100)
