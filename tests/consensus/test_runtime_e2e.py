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
    c = ProcessCluster(tmp_path)
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
    def done() -> bool:
        return all(c.status(x)["applied_normal"] >= n for x in nodes)

    _wait(done, 60, f"{n} entries applied on {nodes}")
    logs = [c.digests(x) for x in nodes]
    assert all(log == logs[0] for log in logs), "nodes applied different entries"
    return logs[0]


def test_three_nodes_elect_and_replicate_10000_entries(cluster: ProcessCluster) -> None:
    lead = cluster.leader()
    reply = cluster.request(
        lead, {"op": "load", "count": 10_000, "size": 64, "outstanding": 256, "tag": "r"}
    )
    assert reply["committed"] == 10_000 and reply["errors"] == {}
    applied = _same_everywhere(cluster, cluster.ids, 10_000)
    assert [d for _, d in applied] == [digest(payload("r", i, 64)) for i in range(10_000)]


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
    assert "index" in cluster.request(new, {"op": "propose", "data": b"after".hex()})
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
    lead = cluster.leader()
    r = cluster.request(lead, {"op": "load", "count": 500, "size": 64, "outstanding": 16})
    assert r["committed"] == 500
    victim = next(n for n in cluster.ids if n != lead)
    _same_everywhere(cluster, cluster.ids, 500)
    before = cluster.status(victim)
    cluster.kill(victim)
    r = cluster.request(
        lead, {"op": "load", "count": 300, "size": 64, "outstanding": 16, "tag": "b"}
    )
    assert r["committed"] == 300  # two of three still commit
    cluster.start(victim)
    cluster.wait_up(victim)
    started = cluster.status(victim)["started_from"]
    assert started["term"] == before["term"]
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
    status = cluster.status(lead)
    assert status["role"] == "leader" and status["term"] == term  # the vote never got in
    assert "index" in cluster.request(lead, {"op": "propose", "data": b"still ok".hex()})


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
    r = cluster.request(
        lead, {"op": "load", "count": 100, "size": 64, "outstanding": 8, "tag": "m"}
    )
    assert r["committed"] == 100
    _same_everywhere(cluster, cluster.ids, 100)
