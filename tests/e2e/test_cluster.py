"""End to end: three real node processes on loopback (issue 6). Budget: ≤ 4 minutes together.

One cluster serves the submission, crash and catch-up tests (in file order); a second one,
started with the test-only ``equivocate`` failpoint, shows that a leader feeding different
blocks to two followers is caught by their cosignature exchange.
"""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical
from ledger.entries import make_payload, sign_entry
from ledger.genesis import load_genesis
from ledger.receipts import verify_receipt
from node.demo import Cluster
from node.init import init_consortium

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def free_base_port() -> int:
    """A base port whose raft (+0..2), internal (+100..) and public (+200..) ports are free."""
    rng = random.Random()
    for _ in range(200):
        # Below Linux's ephemeral range (32768-60999 by default): a node that restarts must
        # bind its ports again, and an outgoing connection's local port must not take one
        # meanwhile (seen in a fault run: "address already in use" at every restart).
        base = rng.randrange(20000, 32500, 10)
        ok = True
        for off in (0, 1, 2, 100, 101, 102, 200, 201, 202):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + off))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def start_cluster(tmp: Path, env: dict[str, str] | None = None) -> Cluster:
    init_consortium(tmp, 3, base_port=free_base_port())
    cluster = Cluster(tmp, extra_env=env)
    cluster.start_all()
    try:
        cluster.wait_ready(timeout=120)
    except BaseException:
        cluster.stop_all()
        raise
    return cluster


#: A short Raft log, so that a node away for a few blocks needs the verified block transfer.
SHORT_LOG = {"COURTLEDGER_RAFT__COMPACT_THRESHOLD": "20",
             "COURTLEDGER_RAFT__COMPACT_RETAIN": "4"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = start_cluster(tmp_path_factory.mktemp("e2e") / "c", env=SHORT_LOG)
    yield c
    c.stop_all()


def key(c: Cluster, ident: str) -> Ed25519Signer:
    return Ed25519Signer.from_file(c.folder / "keys" / f"{ident}.key")


def token(c: Cluster) -> dict[str, str]:
    t = (c.folder / "keys" / "ji01-inspector.token").read_text().strip()
    return {"Authorization": f"Bearer {t}"}


def doc_env(c: Cluster, content: bytes, case: str = "（2025）吉01执5号") -> dict[str, Any]:
    s = key(c, "ji01-clerk1")
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(content).digest(), "size": len(content),
            "media_type": "text/plain"}
    p = make_payload("document", "吉01", s.public_key(), body, int(time.time() * 1000), case=case)
    return sign_entry(s, c.genesis.chain_id, p)


def event_env(c: Cluster, case: str = "（2025）吉01执5号", refs: list[bytes] | None = None,
              ) -> dict[str, Any]:
    s = key(c, "ji01-officer1")
    now = int(time.time() * 1000)
    body: dict[str, Any] = {"type": "HANDLER_ASSIGNED", "occurred_at": now,
                            "actor": {"officer_id": "ji01-officer1", "role": "officer"},
                            "fields": {"handler": "ji01-officer1", "team": "执行一庭"}}
    if refs:
        body["doc_refs"] = refs
    return sign_entry(s, c.genesis.chain_id,
                      make_payload("event", "吉01", s.public_key(), body, now, case=case))


def evidence_env(c: Cluster, content: bytes, case: str = "（2025）吉01执5号") -> dict[str, Any]:
    s = key(c, "ji01-officer2")
    now = int(time.time() * 1000)
    body = {"sha256": hashlib.sha256(content).digest(), "media_type": "image/jpeg",
            "size": len(content), "captured_at": now - 60_000,
            "location": {"lat_e6": 43_880_000, "lon_e6": 125_320_000}, "device": "BWC-7",
            "officers": ["ji01-officer1", "ji01-officer2"]}
    return sign_entry(s, c.genesis.chain_id,
                      make_payload("evidence", "吉01", s.public_key(), body, now, case=case))


def head(c: Cluster, node: str) -> dict[str, Any]:
    return httpx.get(c.internal(node) + "/v1/head", timeout=5).json()  # type: ignore[no-any-return]


