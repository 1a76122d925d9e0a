"""``audit receipt``, ``audit consistency``, ``audit case``, ``export``, resume, exit codes.

Receipts: every receipt of the run verifies (one after a voter was added, one after a voter
was removed among them); a corrupted one fails naming the field; another chain's fails.
Exit codes as DESIGN §6: 2 for bad usage and unopenable files, 3 for an unreachable node.
Budget: ≤ 30 s.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ledger.checkpoints import make_checkpoint, sign_checkpoint, to_file
from ledger.crypto import hash_object
from ledger.entries import entry_id
from ledger.receipts import build_consistency
from ledger.store import LedgerStore
from node.audit import audit_group, export_command
from tests.audit.conftest import Chain, key
from tests.audit.test_tamper import flip, read_frames, write_frames


def invoke(cmd: Any, *args: str) -> Any:
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def receipts(chain: Chain) -> dict[bytes, dict[str, Any]]:
    """Every entry's receipt, built by the store as a node serves it, as JSON."""
    store = LedgerStore.open(chain.data, chain.genesis)
    try:
        return {eid: json.loads(json.dumps(store.receipt(eid))) for eid in chain.entry_ids}
    finally:
        store.close()


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


# ------------------------------------------------------------------------------- receipts


def test_every_receipt_of_the_run_verifies(chain: Chain, receipts: dict[bytes, Any],
                                           tmp_path: Path) -> None:
    after_add = chain.heights["after_add"]
    after_remove = chain.heights["after_remove"]
    seen_heights = set()
    for i, (eid, receipt) in enumerate(receipts.items()):
        path = write_json(tmp_path / f"r{i}.json", receipt)
        result = invoke(audit_group, "receipt", str(path), "--consortium",
                        str(chain.genesis_file), "--json")
        assert result.exit_code == 0, (i, result.stderr)
        out = json.loads(result.stdout)
        assert out["ok"] and out["entry_id"] == eid.hex()
        seen_heights.add(out["height"])
        if out["height"] == after_add:
            # node-d votes from here: 4 voters, a majority of 4 is 3.
            assert out["voters"] == ["node-a", "node-b", "node-c", "node-d"]
            assert out["cosigners"] == ["node-a", "node-b", "node-c", "node-d"]
        if out["height"] == after_remove:
            assert out["voters"] == ["node-a", "node-b", "node-d"]
            assert "node-c" not in out["cosigners"]
    assert {after_add, after_remove} <= seen_heights


