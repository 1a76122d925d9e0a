"""Security suite against a real three-node cluster (issue 11). Budget: ≤ 2 minutes.

One cluster, started with small public limits so that 413 and 429 are cheap to provoke:

* the consortium boundary at the peer transport (a certificate from outside cannot vote or
  inject a frame; nothing it sends moves the term or the chain);
* refused submissions: each bad envelope gets a 4xx ``{"error", "detail"}``, nothing is stored
  (the head does not move) and ``courtledger_submissions_refused`` counts it by reason;
* replays through the leader and through a follower answer 200 ``duplicate`` with the original's
  location, and the entry is stored once;
* the public listener: internal routes 404, answers only carry allow-listed fields, 429 past
  the rate, 413 past the upload limit, 4xx for a bad hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from consensus import tls
from consensus.framing import encode_frame
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical
from ledger.entries import make_payload, sign_entry
from node.demo import Cluster
from node.init import init_consortium
from tests.e2e.test_cluster import doc_env, event_env, key, start_cluster, token

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

#: Small public limits (per node, from the environment) so the limits are cheap to reach.
LIMITS = {
    "COURTLEDGER_PUBLIC__MAX_UPLOAD_BYTES": "4096",
    "COURTLEDGER_PUBLIC__RATE_PER_SECOND": "5",
    "COURTLEDGER_PUBLIC__RATE_BURST": "60",
    "COURTLEDGER_INTERNAL__MAX_BODY_BYTES": "200000",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = start_cluster(tmp_path_factory.mktemp("security") / "c", env=LIMITS)
    yield c
    c.stop_all()


def _head(c: Cluster, n: str) -> dict[str, Any]:
    return httpx.get(c.internal(n) + "/v1/head", timeout=5).json()  # type: ignore[no-any-return]


def refused_counts(c: Cluster, n: str) -> dict[str, float]:
    """``courtledger_submissions_refused_total{reason=…}`` of one node."""
    text = httpx.get(c.internal(n) + "/metrics", timeout=5).text
    out: dict[str, float] = {}
    for m in re.finditer(r'^courtledger_submissions_refused_total\{reason="([^"]+)"\} (\S+)$',
                         text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def same_blocks(c: Cluster, timeout: float = 60) -> None:
    """Wait until every node has applied the same head block (cosigned sizes may differ: a
    restarted node completes its quorums later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            heads = {(h["height"], h["block"]) for h in (_head(c, n) for n in c.ids)}
        except httpx.HTTPError:
            heads = set()
        if len(heads) == 1:
            return
        assert time.monotonic() < deadline, f"heads differ: {heads}"
        time.sleep(0.3)


def post_json(c: Cluster, n: str, envs: list[dict[str, Any]], wait: str = "commit",
              ) -> httpx.Response:
    return httpx.post(c.internal(n) + "/v1/entries", params={"wait": wait},
                      json={"entries": [envelope_to_json(e) for e in envs]}, timeout=30)


# --------------------------------------------------------------------------- the boundary


def test_certificate_from_outside_cannot_connect_vote_or_inject(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    leader = c.leader()
    assert leader is not None
    before = c.status(leader)
    assert before is not None
    # An outsider: a second consortium's node certificate, with a member's name.
    init_consortium(tmp_path / "other", 3, base_port=45000)
    okeys = tmp_path / "other" / "keys"
    follower = next(n for n in c.ids if n != leader)
    ctx = tls.client_context(str(okeys / f"{follower}.tls.crt"), str(okeys / f"{follower}.tls.key"),
                             [(c.folder / "keys" / f"{leader}.tls.crt").read_bytes()])
    vote = {"type": "vote", "frm": follower, "to": leader, "term": before["term"] + 7,
            "index": 10**6, "log_term": before["term"] + 7}
    frames = [encode_frame({"k": "raft", "m": vote}),
              encode_frame({"k": "app", "ch": "cosign", "d": b"\x80"}),
              encode_frame({"k": "app", "ch": "fwd", "d": b"\x80"})]
    port = c.configs[leader].listen.raft.port
    handshakes = 0
    for frame in frames:
        try:
            with socket.create_connection(("127.0.0.1", port), 5) as raw, \
                    ctx.wrap_socket(raw) as s:
                handshakes += 1
                s.sendall(frame)
                s.settimeout(3)
                assert s.recv(1) == b""  # closed without an answer
        except (ssl.SSLError, OSError):
            pass
        # And plain TCP without any certificate.
        with socket.create_connection(("127.0.0.1", port), 5) as raw:
            raw.sendall(frame)
            raw.settimeout(3)
            try:
                assert raw.recv(1) == b""
            except OSError:
                pass
    time.sleep(1.0)
    after = c.status(leader)
    assert after is not None
    assert after["term"] == before["term"] and after["leader"] == leader, (before, after)
    assert after["applied_height"] == before["applied_height"]
    # The cluster still works for members.
    r = post_json(c, leader, [doc_env(c, b"after the outsider")])
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- submissions


def _bad_envelopes(c: Cluster) -> dict[str, tuple[Any, str]]:
    """name → (request body as (content, content-type), expected reason)."""
    chain = c.genesis.chain_id
    now = int(time.time() * 1000)
    clerk = key(c, "ji01-clerk1")
    case = "（2025）吉01执77号"
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(b"refused").digest(), "size": 7, "media_type": "text/plain"}

    def js(env: dict[str, Any]) -> tuple[bytes, str]:
        import json
        return json.dumps({"entries": [envelope_to_json(env)]}).encode(), "application/json"

    good = sign_entry(clerk, chain, make_payload("document", "吉01", clerk.public_key(), body,
                                                 now, case=case))
    forged = dict(good, sig=bytes(64))
    other_chain = sign_entry(clerk, hashlib.sha256(b"another chain").digest(), good["payload"])
    stranger = Ed25519Signer.generate()
    outsider = sign_entry(stranger, chain, make_payload("document", "吉01", stranger.public_key(),
                                                        body, now, case=case))
    officer_body = {"type": "HANDLER_ASSIGNED", "occurred_at": now,
                    "actor": {"officer_id": "ji01-officer1", "role": "officer"},
                    "fields": {"handler": "ji01-officer1", "team": "执行一庭"}}
    no_role = sign_entry(clerk, chain, make_payload("event", "吉01", clerk.public_key(),
                                                    officer_body, now, case=case))
    other_court_case = "（2025）吉执77号"
    other_court = sign_entry(clerk, chain, make_payload(
        "document", "吉", clerk.public_key(), dict(body, doc_no=other_court_case + "之一"), now,
        case=other_court_case))
    # Non-canonical msgpack: a map with keys out of canonical order, and a non-minimal int.
    good_bytes = canonical(good)
    import msgpack
    unsorted = msgpack.packb({"sig": good["sig"], "payload": good["payload"]}, use_bin_type=True)
    non_minimal = good_bytes.replace(b"\xa1v\x01", b"\xa1v\xcc\x01", 1)
    assert non_minimal != good_bytes
    return {
        "forged signature": (js(forged), ""),
        "another chain's signature": (js(other_chain), ""),
        "key outside the consortium": (js(outsider), ""),
        "signer without the role": (js(no_role), ""),
        "another court": (js(other_court), ""),
        "non-canonical map order": ((unsorted, "application/msgpack"), "non_canonical"),
        "non-minimal integer": ((non_minimal, "application/msgpack"), "non_canonical"),
        "trailing bytes": ((good_bytes + b"\x00", "application/msgpack"), "non_canonical"),
        "oversize body": ((b"\x91" + b"\x00" * 300_000, "application/msgpack"), "too_large"),
        "not JSON": ((b"{\"entries\": [", "application/json"), ""),
        "wrong content type": ((good_bytes, "text/plain"), ""),
    }


def test_bad_submissions_are_refused_with_4xx_nothing_stored_and_counted(
    cluster: Cluster,
) -> None:
    c = cluster
    same_blocks(c)
    leader = c.leader()
    follower = next(n for n in c.ids if n != leader)
    head_before = _head(c, leader)
    for target in (leader, follower):
        counts_before = refused_counts(c, target)
        cases = _bad_envelopes(c)
        for name, ((content, ctype), reason) in cases.items():
            r = httpx.post(c.internal(target) + "/v1/entries", params={"wait": "commit"},
                           content=content, headers={"content-type": ctype}, timeout=30)
            assert 400 <= r.status_code < 500, (target, name, r.status_code, r.text)
            err = r.json()
            assert set(err) == {"error", "detail"} and err["detail"], (name, err)
            if reason:
                assert err["error"] == reason, (name, err)
        counts = refused_counts(c, target)
        total = sum(counts.values()) - sum(counts_before.values())
        assert total == len(cases), (target, counts_before, counts)
        # By reason (the error code): five refused by validity, five undecodable, one too big.
        assert {k: v - counts_before.get(k, 0) for k, v in counts.items()} == {
            "invalid": 5, "non_canonical": 5, "too_large": 1}, (counts_before, counts)
    time.sleep(0.5)
    for n in c.ids:
        assert _head(c, n)["height"] == head_before["height"], "a refusal changed the chain"


def test_replays_through_leader_and_follower_are_duplicates_stored_once(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader()
    assert leader is not None
    follower = next(n for n in c.ids if n != leader)
    env = event_env(c, case="（2025）吉01执78号")
    first = post_json(c, follower, [env], wait="receipt")
    assert first.status_code == 200, first.text
    (orig,) = first.json()["entries"]
    assert orig["status"] == "committed"
    for n in (leader, follower, leader):
        r = post_json(c, n, [env])
        assert r.status_code == 200, r.text
        (e,) = r.json()["entries"]
        assert e["status"] == "duplicate", e
        assert (e["entry_id"], e["height"], e["leaf_index"]) == (
            orig["entry_id"], orig["height"], orig["leaf_index"])
        assert e.get("receipt"), "a cosigned duplicate carries the original's receipt"
    # Stored once: the block at that height holds the entry exactly once, and nothing after
    # it holds it again.
    same_blocks(c)
    h = _head(c, leader)
    auth = token(c)
    hits = 0
    for height in range(orig["height"], h["height"] + 1):
        b = httpx.get(c.internal(leader) + f"/v1/blocks/{height}", headers=auth, timeout=10).json()
        hits += sum(1 for x in b["entries"] if x["sig"] == envelope_to_json(env)["sig"])
    assert hits == 1


def test_replay_during_a_leader_change_is_stored_once(cluster: Cluster) -> None:
    import signal as sig

    c = cluster
    leader = c.leader()
    assert leader is not None
    follower = next(n for n in c.ids if n != leader)
    env = doc_env(c, b"replayed across a leader change", case="（2025）吉01执79号")
    r = post_json(c, follower, [env])
    assert r.status_code == 200, r.text
    (orig,) = r.json()["entries"]
    c.stop(leader, sig.SIGKILL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = post_json(c, follower, [env])
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no answer after the leader change"
            time.sleep(0.3)
        (e,) = r.json()["entries"]
        assert e["status"] == "duplicate" and e["height"] == orig["height"], e
    finally:
        c.start(leader)
        c.wait_ready([leader], timeout=120)
    same_blocks(c, timeout=60)
    r = httpx.get(c.internal(leader) + "/v1/entries/" + orig["entry_id"], headers=token(c),
                  timeout=10)
    assert r.status_code == 200 and r.json()["height"] == orig["height"]


# --------------------------------------------------------------------------- public listener

#: Every field the public listener may show, per kind of answer (DESIGN §5).
VERIFY_FIELDS = {"anchored", "sha256", "as_of", "matches"}
AS_OF_FIELDS = {"tree_size", "time"}
MATCH_FIELDS = {"entry_id", "kind", "court", "doc_type", "anchored_at", "height", "receipt_url"}
ERROR_FIELDS = {"error", "detail"}

INTERNAL_ROUTES = [
    ("GET", "/v1/cluster"), ("GET", "/v1/head"), ("GET", "/v1/blocks/1"), ("GET", "/metrics"),
    ("GET", "/readyz"), ("GET", "/v1/receipts/" + "00" * 32), ("GET", "/v1/checkpoints/latest"),
    ("GET", "/v1/consistency?first=1&second=2"), ("GET", "/v1/entries/" + "00" * 32),
    ("GET", "/v1/cases/x"), ("POST", "/v1/entries"), ("GET", "/docs"), ("GET", "/openapi.json"),
    ("GET", "/v1/checkpoints/1"), ("DELETE", "/v1/verify/" + "00" * 32),
]


def test_public_listener_internal_routes_404_and_allowed_fields_only(cluster: Cluster) -> None:
    c = cluster
    content = b"public allow-list document"
    env = doc_env(c, content, case="（2025）吉01执80号")
    r = post_json(c, c.ids[0], [env], wait="receipt")
    assert r.status_code == 200, r.text
    same_blocks(c)
    base = c.public(c.ids[1])
    with httpx.Client(timeout=10) as http:
        for method, path in INTERNAL_ROUTES:
            resp = http.request(method, base + path)
            if path in ("/docs", "/openapi.json") and resp.status_code == 200:
                # The public app may document itself; its schema must not name internal routes.
                assert "/v1/entries" not in resp.text and "/v1/cluster" not in resp.text
                continue
            assert resp.status_code in (404, 405), (method, path, resp.status_code)
            assert set(resp.json()) <= ERROR_FIELDS
        ans = http.get(base + "/v1/verify/" + hashlib.sha256(content).hexdigest()).json()
        assert ans["anchored"] is True
        assert set(ans) <= VERIFY_FIELDS and set(ans["as_of"]) <= AS_OF_FIELDS
        for m in ans["matches"]:
            assert set(m) <= MATCH_FIELDS, m
        # No identity, signer key, body or party data leaks into a public answer.
        text = http.get(base + "/v1/verify/" + hashlib.sha256(content).hexdigest()).text
        assert env["payload"]["signer"].hex() not in text
        assert "吉01执80号" not in text  # the 案号 is not shown by the hash lookup


def test_public_limits_413_bad_hash_4xx_and_rate_429(cluster: Cluster) -> None:
    c = cluster
    base = c.public(c.ids[2])
    with httpx.Client(timeout=10) as http:
        r = http.post(base + "/v1/verify", content=os.urandom(5000),
                      headers={"content-type": "application/octet-stream"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        for bad in ("zz" * 32, "ab" * 31, "AB" * 32 + "00", "0" * 63):
            r = http.get(base + "/v1/verify/" + bad)
            assert r.status_code == 422 and r.json()["error"] == "bad_hash", (bad, r.text)
            assert set(r.json()) <= ERROR_FIELDS

    async def spray() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as http:
            rs = await asyncio.gather(*(http.get(base + "/v1/verify/" + "11" * 32)
                                        for _ in range(150)))
        return [x.status_code for x in rs]

    codes = asyncio.run(spray())
    assert 429 in codes and set(codes) <= {200, 429}, sorted(set(codes))


# --------------------------------------------------------------------------- keys on chain


def _identity_cli(c: Cluster, action: str, ident: str, *extra: str) -> None:
    import subprocess
    import sys

    pk = key(c, ident).public_key().hex()
    out = subprocess.run(
        [sys.executable, "-m", "node.cli", "identity", action, "--node", c.internal(c.ids[0]),
         "--key", str(c.folder / "keys" / "ji01-admin.key"),
         "--genesis", str(c.folder / "genesis.toml"), "--id", ident, "--court", "吉01",
         "--public-key", pk, "--wait", *extra],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, (out.stdout, out.stderr)


def _clerk_doc(c: Cluster, ident: str, content: bytes, signer: Ed25519Signer | None = None,
               ) -> dict[str, Any]:
    s = signer or key(c, ident)
    case = "（2025）吉01执81号"
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(content).digest(), "size": len(content),
            "media_type": "text/plain"}
    return sign_entry(s, c.genesis.chain_id, make_payload(
        "document", "吉01", s.public_key(), body, int(time.time() * 1000), case=case))


def test_revoked_and_rotated_keys_are_refused_and_old_receipts_still_verify(
    cluster: Cluster, tmp_path: Path
) -> None:
    from ledger.receipts import verify_receipt

    c = cluster
    before = []
    for content in (b"clerk2 before", b"officer2 before"):
        ident = "ji01-clerk2" if content.startswith(b"clerk2") else "ji01-officer2"
        r = post_json(c, c.ids[1], [_clerk_doc(c, ident, content)], wait="receipt")
        assert r.status_code == 200, r.text
        before.append(r.json()["entries"][0]["receipt"])
    # Revoke clerk2; rotate officer2 to a new key.
    _identity_cli(c, "revoke", "ji01-clerk2")
    new = Ed25519Signer.generate()
    new.save(tmp_path / "new.key")
    _identity_cli(c, "rotate", "ji01-officer2", "--new-key", str(tmp_path / "new.key"))
    counts = refused_counts(c, c.ids[2])
    r = post_json(c, c.ids[2], [_clerk_doc(c, "ji01-clerk2", b"after revocation")])
    assert r.status_code in (400, 403, 422), r.text
    old = key(c, "ji01-officer2")
    r = post_json(c, c.ids[2], [_clerk_doc(c, "ji01-officer2", b"old key", signer=old)])
    assert r.status_code in (400, 403, 422), r.text
    after = refused_counts(c, c.ids[2])
    assert sum(after.values()) - sum(counts.values()) == 2
    # The new key works; receipts made before the changes still verify offline.
    r = post_json(c, c.ids[2], [_clerk_doc(c, "ji01-officer2", b"new key", signer=new)])
    assert r.status_code == 200, r.text
    for rec in before:
        verify_receipt(rec, c.genesis)