def wait_same_head(c: Cluster, nodes: list[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        heads = []
        for n in nodes:
            try:
                heads.append(head(c, n))
            except httpx.HTTPError:
                heads.append({})
        if heads[0] and all(h == heads[0] for h in heads):
            return heads[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"heads differ: {heads}")
        time.sleep(0.3)


# --------------------------------------------------------------------------- the tests


def test_submit_json_msgpack_cli_receipts_and_verify_by_hash(cluster: Cluster) -> None:
    c = cluster
    genesis = load_genesis(c.folder / "genesis.toml")
    followers = [n for n in c.ids if n != c.leader()]
    content = b"enforcement notice e2e"
    doc = doc_env(c, content)
    photo = b"\xff\xd8 body camera frame"
    ev = evidence_env(c, photo)
    event = event_env(c, refs=[hashlib.sha256(content).digest()])
    # JSON through a follower (forwarded over the peer links), msgpack through the other.
    r1 = httpx.post(c.internal(followers[0]) + "/v1/entries", params={"wait": "receipt"},
                    json={"entries": [envelope_to_json(doc)]}, timeout=30)
    assert r1.status_code == 200, r1.text
    r2 = httpx.post(c.internal(followers[1]) + "/v1/entries", params={"wait": "receipt"},
                    content=canonical([ev, event]),
                    headers={"content-type": "application/msgpack"}, timeout=30)
    assert r2.status_code == 200, r2.text
    # And the CLI, with --wait printing the receipt.
    f = c.folder / "ruling.txt"
    f.write_bytes(b"a ruling submitted from the CLI")
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "submit", "document", "--node",
         c.internal(c.ids[0]), "--genesis", str(c.folder / "genesis.toml"),
         "--key", str(c.folder / "keys" / "ji01-clerk2.key"), "--case", "(2025)吉01执6号",
         "--file", str(f), "--doc-type", "执行裁定书", "--wait"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    receipts = [e["receipt"] for e in r1.json()["entries"] + r2.json()["entries"]]
    import json

    receipts.append(json.loads(out.stdout))
    for rec in receipts:
        verify_receipt(rec, genesis)  # the genesis file alone
    wait_same_head(c, c.ids)
    for n in c.ids:
        for data, found in ((content, True), (f.read_bytes(), True), (b"never anchored", False),
                            (photo, False)):  # evidence is never matched publicly
            r = httpx.get(c.public(n) + "/v1/verify/" + hashlib.sha256(data).hexdigest(),
                          timeout=5)
            assert r.status_code == 200 and r.json()["anchored"] is found, (n, data, r.text)


def test_public_listener_refuses_writes_and_internal_routes(cluster: Cluster) -> None:
    c = cluster
    env = doc_env(c, b"not through the public door")
    for n in c.ids:
        base = c.public(n)
        r = httpx.post(base + "/v1/entries", json={"entries": [envelope_to_json(env)]})
        assert r.status_code in (404, 405)
        for path in ("/v1/cluster", "/v1/head", "/v1/blocks/1", "/metrics", "/v1/receipts/00",
                     "/v1/checkpoints/latest", "/v1/consistency?first=1&second=2", "/readyz"):
            assert httpx.get(base + path).status_code == 404, path
    assert httpx.get(c.public(c.ids[0]) + "/v1/verify/" + hashlib.sha256(
        b"not through the public door").hexdigest()).json()["anchored"] is False


def test_kill_leader_while_clients_retry_every_ack_is_there_once(cluster: Cluster) -> None:
    c = cluster
    acked: dict[str, tuple[int, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        with httpx.Client(timeout=15) as http:
            while not stop.is_set():
                env = doc_env(c, f"client {seed} doc {n}".encode(),
                              case=f"（2025）吉01执{200 + seed}号")
                n += 1
                body = {"entries": [envelope_to_json(env)]}
                # Retry the SAME envelope until an answer (DESIGN §5: replays are idempotent).
                for _ in range(200):
                    if stop.is_set() and _ > 20:
                        return
                    node = rng.choice(list(c.procs))
                    try:
                        r = http.post(c.internal(node) + "/v1/entries",
                                      params={"wait": "commit"}, json=body)
                    except httpx.HTTPError:
                        time.sleep(0.1)
                        continue
                    if r.status_code == 200:
                        (e,) = r.json()["entries"]
                        with lock:
                            acked[e["entry_id"]] = (e["height"], e["leaf_index"])
                        break
                    if r.status_code != 503:
                        errors.append(r.text)
                        return
                    time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    leader = c.leader()
    assert leader is not None
    before = len(acked)
    c.stop(leader, signal.SIGKILL)
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(acked) > before, "no entry was acknowledged after the leader died"
    c.start(leader)
    c.wait_ready([leader], timeout=120)
    h = wait_same_head(c, c.ids, timeout=90)
    auth = token(c)
    seen: list[str] = []
    for height in range(1, h["height"] + 1):
        b = httpx.get(c.internal(c.ids[0]) + f"/v1/blocks/{height}", headers=auth).json()
        seen += [_eid(c, e) for e in b["entries"]]
    assert len(seen) == len(set(seen)), "an entry is anchored twice"
    for n in c.ids:
        for eid, (height, leaf) in acked.items():
            r = httpx.get(c.internal(n) + f"/v1/entries/{eid}", headers=auth)
            assert r.status_code == 200, (n, eid)
            assert (r.json()["height"], r.json()["leaf_index"]) == (height, leaf)


def _eid(c: Cluster, env_json: dict[str, Any]) -> str:
    from api.codec import envelope_from_json
    from ledger.crypto import hash_object

    return hash_object(c.genesis.hash_alg, envelope_from_json(env_json)["payload"]).hex()


def test_a_node_stopped_for_a_while_catches_up(cluster: Cluster) -> None:
    # With the short Raft log the leader may have compacted what the node lacks; it then
    # catches up by verified block transfer (tests/node/test_transfer.py checks that path).
    c = cluster
    follower = next(n for n in c.ids if n != c.leader())
    c.stop(follower)
    others = [n for n in c.ids if n != follower]
    with httpx.Client(timeout=30) as http:
        # One entry per request: one block each, more than the Raft log keeps.
        for i in range(30):
            r = http.post(c.internal(others[i % 2]) + "/v1/entries", params={"wait": "commit"},
                          json={"entries": [envelope_to_json(doc_env(c, b"away %d" % i))]})
            assert r.status_code == 200, r.text
    c.start(follower)
    c.wait_ready([follower], timeout=120)
    h = wait_same_head(c, c.ids, timeout=60)
    assert h["tree_size"] >= 30
    # The transferred blocks carry their cosigned checkpoints: receipts work there too.
    env = doc_env(c, b"after the transfer")
    r = httpx.post(c.internal(follower) + "/v1/entries", params={"wait": "receipt"},
                   json={"entries": [envelope_to_json(env)]}, timeout=30)
    assert r.status_code == 200 and r.json()["entries"][0]["receipt"], r.text


def test_equivocating_leader_is_caught_by_the_cosignature_exchange(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    c = start_cluster(tmp_path_factory.mktemp("equivocation") / "c",
                      env={"COURTLEDGER_FAILPOINTS": "equivocate"})
    try:
        leader = c.leader()
        followers = [n for n in c.ids if n != leader]
        env = doc_env(c, b"one block, two versions")
        r = httpx.post(c.internal(leader) + "/v1/entries", params={"wait": "commit"},
                       json={"entries": [envelope_to_json(env)]}, timeout=30)
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        caught: dict[str, Any] = {}
        # Detection takes one exchange once both followers have applied the block; the
        # slower follower may apply it well after the commit on a loaded machine.
        while time.monotonic() - t0 < 30 and len(caught) < 2:
            for n in followers:
                st = c.status(n)
                if st and st.get("evidence"):
                    caught[n] = st
            time.sleep(0.1)
        assert set(caught) == set(followers), caught
        for n, st in caught.items():
            ev = st["evidence"][0]
            assert ev["first"]["checkpoint"]["height"] == ev["second"]["checkpoint"]["height"]
            assert ev["first"]["checkpoint"]["block"] != ev["second"]["checkpoint"]["block"]
            assert st["cosigning"] == "stopped"
            assert httpx.get(c.internal(n) + "/readyz").status_code == 503
            assert list((c.folder / "data" / n / "evidence").glob("equivocation-*.json"))
    finally:
        c.stop_all()
