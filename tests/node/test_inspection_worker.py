"""The inspection worker inside a running node (issue 8, "How it runs"): it follows applied
blocks, its findings equal a full re-run over the chain, the reporter's signed `report` entry
goes through admission onto the chain and reproduces from it, and a fresh worker rebuilds the
same state from the chain. One single-court node in process, a generated workload.
Budget: < 15 s."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node.config import load_config
from node.init import init_consortium
from node.inspection import InspectionWorker
from node.process import Node
from node.workload import sign_items
from verifier import DEFAULT_CONFIG, inspect_records, records_from_blocks, reproduce
from verifier.synth import demo_items

COURT = "最高法"


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("insp") / "c"
    init_consortium(out, 1, base_port=38400)
    return out


def reporter_node(folder: Path, data: Path) -> Node:
    env = {"COURTLEDGER_DATA_DIR": str(data),
           "COURTLEDGER_INSPECTION__REPORTER": "true",
           "COURTLEDGER_INSPECTION__INSPECTOR_KEY": str(folder / "keys/spc-inspector.key"),
           # Reports only when the test asks (submit_report), not on a timer.
           "COURTLEDGER_INSPECTION__REPORT_INTERVAL_S": "3600"}
    return Node(load_config(folder / "spc.toml", env=env))


def chain_args(node: Node) -> dict[str, Any]:
    """The inputs `courtledger inspect --reproduce` takes from the genesis file."""
    g = node.genesis
    courts = {i.court for i in g.identities} | {n.court for n in g.nodes}
    return {"hash_alg": node.chain.hash_alg,
            "onboarded": {c: g.genesis_time for c in courts},
            "identities": {i.id: i.public_key for i in g.identities}}


def all_blocks(node: Node) -> list[dict[str, Any]]:
    return [node.chain.block(h) for h in range(1, node.chain.height + 1)]


async def caught_up(node: Node, timeout: float = 10.0) -> None:
    worker = node.inspection
    assert worker is not None
    for _ in range(int(timeout / 0.05)):
        if worker.fed_height == node.chain.height:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker at {worker.fed_height}, chain at {node.chain.height}")


def test_worker_follows_blocks_reports_and_rebuilds(one: Path, tmp_path: Path) -> None:
    async def main() -> None:
        node = reporter_node(one, tmp_path)
        await node.start()
        try:
            # The generator leaves out 最高法 (no enforcement cases of its own): 吉's cases,
            # signed by the one court of this consortium.
            items = [{**i, "court": COURT} for i in demo_items(["吉"], 12, seed=3)]
            envs = sign_items(items, node.genesis, one / "keys")
            # Several blocks: the worker is fed block by block while they arrive.
            for i in range(0, len(envs), 40):
                await node.service.submit(envs[i:i + 40], "commit")
            await caught_up(node)
            worker = node.inspection
            assert worker is not None and node.chain.height >= 3
            got = worker.engine.findings()
            assert got, "a workload with defects yields findings"

            # The same findings as a full re-run over the chain at the same inspection time.
            full = inspect_records(records_from_blocks(all_blocks(node),
                                                       hash_alg=node.chain.hash_alg),
                                   worker.engine.now, DEFAULT_CONFIG, **chain_args(node))
            assert [f.digest_item() for f in got] == [f.digest_item() for f in full.findings()]

            # The reporter's report: signed by the inspector, admitted, on chain, reproducible.
            eid = await node.inspection.submit_report()
            assert eid is not None
            for _ in range(100):
                if node.chain.entry_location(bytes.fromhex(eid)) is not None:
                    break
                await asyncio.sleep(0.05)
            stored = node.chain.entry(bytes.fromhex(eid))
            assert stored is not None
            payload = stored["envelope"]["payload"]
            assert payload["kind"] == "report" and payload["court"] == COURT
            assert payload["body"]["count"] == len(got)
            assert payload["body"]["height"] < stored["height"]
            rep = reproduce(records_from_blocks(all_blocks(node), hash_alg=node.chain.hash_alg),
                            bytes.fromhex(eid), DEFAULT_CONFIG, **chain_args(node))
            assert rep.matches, rep.differences()
            await caught_up(node)
            assert worker.reports and worker.reports[-1]["entry_id"] == eid
            # Nothing changed since: no report about a report.
            assert await worker.submit_report() is None

            # Derived state: a fresh worker replays the chain to the same findings.
            # (its metrics in a registry of their own: the node's already has the names)
            node.metrics.registry = type(node.metrics.registry)()
            fresh = InspectionWorker(node, node.config.inspection)
            fresh.feed(node.chain.height)
            fresh.engine.advance_time(worker.engine.now)
            assert fresh.engine.digest() == worker.engine.digest()

            # The reads the internal API serves.
            summary = node.service.inspection_summary()
            assert summary["height"] == node.chain.height
            assert summary["courts"][COURT]["cases"] == 12
            assert sum(r["violation"] + r["warning"] for r in summary["rules"].values()) \
                == len(got)
            warns = node.service.inspection_deadlines()
            assert [w["due"] for w in warns] == sorted(w["due"] for w in warns)
            case_no = got[0].case
            page = node.service.inspection_case(case_no)
            assert page["findings"] and all(f["case"] == case_no for f in page["findings"])
            assert page["entries"] and all(e["height"] >= 1 for e in page["entries"])
            assert {e["proof"] for e in page["entries"]} <= {"cosigned", "committed"}
        finally:
            await node.stop()

    asyncio.run(main())


def test_inspection_switched_off(one: Path, tmp_path: Path) -> None:
    from api.service import Unavailable

    env = {"COURTLEDGER_DATA_DIR": str(tmp_path), "COURTLEDGER_INSPECTION__ENABLED": "false"}
    node = Node(load_config(one / "spc.toml", env=env))
    try:
        assert node.inspection is None
        with pytest.raises(Unavailable):
            node.service.inspection_summary()
    finally:
        node.chain.close()


def test_reporter_key_must_be_an_inspector(one: Path, tmp_path: Path) -> None:
    env = {"COURTLEDGER_DATA_DIR": str(tmp_path), "COURTLEDGER_INSPECTION__REPORTER": "true",
           "COURTLEDGER_INSPECTION__INSPECTOR_KEY": str(one / "keys/spc-clerk1.key")}
    with pytest.raises(ValueError, match="not the key of an inspector"):
        Node(load_config(one / "spc.toml", env=env))


@pytest.mark.parametrize(("raw", "field"), [
    ({"bogus": 1}, "inspection.bogus"),
    ({"reporter": True}, "inspection.inspector_key"),
    ({"reporter": "maybe"}, "inspection.reporter"),
    ({"report_interval_s": 0}, "inspection.report_interval_s"),
    ({"tick_s": "soon"}, "inspection.tick_s"),
    ({"store": "redis"}, "inspection.store"),
])
def test_inspection_section_refuses_bad_values_naming_the_field(
    raw: dict[str, Any], field: str
) -> None:
    from node.config import ConfigError, parse_config

    base = {"node_id": "a", "genesis": "g", "data_dir": "d", "node_key": "k", "tls_key": "k",
            "tls_cert": "c", "listen": {"raft": "h:1", "internal": "h:2", "public": "h:3"}}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "inspection": raw}, Path("/etc/courtledger/a.toml"), env={})
    assert err.value.field == field


def test_inspection_section_from_file_and_environment() -> None:
    from node.config import parse_config

    base = {"node_id": "a", "genesis": "g", "data_dir": "d", "node_key": "k", "tls_key": "k",
            "tls_cert": "c", "listen": {"raft": "h:1", "internal": "h:2", "public": "h:3"},
            "inspection": {"reporter": True, "inspector_key": "keys/a-inspector.key"}}
    cfg = parse_config(base, Path("/etc/courtledger/a.toml"),
                       env={"COURTLEDGER_INSPECTION__REPORT_INTERVAL_S": "60"})
    s = cfg.inspection
    assert s.reporter and s.report_interval_s == 60.0 and s.enabled
    assert s.inspector_key == Path("/etc/courtledger/keys/a-inspector.key")
    assert parse_config({k: v for k, v in base.items() if k != "inspection"},
                        Path("/x/a.toml"), env={}).inspection.reporter is False
