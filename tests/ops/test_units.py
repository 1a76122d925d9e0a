"""Fast checks of the operations commands without node processes (budget: a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from ledger.consortium import ConsortiumState
from ledger.entries import check_entry
from ledger.errors import ValidityError
from ledger.genesis import load_genesis
from node.apply import conf_change_mismatch
from node.cli import main
from node.init import init_consortium
from node.raftlink import RaftReplicator
from node.replicator import Committed


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_keygen_genesis_build_and_show(tmp_path: Path) -> None:
    parts = []
    for i, (node, court) in enumerate([("ji01", "吉01"), ("ji02", "吉02")]):
        r = run("keygen", "--node", "--id", node, "--court", court, "--raft-addr",
                f"10.0.0.{i + 1}:7100", "--out", str(tmp_path / node))
        assert r.exit_code == 0, r.output
        r = run("keygen", "--identity", "--id", f"{node}-admin", "--court", court,
                "--out", str(tmp_path / node))
        assert r.exit_code == 0, r.output
        parts += [str(tmp_path / node / f"{node}.node.toml"),
                  str(tmp_path / node / f"{node}-admin.identity.toml")]
        assert oct((tmp_path / node / f"{node}.node.key").stat().st_mode)[-3:] == "600"
    # Secrets are never overwritten.
    r = run("keygen", "--node", "--id", "ji01", "--court", "吉01", "--raft-addr", "x:1",
            "--out", str(tmp_path / "ji01"))
    assert r.exit_code != 0 and "never overwritten" in r.output
    out = tmp_path / "genesis.toml"
    r = run("genesis", "build", *parts, "--out", str(out), "--tokens-out",
            str(tmp_path / "tokens.toml"))
    assert r.exit_code == 0, r.output
    g = load_genesis(out)
    assert [n.id for n in g.nodes] == ["ji01", "ji02"]
    assert "chain id " + g.chain_id.hex() in r.output
    r = run("genesis", "show", str(out), "--json")
    shown = json.loads(r.output)
    assert shown["chain_id"] == g.chain_id.hex()
    assert {i["id"] for i in shown["identities"]} == {"ji01-admin", "ji02-admin"}
    assert "tokens" in (tmp_path / "tokens.toml").read_text()


@pytest.fixture()
def consortium(tmp_path: Path) -> Path:
    init_consortium(tmp_path / "c", 3, base_port=41000)
    return tmp_path / "c"


def test_change_file_approvals_make_a_valid_membership_entry(consortium: Path,
                                                             tmp_path: Path) -> None:
    g = str(consortium / "genesis.toml")
    genesis = load_genesis(g)
    change = tmp_path / "promote.json"
    # promote of a voter is invalid whatever the approvals: use remove of ji01 instead.
    r = run("member", "remove", "--genesis", g, "--id", "ji01", "--court", "吉01",
            "--out", str(change))
    assert r.exit_code == 0, r.output
    for admin in ("spc-admin", "ji-admin"):
        r = run("member", "approve", str(change), "--genesis", g, "--key",
                str(consortium / "keys" / f"{admin}.key"), "--identity", admin)
        assert r.exit_code == 0, r.output
    r = run("member", "approve", str(change), "--genesis", g, "--key",
            str(consortium / "keys" / "ji-admin.key"), "--identity", "ji-admin")
    assert r.exit_code != 0 and "already approved" in r.output
    from node.member import change_envelope, load_key, read_change

    doc, body = read_change(change, genesis)
    env = change_envelope(genesis, doc, body, load_key(consortium / "keys" / "ji01-admin.key"),
                          None)
    state = ConsortiumState.from_genesis(genesis)
    check_entry(state, genesis.chain_id, env, block_time=env["payload"]["time"], height=1)
    # One approval is not a majority of three voting courts.
    doc["approvals"] = doc["approvals"][:1]
    env = change_envelope(genesis, doc, body, load_key(consortium / "keys" / "ji01-admin.key"),
                          None)
    with pytest.raises(ValidityError, match="majority"):
        check_entry(state, genesis.chain_id, env, block_time=env["payload"]["time"], height=1)


def test_change_file_of_another_chain_is_refused(consortium: Path, tmp_path: Path) -> None:
    init_consortium(tmp_path / "other", 3, base_port=42000)
    change = tmp_path / "c.json"
    run("member", "promote", "--genesis", str(tmp_path / "other" / "genesis.toml"), "--id",
        "x", "--court", "吉01", "--out", str(change))
    r = run("member", "approve", str(change), "--genesis", str(consortium / "genesis.toml"),
            "--key", str(consortium / "keys" / "spc-admin.key"), "--identity", "spc-admin")
    assert r.exit_code != 0 and "not this one" in r.output


def _block(op: str | None, node: str = "n4") -> dict[str, Any]:
    entries = []
    if op is not None:
        entries.append({"payload": {"kind": "membership", "body": {"op": op, "id": node}}})
    entries.append({"payload": {"kind": "document", "body": {}}})
    return {"header": {"height": 7}, "entries": entries}


def test_conf_change_must_match_its_blocks_membership_entry() -> None:
    assert conf_change_mismatch(Committed(1, 1, "normal", b""), _block(None)) is None
    assert conf_change_mismatch(Committed(1, 1, "normal", b""), _block("update_keys")) is None
    assert "normal entry" in str(conf_change_mismatch(Committed(1, 1, "normal", b""),
                                                      _block("promote")))
    ok = Committed(1, 1, "conf_change", b"", ("promote", "n4"))
    assert conf_change_mismatch(ok, _block("promote")) is None
    assert conf_change_mismatch(ok, _block("remove")) is not None
    assert conf_change_mismatch(ok, _block("promote", "n5")) is not None
    assert conf_change_mismatch(ok, _block(None)) is not None
    assert conf_change_mismatch(Committed(1, 1, "conf_change", b""), _block("promote"))


def test_restored_node_withholds_votes_until_a_leader_and_at_old_terms(tmp_path: Path) -> None:
    """Raft §5.2 (one vote per term) after a restore: no vote before a leader was heard,
    none at a term at or below the highest seen; the guard lifts once our term is past it."""
    (tmp_path / "RESTORED").write_text('{"term_floor": 4}')
    r = SimpleNamespace(_vote_floor=4, _heard_leader=False, votes_withheld=0,
                        core=SimpleNamespace(term=0),
                        logstore=SimpleNamespace(last_index=lambda: 3),
                        config=SimpleNamespace(data_dir=tmp_path))
    take = RaftReplicator._restored_may_take
    assert not take(r, {"type": "vote", "term": 5, "frm": "a"})  # no leader heard yet
    assert not take(r, {"type": "pre_vote", "term": 5, "frm": "a"})
    assert take(r, {"type": "heartbeat", "term": 6, "frm": "b"})  # a leader at term 6
    assert r._vote_floor == 6
    assert not take(r, {"type": "vote", "term": 6, "frm": "a"})  # may have voted in 6
    assert take(r, {"type": "app", "term": 7, "frm": "b"})  # later terms do not move it
    assert r._vote_floor == 6
    assert take(r, {"type": "vote", "term": 8, "frm": "a"})  # a term never seen: fine
    assert r.votes_withheld == 3
    r.core.term = 8
    assert take(r, {"type": "app", "term": 8, "frm": "a"})
    assert r._vote_floor is None and not (tmp_path / "RESTORED").exists()
