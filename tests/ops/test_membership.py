"""A court joins, is promoted, and a voter leaves, with real node processes (issue 7).

One consortium of three courts. The new court 吉0102 makes its own keys (``keygen``); its
admission is a ``membership`` entry with approvals by admins of a majority of the voting
courts, collected with ``member approve``: one approval is refused, two are committed and become
Raft's learner change. The new node seeds its ledger as a block follower, starts with empty
Raft state, catches up, is promoted; then a voter is removed. Receipts issued before and after
each change verify offline against the genesis file alone (consortium proofs, DESIGN §2).
Budget: about a minute.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.genesis import load_genesis
from ledger.receipts import verify_receipt
from tests.ops.opshelp import (
    cli,
    cluster_status,
    doc_env,
    post,
    start_cluster,
    start_process,
    wait_heads,
    write_node_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


def _receipt(c: Any, base: str, content: bytes) -> dict[str, Any]:
    r = post(base, [doc_env(c, content)])
    assert r.status_code == 200, r.text
    item = r.json()["entries"][0]
    if item.get("receipt") is None:
        states = {}
        for n in c.procs:
            try:
                states[n] = {k: v for k, v in cluster_status(
                    c.internal(n) if n in c.configs else base).items()
                    if k in ("applied_height", "cosigned_height", "members", "alarms",
                             "cosigning", "leader")}
            except (httpx.HTTPError, ValueError):
                states[n] = None
        raise AssertionError(f"no receipt for {item} from {base}: {states}")
    return item["receipt"]  # type: ignore[no-any-return]


def _change(c: Any, tmp: Path, name: str, build: list[str], approvers: list[str]) -> Path:
    path = tmp / f"{name}.json"
    g = str(c.folder / "genesis.toml")
    out = cli("member", *build, "--genesis", g, "--out", str(path))
    assert out.returncode == 0, out.stderr
    for a in approvers:
        keyfile = c.folder / "keys" / f"{a}.key"
        out = cli("member", "approve", str(path), "--genesis", g, "--key", str(keyfile),
                  "--identity", a)
        assert out.returncode == 0, out.stderr
    return path


def _submit(c: Any, base: str, path: Path, admin: str = "ji01-admin") -> Any:
    return cli("member", "submit", str(path), "--genesis", str(c.folder / "genesis.toml"),
               "--key", str(c.folder / "keys" / f"{admin}.key"), "--node", base, "--wait")


def _wait_role(base: str, node: str, role: str | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            members = {m["id"]: m["role"] for m in cluster_status(base)["members"]}
        except (httpx.HTTPError, ValueError, KeyError):
            members = {}
        if members.get(node) == role:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} is {members.get(node)} at {base}, not {role}")
        time.sleep(0.3)


def test_learner_added_by_approvals_caught_up_promoted_then_a_voter_removed(
        tmp_path: Path) -> None:
    c, base = start_cluster(tmp_path / "c", courts=3, spare=1)
    try:
        genesis = load_genesis(c.folder / "genesis.toml")
        a, b, d = c.ids  # spc, ji, ji01
        receipts = [_receipt(c, c.internal(a), b"before any change")]
        # 1. The new court's own keys, then the change and its approvals.
        keys = c.folder / "keys"
        out = cli("keygen", "--node", "--id", "ji0102", "--court", "吉0102", "--raft-addr",
                  f"127.0.0.1:{base + 3}", "--out", str(keys))
        assert out.returncode == 0, out.stderr
        out = cli("keygen", "--identity", "--id", "ji0102-admin", "--court", "吉0102",
                  "--roles", "admin", "--out", str(keys))
        assert out.returncode == 0, out.stderr
        build = ["add-learner", "--node-part", str(keys / "ji0102.node.toml"),
                 "--admin-part", str(keys / "ji0102-admin.identity.toml")]
        one = _change(c, tmp_path, "one", build, [f"{a}-admin"])
        # One court of three is no majority: refused, nothing stored.
        h0 = cluster_status(c.internal(a))["commit_index"]
        out = _submit(c, c.internal(b), one)
        assert out.returncode == 2, out.stderr
        assert "majority" in out.stderr
        two = _change(c, tmp_path, "two", build, [f"{a}-admin", f"{b}-admin"])
        out = _submit(c, c.internal(b), two)
        assert out.returncode == 0, out.stderr
        assert cluster_status(c.internal(a))["commit_index"] > h0
        _wait_role(c.internal(a), "ji0102", "learner")
        receipts.append(_receipt(c, c.internal(b), b"after add_learner"))

        # 2. The new node seeds its ledger as a block follower, then runs with empty Raft
        # state and catches up.
        cfg = write_node_config(c.folder, "ji0102", base, 3)
        out = cli("follow", "--from", c.internal(a), "--token", str(keys / "ji01-inspector.token"),
                  "--data", str(c.folder / "data" / "ji0102"), "--genesis",
                  str(c.folder / "genesis.toml"), "--once")
        assert out.returncode == 0, out.stderr
        start_process(c, "ji0102", cfg)
        new = f"http://127.0.0.1:{base + 103}"
        receipts.append(_receipt(c, c.internal(d), b"while the learner catches up"))
        wait_heads([c.internal(a), new], timeout=60,
                   at_least=receipts[-1]["checkpoint"]["height"])

        # 3. Promote it (the voting courts are still three: two approvals suffice).
        p = _change(c, tmp_path, "promote", ["promote", "--id", "ji0102", "--court", "吉0102"],
                    [f"{a}-admin", f"{d}-admin"])
        out = _submit(c, c.internal(a), p)
        assert out.returncode == 0, out.stderr
        _wait_role(c.internal(a), "ji0102", "voter")
        receipts.append(_receipt(c, new, b"after promote"))

        # 4. Remove a voter: now four voting courts, so three approvals.
        leader = c.leader()
        gone = next(n for n in (b, d) if n != leader)
        stay = [n for n in (a, b, d) if n != gone]
        r = _change(c, tmp_path, "remove",
                    ["remove", "--id", gone, "--court", genesis.consortium["nodes"][
                        c.ids.index(gone)]["court"]],
                    [f"{a}-admin", f"{b}-admin", "ji0102-admin"])
        out = _submit(c, c.internal(stay[0]), r)
        assert out.returncode == 0, out.stderr
        _wait_role(c.internal(stay[0]), gone, None)
        c.stop(gone)
        receipts.append(_receipt(c, c.internal(stay[0]), b"after remove"))
        wait_heads([c.internal(n) for n in stay] + [new], timeout=60)

        # Every receipt verifies offline against the genesis file alone; the later ones
        # carry the membership entries as consortium proofs.
        for rec in receipts:
            verify_receipt(rec, genesis)
        assert len(receipts[-1]["consortium"]) == 3
    finally:
        c.stop_all()
