"""The auditor over a real court node (``--node``): a single-node consortium made by
``courtledger init``, its real store, builder, apply and cosigning path, its internal API served
by uvicorn on loopback. The CLI runs in a worker thread while the node keeps serving.
Budget: ≤ 20 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from api.internal import create_internal_app
from ledger.crypto import Ed25519Signer
from ledger.entries import make_payload, sign_entry
from node.audit import audit_group, export_command
from node.config import load_config
from node.init import init_consortium
from node.process import Node

CASE = "（2025）最高法执监7号"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def document(s: Ed25519Signer, chain_id: bytes, content: bytes) -> dict[str, Any]:
    body = {"doc_type": "执行裁定书", "doc_no": CASE, "sha256": hashlib.sha256(content).digest(),
            "size": len(content), "media_type": "application/pdf"}
    payload = make_payload("document", "最高法", s.public_key(), body, int(time.time() * 1000),
                           case=CASE)
    return sign_entry(s, chain_id, payload)


def cli(cmd: Any, *args: str) -> Any:
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


def test_audit_over_a_real_node(tmp_path: Path) -> None:
    consortium = tmp_path / "c"
    init_consortium(consortium, 1, base_port=free_port() // 10 * 10 % 50000 + 10000)
    genesis_file = str(consortium / "genesis.toml")
    token = str(next((consortium / "keys").glob("*clerk*.token")))
    clerk = Ed25519Signer.from_file(next((consortium / "keys").glob("*clerk1.key")))
    results: dict[str, Any] = {}

    async def main() -> None:
        cfg = load_config(consortium / "spc.toml",
                          env={"COURTLEDGER_DATA_DIR": str(tmp_path / "data")})
        node = Node(cfg)
        await node.start()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_internal_app(node.service),
                                               host="127.0.0.1", port=port, log_level="error"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            for n in range(3):
                envs = [document(clerk, node.genesis.chain_id, f"ruling {n}.{i}".encode())
                        for i in range(2)]
                await node.service.submit(envs, "receipt")
            url = f"http://127.0.0.1:{port}"
            bundle = tmp_path / "exported.bundle"
            state = tmp_path / "audit.state"

            def audits() -> None:
                results["chain"] = cli(audit_group, "chain", "--node", url, "--token", token,
                                       "--consortium", genesis_file, "--json", "--save",
                                       str(state))
                results["no_token"] = cli(audit_group, "chain", "--node", url,
                                          "--consortium", genesis_file)
                # The chain id alone pins a node's chain: its genesis frame proves itself.
                results["by_id"] = cli(audit_group, "chain", "--node", url, "--token", token,
                                       "--chain-id", node.genesis.chain_id.hex(), "--json")
                results["wrong_id"] = cli(audit_group, "chain", "--node", url, "--token",
                                          token, "--chain-id", "ab" * 32, "--json")
                results["case"] = cli(audit_group, "case", CASE, "--node", url, "--token",
                                      token, "--consortium", genesis_file, "--json")
                results["export"] = cli(export_command, "--node", url, "--token", token,
                                        "--consortium", genesis_file, "--out", str(bundle))
                results["bundle"] = cli(audit_group, "chain", "--bundle", str(bundle),
                                        "--consortium", genesis_file, "--json")
                results["consistency"] = cli(audit_group, "consistency", "2", "6", "--node",
                                             url, "--token", token, "--consortium",
                                             genesis_file, "--json")

            await asyncio.to_thread(audits)
            # A month later: more entries; the next audit resumes from the saved state,
            # fetches only the new blocks and checks a consistency proof from the old head.
            await node.service.submit([document(clerk, node.genesis.chain_id, b"later")],
                                      "receipt")
            results["resume"] = await asyncio.to_thread(
                cli, audit_group, "chain", "--node", url, "--token", token, "--consortium",
                genesis_file, "--resume", str(state), "--json")
        finally:
            server.should_exit = True
            await serving
            await node.stop()

    asyncio.run(main())
    # The node stopped: its data_dir (ledger/ and raft/ inside) is audited directly.
    offline = cli(audit_group, "chain", "--data", str(tmp_path / "data"), "--consortium",
                  genesis_file, "--json")
    assert offline.exit_code == 0, (offline.stdout, offline.stderr)
    assert json.loads(offline.stdout)["entries"] == 7
    chain = results["chain"]
    assert chain.exit_code == 0, (chain.stdout, chain.stderr)
    out = json.loads(chain.stdout)
    assert out["ok"] and out["entries"] == 6 and out["checkpoints"] == out["height"] >= 1
    assert results["no_token"].exit_code == 2 and "token" in results["no_token"].stderr
    by_id = results["by_id"]
    assert by_id.exit_code == 0, (by_id.stdout, by_id.stderr)
    assert json.loads(by_id.stdout)["root"] == out["root"]
    assert results["wrong_id"].exit_code == 1, results["wrong_id"].stderr
    case = results["case"]
    assert case.exit_code == 0, case.stderr
    entries = json.loads(case.stdout)["entries"]
    assert len(entries) == 6 and {e["proof"] for e in entries} == {"verified"}
    assert results["export"].exit_code == 0, results["export"].stderr
    bundle = json.loads(results["bundle"].stdout)
    assert results["bundle"].exit_code == 0 and bundle["entries"] == 6
    assert bundle["root"] == out["root"]
    resumed = results["resume"]
    assert resumed.exit_code == 0, (resumed.stdout, resumed.stderr)
    again = json.loads(resumed.stdout)
    assert again["resumed_from"] == out["height"] and again["entries"] == 7
    assert any("consistency proof from tree size 6 to 7 verified" in n for n in again["notes"])
    cons = results["consistency"]
    assert cons.exit_code == 0, (cons.stdout, cons.stderr)
    assert json.loads(cons.stdout)["second"]["tree_size"] == 6


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
