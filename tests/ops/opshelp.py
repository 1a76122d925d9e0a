"""Helpers for the operations tests: a consortium on loopback, CLI calls, documents."""

from __future__ import annotations

import hashlib
import random
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from api.codec import envelope_to_json
from consensus import tls
from ledger.crypto import Ed25519Signer
from ledger.entries import make_payload, sign_entry
from node.demo import Cluster
from node.init import init_consortium

ROOT = Path(__file__).resolve().parents[2]
CASE = "（2025）吉01执7号"


def free_base(nodes: int) -> int:
    """A base port whose raft (+i), internal (+100+i) and public (+200+i) ports are free."""
    rng = random.Random()
    for _ in range(300):
        # Below Linux's ephemeral range (32768-60999 by default): a node that restarts must
        # bind its ports again, and an outgoing connection's local port must not take one
        # meanwhile (seen in a fault run: "address already in use" at every restart).
        base = rng.randrange(20000, 32500, 10)
        ok = True
        for i in range(nodes):
            for off in (0, 100, 200):
                with socket.socket() as s:
                    try:
                        s.bind(("127.0.0.1", base + off + i))
                    except OSError:
                        ok = False
        if ok:
            return base
    raise RuntimeError("no free ports")


def start_cluster(folder: Path, courts: int = 3, spare: int = 1,
                  env: dict[str, str] | None = None) -> tuple[Cluster, int]:
    """Init and start a consortium; the base port leaves ``spare`` node slots free."""
    base = free_base(courts + spare)
    init_consortium(folder, courts, base_port=base)
    c = Cluster(folder, extra_env=env)
    c.start_all()
    try:
        c.wait_ready(timeout=120)
    except BaseException:
        c.stop_all()
        raise
    return c, base


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``courtledger ARGS…`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def key(c: Cluster, ident: str) -> Ed25519Signer:
    return Ed25519Signer.from_file(c.folder / "keys" / f"{ident}.key")


def token_header(c: Cluster, ident: str = "ji01-inspector") -> dict[str, str]:
    t = (c.folder / "keys" / f"{ident}.token").read_text().strip()
    return {"Authorization": f"Bearer {t}"}


def doc_env(c: Cluster, content: bytes, signer: Ed25519Signer | None = None,
            case: str = CASE) -> dict[str, Any]:
    s = signer or key(c, "ji01-clerk1")
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(content).digest(), "size": len(content),
            "media_type": "text/plain"}
    p = make_payload("document", "吉01", s.public_key(), body, int(time.time() * 1000),
                     case=case)
    return sign_entry(s, c.genesis.chain_id, p)


def post(base: str, envs: list[dict[str, Any]], wait: str = "receipt",
         timeout: float = 60) -> httpx.Response:
    """POST entries as JSON, retrying while the cluster answers 503 (leader change)."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.post(base + "/v1/entries", params={"wait": wait},
                       json={"entries": [envelope_to_json(e) for e in envs]}, timeout=timeout)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def head(base: str) -> dict[str, Any]:
    return httpx.get(base + "/v1/head", timeout=5).json()  # type: ignore[no-any-return]


def wait_heads(bases: list[str], timeout: float = 60, at_least: int = 0) -> dict[str, Any]:
    """Wait until every node answers the same head (at height ≥ ``at_least``)."""
    deadline = time.monotonic() + timeout
    while True:
        heads: list[Any] = []
        for b in bases:
            try:
                heads.append(head(b))
            except (httpx.HTTPError, ValueError):
                heads.append({})
        if heads[0] and all(h == heads[0] for h in heads) and heads[0]["height"] >= at_least:
            return heads[0]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"heads differ: {heads}")
        time.sleep(0.3)


def write_node_config(folder: Path, node_id: str, base: int, index: int) -> Path:
    """A config for a node added later (keys under ``folder/keys``, as keygen wrote them)."""
    cfg = {
        "node_id": node_id, "genesis": "genesis.toml", "data_dir": f"data/{node_id}",
        "node_key": f"keys/{node_id}.node.key", "tls_key": f"keys/{node_id}.tls.key",
        "tls_cert": f"keys/{node_id}.tls.crt", "tokens": "tokens.toml",
        "listen": {"raft": f"127.0.0.1:{base + index}",
                   "internal": f"127.0.0.1:{base + 100 + index}",
                   "public": f"127.0.0.1:{base + 200 + index}"},
    }
    path = folder / f"{node_id}.toml"
    path.write_text(tomli_w.dumps(cfg), encoding="utf-8")
    return path


def start_process(c: Cluster, node_id: str, config: Path) -> subprocess.Popen[bytes]:
    """Start a node that is not in the genesis file (its log beside the others)."""
    import os

    log = open(c.folder / "logs" / f"{node_id}.log", "ab")  # noqa: SIM115
    p = subprocess.Popen([sys.executable, "-m", "node.cli", "node", "run", "--config",
                          str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         env={**os.environ, **c.extra_env}, start_new_session=True, cwd=ROOT)
    log.close()
    c.procs[node_id] = p
    return p


def cluster_status(base: str) -> dict[str, Any]:
    return httpx.get(base + "/v1/cluster", timeout=5).json()  # type: ignore[no-any-return]


def tls_link_answers(cert: Path, key: Path, trust: Path, port: int, frame: bytes) -> bool:
    """Whether a TLS client with ``cert`` gets an open link that answers ``frame`` (False:
    refused at the handshake or closed without an answer)."""
    ctx = tls.client_context(str(cert), str(key), [trust.read_bytes()])
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as raw, \
                ctx.wrap_socket(raw) as s:
            s.sendall(frame)
            s.settimeout(3)
            return s.recv(1) != b""
    except (ssl.SSLError, OSError):
        return False