def test_receipt_sentence_and_document(chain: Chain, receipts: dict[bytes, Any],
                                       tmp_path: Path) -> None:
    [eid] = [e for e, r in receipts.items()
             if json.loads(json.dumps(r))["checkpoint"]["height"] == chain.heights["after_remove"]]
    path = write_json(tmp_path / "r.json", receipts[eid])
    doc = tmp_path / "doc.pdf"
    doc.write_bytes(b"document 2")  # what the test chain anchored at that height
    result = invoke(audit_group, "receipt", str(path), "--document", str(doc),
                    "--consortium", str(chain.genesis_file))
    assert result.exit_code == 0, result.stderr
    sentence = result.stdout.splitlines()[0]
    assert sentence.startswith("Court 吉0102 (clerk-0, key ")
    assert f"in block {chain.heights['after_remove']} or earlier" in sentence
    assert "no later than 2026-01-01 00:00:" in sentence
    assert "cosigned by node-a, node-b, node-d" in sentence
    other = tmp_path / "other.pdf"
    other.write_bytes(b"not the document")
    result = invoke(audit_group, "receipt", str(path), "--document", str(other),
                    "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1 and "field document" in result.stderr


def _flip_hex(h: str) -> str:
    return ("1" if h[0] == "0" else "0") + h[1:]


def _flip_entry(r: dict[str, Any]) -> None:
    raw = base64.b64decode(r["entry"])
    r["entry"] = base64.b64encode(flip(raw, len(raw) - 1)).decode()  # the signature's last byte


CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "format": (lambda r: r.update(format="courtledger-receipt/2"), "format"),
    "hash_alg": (lambda r: r.update(hash_alg="sm3"), "hash_alg"),
    "entry": (_flip_entry, "entry"),
    "entry_id": (lambda r: r.update(entry_id=_flip_hex(r["entry_id"])), "entry_id"),
    "leaf_index": (lambda r: r.update(leaf_index=-1), "leaf_index"),
    "inclusion_path": (lambda r: r["inclusion_path"].__setitem__(
        0, _flip_hex(r["inclusion_path"][0])), "inclusion_path"),
    "checkpoint": (lambda r: r["checkpoint"].pop("time"), "checkpoint"),
    "checkpoint.chain": (lambda r: r["checkpoint"].update(chain="ab" * 32), "checkpoint.chain"),
    "signatures": (lambda r: r.update(signatures=r["signatures"][:1]), "signatures"),
    "consortium": (lambda r: r["consortium"][1]["inclusion_path"].__setitem__(
        0, _flip_hex(r["consortium"][1]["inclusion_path"][0])),
        "consortium[1].inclusion_path"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_receipt_fails_naming_the_field(name: str, chain: Chain,
                                                  receipts: dict[bytes, Any],
                                                  tmp_path: Path) -> None:
    mutate, field = CORRUPTIONS[name]
    # A receipt past all three membership changes, so every field is exercised.
    good = next(r for r in receipts.values()
                if r["checkpoint"]["height"] == chain.heights["last"])
    assert len(good["consortium"]) == 3
    bad = copy.deepcopy(good)
    mutate(bad)
    path = write_json(tmp_path / "bad.json", bad)
    result = invoke(audit_group, "receipt", str(path), "--consortium",
                    str(chain.genesis_file), "--json")
    assert result.exit_code == 1, name
    assert json.loads(result.stdout)["field"] == field, result.stdout
    assert f"field {field}:" in result.stderr


def test_receipt_of_another_chain_fails(chain: Chain, other_chain: Chain,
                                        tmp_path: Path) -> None:
    store = LedgerStore.open(other_chain.data, other_chain.genesis)
    try:
        theirs = json.loads(json.dumps(store.receipt(other_chain.entry_ids[0])))
    finally:
        store.close()
    path = write_json(tmp_path / "theirs.json", theirs)
    ok = invoke(audit_group, "receipt", str(path), "--consortium", str(other_chain.genesis_file))
    assert ok.exit_code == 0
    result = invoke(audit_group, "receipt", str(path), "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1 and "does NOT verify" in result.stderr


def test_receipt_usage_errors(chain: Chain, receipts: dict[bytes, Any], tmp_path: Path) -> None:
    path = write_json(tmp_path / "r.json", next(iter(receipts.values())))
    assert invoke(audit_group, "receipt", str(path)).exit_code == 2  # no --consortium
    missing = invoke(audit_group, "receipt", str(tmp_path / "nope.json"), "--consortium",
                     str(chain.genesis_file))
    assert missing.exit_code == 2 and "cannot open" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_genesis = invoke(audit_group, "receipt", str(path), "--consortium",
                         str(tmp_path / "nope.toml"))
    assert bad_genesis.exit_code == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    # Data under audit that does not parse is an integrity failure (DESIGN §6).
    assert invoke(audit_group, "receipt", str(garbage), "--consortium",
                  str(chain.genesis_file)).exit_code == 1


# ------------------------------------------------------------------------------- consistency


def test_consistency_proof_file(chain: Chain, tmp_path: Path) -> None:
    store = LedgerStore.open(chain.data, chain.genesis)
    try:
        proof = json.loads(json.dumps(build_consistency(store, 10, 45)))
    finally:
        store.close()
    path = write_json(tmp_path / "proof.json", proof)
    result = invoke(audit_group, "consistency", str(path), "--consortium",
                    str(chain.genesis_file), "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["first"]["height"] == 10 and out["second"]["height"] == 45
    bad = copy.deepcopy(proof)
    bad["path"][0] = _flip_hex(bad["path"][0])
    result = invoke(audit_group, "consistency", str(write_json(tmp_path / "bad.json", bad)),
                    "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1 and "field path" in result.stderr
    assert invoke(audit_group, "consistency", str(path)).exit_code == 2  # no --consortium


def test_consistency_after_membership_changes_learns_the_voters(
        chain: Chain, receipts: dict[bytes, Any], tmp_path: Path) -> None:
    store = LedgerStore.open(chain.data, chain.genesis)
    try:
        proof = json.loads(json.dumps(build_consistency(store, 10, 45)))
    finally:
        store.close()
    # At height 45 the voters are node-a, node-b, node-d: node-b and node-d are a quorum
    # there, but only one genesis voter.
    proof["second"]["signatures"] = [s for s in proof["second"]["signatures"]
                                     if s["node"] in ("node-b", "node-d")]
    path = write_json(tmp_path / "proof.json", proof)
    g = str(chain.genesis_file)
    assert invoke(audit_group, "consistency", str(path), "--consortium", g).exit_code == 1
    late = next(r for r in receipts.values() if r["checkpoint"]["height"] == chain.heights["last"])
    rpath = write_json(tmp_path / "late-receipt.json", late)
    result = invoke(audit_group, "consistency", str(path), "--consortium", g, "--voters-from",
                    str(rpath), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["second"]["cosigners"] == ["node-b", "node-d"]


def test_conflicting_checkpoints_in_a_proof_are_printed_as_evidence(chain: Chain,
                                                                     tmp_path: Path) -> None:
    g = chain.genesis
    cp, sigs = chain.checkpoints[9]
    forged = make_checkpoint(g.chain_id, cp["height"], bytes(32), cp["tree_size"],
                             bytes(range(32)), cp["time"])
    forged_sigs = [{"node": n, "sig": sign_checkpoint(key(n), g.chain_id, forged)}
                   for n in ("node-a", "node-b")]
    proof = {"format": "courtledger-consistency/1", "first": to_file("sha256", cp, sigs),
             "second": to_file("sha256", forged, forged_sigs), "path": []}
    path = write_json(tmp_path / "equivocation.json", proof)
    result = invoke(audit_group, "consistency", str(path), "--consortium",
                    str(chain.genesis_file))
    assert result.exit_code == 1
    assert "EQUIVOCATION" in result.stdout and "equivocation" in result.stderr
    assert result.stdout.count('"format": "courtledger-checkpoint/1"') == 2
    assert cp["root"].hex() in result.stdout and bytes(range(32)).hex() in result.stdout
    result = invoke(audit_group, "consistency", str(path), "--consortium",
                    str(chain.genesis_file), "--json")
    out = json.loads(result.stdout)
    assert out["ok"] is False and out["first"]["checkpoint"]["root"] == cp["root"].hex()


# ------------------------------------------------------------------------------- resume


def _partial_bundle(chain: Chain, upto: int, path: Path) -> Path:
    frames = read_frames(chain.bundle)  # type: ignore[arg-type]
    n = len(chain.blocks)
    cps = [f for f in frames[n + 1 :] if f["checkpoint"]["height"] <= upto]
    return write_frames(path, frames[: upto + 1] + cps)


def test_resume_from_a_saved_state(chain: Chain, tmp_path: Path) -> None:
    g = str(chain.genesis_file)
    part = _partial_bundle(chain, 30, tmp_path / "part.bundle")
    state = tmp_path / "audit.state"
    result = invoke(audit_group, "chain", "--bundle", str(part), "--consortium", g,
                    "--save", str(state), "--json")
    assert result.exit_code == 0 and state.exists()
    for source in (("--bundle", str(chain.bundle)), ("--data", str(chain.data))):
        result = invoke(audit_group, "chain", *source, "--consortium", g, "--resume",
                        str(state), "--json")
        assert result.exit_code == 0, result.stdout
        out = json.loads(result.stdout)
        assert out["resumed_from"] == 30 and out["height"] == len(chain.blocks)
        assert out["entries"] == len(chain.entry_ids)
        assert out["checkpoints"] == len(chain.blocks) - 30 + 1  # 30 itself and above
        assert [m["op"] for m in out["membership"]] == ["add_learner", "promote", "remove"]


def test_resume_catches_rewritten_history(chain: Chain, tmp_path: Path) -> None:
    g = str(chain.genesis_file)
    state = tmp_path / "audit.state"
    part = _partial_bundle(chain, 30, tmp_path / "part.bundle")
    assert invoke(audit_group, "chain", "--bundle", str(part), "--consortium", g, "--save",
                  str(state)).exit_code == 0
    frames = read_frames(chain.bundle)  # type: ignore[arg-type]
    p = frames[10]["block"]["entries"][0]["payload"]
    p["nonce"] = flip(p["nonce"])
    rewritten = write_frames(tmp_path / "rewritten.bundle", frames)
    result = invoke(audit_group, "chain", "--bundle", str(rewritten), "--consortium", g,
                    "--resume", str(state), "--json")
    assert result.exit_code == 1
    whats = [p["what"] for p in json.loads(result.stdout)["problems"]]
    assert any("history rewritten since the saved audit" in w for w in whats), whats


def test_resume_finds_what_a_full_audit_finds(chain: Chain, tmp_path: Path) -> None:
    g = str(chain.genesis_file)
    state = tmp_path / "audit.state"
    part = _partial_bundle(chain, 30, tmp_path / "part.bundle")
    assert invoke(audit_group, "chain", "--bundle", str(part), "--consortium", g, "--save",
                  str(state)).exit_code == 0
    frames = read_frames(chain.bundle)  # type: ignore[arg-type]
    env = frames[40]["block"]["entries"][1]
    env["sig"] = flip(env["sig"], 9)
    # And a replay of an entry audited before the state was saved (the duplicate rule must
    # remember ids across a resume).
    frames[40]["block"]["entries"][0] = frames[5]["block"]["entries"][0]
    bad = write_frames(tmp_path / "bad.bundle", frames)
    full = json.loads(invoke(audit_group, "chain", "--bundle", str(bad), "--consortium", g,
                             "--json").stdout)
    resumed = json.loads(invoke(audit_group, "chain", "--bundle", str(bad), "--consortium", g,
                                "--resume", str(state), "--json").stdout)
    assert full["problems"] == resumed["problems"] and resumed["problems"]
    assert resumed["problems"][0]["height"] == 40
    located = {(p["height"], p["index"]): p["what"] for p in resumed["problems"]}
    assert "already" in located[(40, 0)] and "signature" in located[(40, 1)]


def test_bad_state_file_is_usage(chain: Chain, tmp_path: Path) -> None:
    state = tmp_path / "junk.state"
    state.write_bytes(b"\x80")
    result = invoke(audit_group, "chain", "--bundle", str(chain.bundle), "--resume", str(state))
    assert result.exit_code == 2 and "state file" in result.stderr


# ------------------------------------------------------------------------------- case


def _case_entries(chain: Chain, case: str) -> list[bytes]:
    return [hash_object("sha256", e["payload"]) for b in chain.blocks for e in b["entries"]
            if e["payload"].get("case") == case]


def test_case_timeline_with_verified_proofs(chain: Chain) -> None:
    case = chain.cases[0]
    want = _case_entries(chain, case)
    assert len(want) >= 3
    for source in (("--bundle", str(chain.bundle)), ("--data", str(chain.data))):
        result = invoke(audit_group, "case", case, *source, "--consortium",
                        str(chain.genesis_file), "--json")
        assert result.exit_code == 0, result.stderr
        out = json.loads(result.stdout)
        assert [bytes.fromhex(e["entry_id"]) for e in out["entries"]] == want
        assert all(e["proof"] == "verified" for e in out["entries"])
        assert all(isinstance(e["time"], int) for e in out["entries"])
        assert isinstance(out["findings"], list)
    human = invoke(audit_group, "case", case, "--bundle", str(chain.bundle))
    assert human.exit_code == 0 and "✓ verified" in human.stdout
    assert "NOT PINNED" in human.stderr


def test_case_with_a_tampered_entry_fails(chain: Chain, tmp_path: Path) -> None:
    case = chain.cases[0]
    frames = read_frames(chain.bundle)  # type: ignore[arg-type]
    for f in frames[1 : len(chain.blocks) + 1]:
        for env in f["block"]["entries"]:
            if env["payload"].get("case") == case:
                env["sig"] = flip(env["sig"], 3)
                break
        else:
            continue
        break
    bad = write_frames(tmp_path / "bad.bundle", frames)
    result = invoke(audit_group, "case", case, "--bundle", str(bad), "--consortium",
                    str(chain.genesis_file), "--json")
    assert result.exit_code == 1
    assert [e["proof"] for e in json.loads(result.stdout)["entries"]].count("FAILED") >= 1


# ------------------------------------------------------------------------------- export


def test_export_from_a_data_dir_is_the_bundle(chain: Chain, tmp_path: Path) -> None:
    out = tmp_path / "exported.bundle"
    result = invoke(export_command, "--data", str(chain.data), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == chain.bundle.read_bytes()  # type: ignore[union-attr]
    assert invoke(audit_group, "chain", "--bundle", str(out), "--consortium",
                  str(chain.genesis_file)).exit_code == 0


# ------------------------------------------------------------------------------- exit codes


def test_usage_errors_exit_2(chain: Chain, tmp_path: Path) -> None:
    g = str(chain.genesis_file)
    cases = [
        ("chain", "--consortium", g),  # no source
        ("chain", "--bundle", str(chain.bundle), "--data", str(chain.data)),
        ("chain", "--bundle", str(tmp_path / "missing.bundle")),
        ("chain", "--data", str(tmp_path)),  # not a data dir
        ("chain", "--bundle", str(chain.bundle), "--chain-id", "xyz"),
        ("chain", "--bundle", str(chain.bundle), "--consortium", str(tmp_path / "none.toml")),
        ("case", "x", "--node", "http://127.0.0.1:9"),
        ("consistency", "1", "2", "--consortium", g),  # OLD NEW without --node
    ]
    for args in cases:
        result = invoke(audit_group, *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip(), args
    assert invoke(export_command, "--out", str(tmp_path / "x")).exit_code == 2


def test_data_dir_held_by_a_running_node_is_usage(chain: Chain, data_copy: Path) -> None:
    store = LedgerStore.open(data_copy, chain.genesis)  # as a running node holds it
    try:
        result = invoke(audit_group, "chain", "--data", str(data_copy))
    finally:
        store.close()
    assert result.exit_code == 2 and "still running" in result.stderr


def test_unreachable_node_exits_3(chain: Chain, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    g = str(chain.genesis_file)
    for cmd, args in (
        (audit_group, ("chain", "--node", url, "--consortium", g)),
        (audit_group, ("case", chain.cases[0], "--node", url, "--consortium", g)),
        (audit_group, ("consistency", "1", "2", "--node", url, "--consortium", g)),
        (export_command, ("--node", url, "--consortium", g, "--out", str(tmp_path / "o"))),
    ):
        result = invoke(cmd, *args)
        assert result.exit_code == 3, (args, result.stderr)
        assert "unreachable" in result.stderr


def test_entry_id_helper_matches(chain: Chain) -> None:
    # The ids the tests compare are the ledger's own (DESIGN §2 entry_id).
    env = chain.blocks[0]["entries"][0]
    assert entry_id("sha256", env["payload"]) == chain.entry_ids[0]
