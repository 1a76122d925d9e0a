"""Running it for years, with real node processes (issue 7). Budget: about 1.5 minutes.

One consortium of three courts serves, in file order: a node's TLS certificate and key replaced
by ``update-keys`` (the old certificate refused afterwards); a rotated identity (old key
refused, earlier entries still valid); a block follower that stays in step and detects a
tampered block from its source; a node restored from a backup (blocks and checkpoints, never
Raft state) that rejoins; case reads refused without a token and logged with the identity.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from consensus.framing import encode_frame
from ledger.bundle import BundleWriter, read_bundle
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical, decode
from ledger.receipts import verify_receipt
from node.demo import Cluster
from tests.ops.opshelp import (
    CASE,
    ROOT,
    cli,
    cluster_status,
    doc_env,
    head,
    key,
    post,
    start_cluster,
    tls_link_answers,
    token_header,
    wait_heads,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c, _ = start_cluster(tmp_path_factory.mktemp("ops") / "c", courts=3, spare=0)
    yield c
    c.stop_all()


def _leader(c: Cluster) -> str:
    deadline = time.monotonic() + 30
    while True:
        leader = c.leader()
        if leader is not None:
            return leader
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.3)


def _receipt(c: Cluster, n: str, content: bytes,
             signer: Ed25519Signer | None = None) -> dict[str, Any]:
    r = post(c.internal(n), [doc_env(c, content, signer)])
    assert r.status_code == 200, r.text
    item = r.json()["entries"][0]
    deadline = time.monotonic() + 20
    while item.get("receipt") is None:
        # Committed, checkpoint not yet complete on this node: fetch the receipt later.
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)
        got = httpx.get(c.internal(n) + "/v1/receipts/" + item["entry_id"],
                        headers=token_header(c), timeout=5)
        if got.status_code == 200:
            item["receipt"] = got.json()
    return item["receipt"]  # type: ignore[no-any-return]


def _approved(c: Cluster, tmp: Path, name: str, build: list[str]) -> Path:
    path = tmp / f"{name}.json"
    g = str(c.folder / "genesis.toml")
    out = cli("member", *build, "--genesis", g, "--out", str(path))
    assert out.returncode == 0, out.stderr
    for a in ("spc-admin", "ji-admin"):
        out = cli("member", "approve", str(path), "--genesis", g, "--key",
                  str(c.folder / "keys" / f"{a}.key"), "--identity", a)
        assert out.returncode == 0, out.stderr
    return path


# --------------------------------------------------------------------------- update-keys


def test_update_keys_replaces_a_nodes_certificate_and_the_old_one_is_refused(
        cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    leader = _leader(c)
    node = next(n for n in c.ids if n != leader)
    keys = c.folder / "keys"
    before = _receipt(c, leader, b"before update-keys")
    new = tmp_path / "newkeys"
    court = c.genesis.consortium["nodes"][c.ids.index(node)]["court"]
    out = cli("keygen", "--node", "--id", node, "--court", court, "--raft-addr",
              str(c.configs[node].listen.raft), "--out", str(new))
    assert out.returncode == 0, out.stderr
    change = _approved(c, tmp_path, "keys", ["update-keys", "--node-part",
                                             str(new / f"{node}.node.toml")])
    out = cli("member", "submit", str(change), "--genesis", str(c.folder / "genesis.toml"),
              "--key", str(keys / "spc-admin.key"), "--node", c.internal(leader), "--wait")
    assert out.returncode == 0, out.stderr
    # The operator installs the new files where the config points, and restarts the node.
    old = tmp_path / "old"
    old.mkdir()
    c.stop(node)
    for suffix in ("node.key", "tls.key", "tls.crt"):
        shutil.move(str(keys / f"{node}.{suffix}"), old / f"{node}.{suffix}")
        shutil.copy(new / f"{node}.{suffix}", keys / f"{node}.{suffix}")
    c.start(node)
    c.wait_ready([node], timeout=60)
    after = _receipt(c, node, b"after update-keys, through the renewed node")
    wait_heads([c.internal(n) for n in c.ids])
    for rec in (before, after):
        verify_receipt(rec, c.genesis)
    # The renewed node cosigns with its new key: its signature is in a later checkpoint.
    deadline = time.monotonic() + 20
    while node not in {s["node"] for s in httpx.get(
            c.internal(leader) + "/v1/checkpoints/latest", timeout=5).json()["signatures"]}:
        assert time.monotonic() < deadline, "the renewed node's signature never counted"
        _receipt(c, leader, b"one more block %f" % time.time())
    # The old certificate is refused by every peer; the new one is a member's.
    term = cluster_status(c.internal(leader))["term"]
    vote = encode_frame({"k": "raft", "m": {
        "type": "vote", "frm": node, "to": leader, "term": term + 9, "index": 10**6,
        "log_term": term + 9}})
    for peer in (n for n in c.ids if n != node):
        port = c.configs[peer].listen.raft.port
        assert not tls_link_answers(old / f"{node}.tls.crt", old / f"{node}.tls.key",
                                 keys / f"{peer}.tls.crt", port, vote)
    assert cluster_status(c.internal(leader))["term"] == term  # the old key moved nothing


# --------------------------------------------------------------------------- identities


def test_rotated_identity_old_key_refused_and_earlier_entries_valid(
        cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    leader = _leader(c)
    keys = c.folder / "keys"
    old = key(c, "ji01-clerk2")
    earlier = _receipt(c, leader, b"signed by clerk2's first key", old)
    new_key = tmp_path / "ji01-clerk2.new.key"
    Ed25519Signer.generate().save(new_key)
    out = cli("identity", "rotate", "--genesis", str(c.folder / "genesis.toml"),
              "--key", str(keys / "ji01-admin.key"), "--node", c.internal(leader),
              "--id", "ji01-clerk2", "--court", "吉01", "--public-key", old.public_key().hex(),
              "--new-key", str(new_key), "--wait")
    assert out.returncode == 0, out.stderr
    r = post(c.internal(leader), [doc_env(c, b"the old key after rotation", old)])
    assert r.status_code in (400, 403, 422), r.text
    assert "rotated" in r.text
    later = _receipt(c, leader, b"signed by clerk2's new key",
                     Ed25519Signer.from_file(new_key))
    for rec in (earlier, later):
        verify_receipt(rec, c.genesis)  # what the old key signed before stays valid
    # A new clerk made their own key; the court's admin adds them; they sign from then on.
    out = cli("keygen", "--identity", "--id", "ji01-clerk9", "--court", "吉01", "--roles",
              "clerk", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    out = cli("identity", "add", "--genesis", str(c.folder / "genesis.toml"),
              "--key", str(keys / "ji01-admin.key"), "--node", c.internal(leader),
              "--id", "ji01-clerk9", "--court", "吉01",
              "--public-part", str(tmp_path / "ji01-clerk9.identity.toml"), "--wait")
    assert out.returncode == 0, out.stderr
    verify_receipt(_receipt(c, leader, b"by the new clerk",
                            Ed25519Signer.from_file(tmp_path / "ji01-clerk9.key")), c.genesis)
    # Another court's admin cannot add identities to 吉01.
    out = cli("identity", "add", "--genesis", str(c.folder / "genesis.toml"),
              "--key", str(keys / "ji-admin.key"), "--node", c.internal(leader),
              "--id", "ji01-clerk10", "--court", "吉01", "--roles", "clerk",
              "--public-key", Ed25519Signer.generate().public_key().hex(), "--wait")
    assert out.returncode == 2 and "signed by ji-admin" in out.stderr, out.stderr
    # Revocation with --compromised-since: from the next block the key signs nothing.
    gone = key(c, "ji01-officer2")
    out = cli("identity", "revoke", "--genesis", str(c.folder / "genesis.toml"),
              "--key", str(keys / "ji01-admin.key"), "--node", c.internal(leader),
              "--id", "ji01-officer2", "--court", "吉01", "--public-key",
              gone.public_key().hex(), "--compromised-since", "2025-01-01T00:00:00+08:00",
              "--wait")
    assert out.returncode == 0, out.stderr
    r = post(c.internal(leader), [doc_env(c, b"signed by a revoked key", gone)])
    assert r.status_code in (400, 403, 422) and "revoked" in r.text, r.text
    # The auditor flags what the key signed since it was compromised as a warning to review;
    # the chain still holds, so the exit code is unchanged (issue 7).
    out = cli("audit", "chain", "--node", c.internal(leader),
              "--token", str(keys / "ji01-inspector.token"),
              "--consortium", str(c.folder / "genesis.toml"), "--json")
    assert out.returncode == 0, out.stderr
    warnings = json.loads(out.stdout)["warnings"]
    assert any("ji01-officer2" in w["what"] and "compromised" in w["what"]
               for w in warnings), warnings


# --------------------------------------------------------------------------- follower


class _Source:
    """A source node seen through a proxy that can start serving tampered blocks."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tamper_from: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "accept")}
                r = httpx.get(outer.upstream + self.path, headers=headers, timeout=10)
                body = r.content
                if (outer.tamper_from is not None and self.path.startswith("/v1/blocks/")
                        and r.status_code == 200
                        and int(self.path.rsplit("/", 1)[1]) >= outer.tamper_from):
                    block = decode(body)
                    block["entries"][0]["payload"]["body"]["doc_type"] = "伪造的文书"
                    body = canonical(block)
                self.send_response(r.status_code)
                self.send_header("content-type", r.headers.get("content-type", "text/plain"))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_block_follower_stays_in_step_and_detects_a_tampered_block(
        cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    node = c.ids[0]
    src = _Source(c.internal(node))
    port = _free_port()
    listen = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "follow.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "follow", "--from", src.url, "--token",
         str(c.folder / "keys" / "ji01-inspector.token"), "--data", str(tmp_path / "f"),
         "--genesis", str(c.folder / "genesis.toml"), "--listen", f"127.0.0.1:{port}",
         "--interval", "0.2"], stdout=log, stderr=log, cwd=ROOT)
    try:
        contents = [b"followed document %d" % i for i in range(3)]
        for content in contents:
            _receipt(c, node, content)
        target = head(c.internal(node))
        deadline = time.monotonic() + 30
        while True:
            try:
                mine = httpx.get(listen + "/v1/head", timeout=2).json()
                if mine["height"] >= target["height"]:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "the follower did not keep in step"
            time.sleep(0.2)
        assert mine["block"] == target["block"].hex() if isinstance(target["block"], bytes) \
            else mine["block"] == target["block"]
        assert httpx.get(listen + "/readyz").status_code == 200
        for content in contents:
            v = httpx.get(listen + "/v1/verify/" + hashlib.sha256(content).hexdigest()).json()
            assert v["anchored"] is True, v
        assert httpx.get(listen + "/v1/verify/" + hashlib.sha256(b"never").hexdigest()
                         ).json()["anchored"] is False
        # The source starts lying: the next block it serves has an altered document.
        good = mine["height"]
        src.tamper_from = good + 1
        _receipt(c, node, b"the block the source will alter")
        deadline = time.monotonic() + 30
        while httpx.get(listen + "/readyz").status_code != 503:
            assert time.monotonic() < deadline, "the tampered block went unnoticed"
            time.sleep(0.2)
        why = httpx.get(listen + "/readyz").json()["reason"]
        assert f"block {good + 1}" in why and "fails verification" in why, why
        assert httpx.get(listen + "/v1/head").json()["height"] == good  # nothing stored
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
        src.server.shutdown()


