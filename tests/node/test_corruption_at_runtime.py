"""Damage found while a node runs (issue 11): a stored value that fails its hash check is never
served; the node answers 503 ``corruption``, raises the alarm and fails ``/readyz``.

The damage is written straight into the node's LevelDB through its own handle, as a flipped
sector would appear to the next read; the single-node harness is the API tests' real node.
"""

from __future__ import annotations

import struct
from pathlib import Path

from api.service import NotFound
from ledger.genesis import Genesis
from node.process import Node
from tests.api.test_api import Client, as_json, consortium, document, run, signer

__all__ = ["consortium"]  # the module-scoped fixture, shared with the API tests


def test_damaged_entry_is_refused_alarmed_and_fails_readyz(
    consortium: Path, tmp_path: Path
) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        token = (consortium / "keys" / "spc-clerk1.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        env = document(signer(consortium, "spc-clerk1"), g, b"to be damaged")
        r = await i.post("/v1/entries", params={"wait": "commit"}, json=as_json(env))
        assert r.status_code == 200, r.text
        eid = r.json()["entries"][0]["entry_id"]
        assert (await i.get(f"/v1/entries/{eid}", headers=auth)).status_code == 200
        assert (await i.get("/readyz")).status_code == 200

        # Overwrite the entry's record (key X + leaf index) with other bytes.
        node.chain.store._db.put(b"X" + struct.pack(">Q", 0), b"\x00damaged\x00")

        r = await i.get(f"/v1/entries/{eid}", headers=auth)
        assert r.status_code == 503 and r.json()["error"] == "corruption", r.text
        assert "damaged" not in r.text  # none of the bad bytes are served
        ready = await i.get("/readyz")
        assert ready.status_code == 503 and "damaged" in ready.json()["detail"], ready.text
        metrics = (await i.get("/metrics")).text
        assert 'courtledger_alarm{alarm="corruption"} 1.0' in metrics
        cluster = (await i.get("/v1/cluster")).json()
        assert any(a.startswith("corruption:") for a in cluster["alarms"]), cluster

    run(consortium, tmp_path, body)


def test_a_missing_entry_is_not_mistaken_for_damage(consortium: Path, tmp_path: Path) -> None:
    async def body(node: Node, i: Client, p: Client, g: Genesis) -> None:
        token = (consortium / "keys" / "spc-clerk1.token").read_text().strip()
        r = await i.get("/v1/entries/" + "00" * 32,
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404 and r.json()["error"] == NotFound.code
        assert (await i.get("/readyz")).status_code == 200

    run(consortium, tmp_path, body)