# --------------------------------------------------------------------------- backup / restore


def test_node_restored_from_backup_rejoins_with_empty_raft_state(
        cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    leader = _leader(c)
    node = next(n for n in c.ids if n != leader)
    cfg = c.folder / f"{node}.toml"
    _receipt(c, leader, b"before the backup")
    # A running node's ledger is locked: backup needs it stopped (DESIGN §4).
    busy = cli("node", "backup", "--config", str(cfg), "--out", str(tmp_path / "busy.bundle"))
    assert busy.returncode != 0 and "stopped" in busy.stderr
    c.stop(node)
    backup = tmp_path / "node.bundle"
    out = cli("node", "backup", "--config", str(cfg), "--out", str(backup))
    assert out.returncode == 0, out.stderr
    c.start(node)
    c.wait_ready([node], timeout=60)
    for i in range(3):
        _receipt(c, leader, b"after the backup %d" % i)
    # The disk dies: the whole data dir is lost.
    c.stop(node, signal.SIGKILL)
    data = c.configs[node].data_dir
    shutil.rmtree(data)
    # A damaged backup is refused and writes nothing.
    bad = tmp_path / "bad.bundle"
    with backup.open("rb") as src, bad.open("wb") as dst:
        w = BundleWriter(dst)
        for frame in read_bundle(src):
            v = frame.value
            if frame.kind == "genesis":
                w.genesis(v["block"], v["consortium"])
            elif frame.kind == "block":
                if v["block"]["header"]["height"] == 1:
                    v["block"]["entries"][0]["payload"]["body"]["doc_type"] = "伪造"
                w.block(v["block"])
            else:
                w.checkpoint(v["checkpoint"], v["signatures"])
    out = cli("node", "restore", "--config", str(cfg), "--from", str(bad))
    assert out.returncode != 0
    assert not (data / "ledger").exists()
    out = cli("node", "restore", "--config", str(cfg), "--from", str(backup))
    assert out.returncode == 0, out.stderr
    assert not (data / "raft").exists()  # Raft state is never restored
    marker = json.loads((data / "RESTORED").read_text())
    assert marker["term_floor"] >= 1
    # Restoring over a ledger is refused.
    again = cli("node", "restore", "--config", str(cfg), "--from", str(backup))
    assert again.returncode != 0 and "not empty" in again.stderr
    c.start(node)
    c.wait_ready([node], timeout=60)
    # It catches up with empty Raft state (it asks the leader to resend from index 1).
    _receipt(c, node, b"after the restore, through the restored node")
    wait_heads([c.internal(n) for n in c.ids], timeout=60)
    assert cluster_status(c.internal(node))["raft"]["last_index"] > 0
    # With the leader gone the two others need each other's vote: the restored node votes,
    # but only in a term after every term it saw before hearing a leader (Raft §5.2).
    c.stop(leader)
    rest = [n for n in c.ids if n != leader]
    c.wait_ready(rest, timeout=60)
    _receipt(c, node, b"under the next leader")
    c.start(leader)
    c.wait_ready([leader], timeout=60)
    wait_heads([c.internal(n) for n in c.ids], timeout=60)
    st = cluster_status(c.internal(node))
    assert st["term"] > marker["term_floor"]


# --------------------------------------------------------------------------- reads


def test_case_reads_refused_without_a_token_and_logged_with_the_identity(
        cluster: Cluster) -> None:
    c = cluster
    leader = _leader(c)
    rec = _receipt(c, leader, b"a case document to read")
    base = c.internal(leader)
    url = base + "/v1/cases/" + CASE
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer " + "0" * 64}).status_code == 401
    assert httpx.get(base + "/v1/entries/" + rec["entry_id"]).status_code == 401
    assert httpx.get(base + "/v1/blocks/1").status_code == 401
    r = httpx.get(url, headers=token_header(c))
    assert r.status_code == 200
    assert rec["entry_id"] in {e["entry_id"] for e in r.json()["entries"]}
    logged = [json.loads(line) for line in
              (c.folder / "logs" / f"{leader}.log").read_text().splitlines()
              if line.startswith("{") and "case read" in line]
    assert any(e.get("identity") == "ji01-inspector" for e in logged), logged[-3:]
