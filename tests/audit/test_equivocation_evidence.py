"""``audit consistency EVIDENCE --consortium GENESIS``: equivocation evidence checked offline.

A lying proposer re-signs block h with another time and feeds it to one voter (the ``equivocate``
failpoint of node/raftlink.py does just that). The evidence a voter keeps is a
``courtledger-equivocation/1`` file (ledger/checkpoints.py): both signed checkpoints and the
proposer's two signed headers. Proven equivocation exits 1 printing EQUIVOCATION and naming the
proposer; forged, unsigned, outsider-signed, other-chain or non-contradicting evidence is refused
with a one-line reason and never reported as equivocation (DESIGN §2, §6). Budget: ≤ 10 s.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ledger.blocks import block_hash
from ledger.checkpoints import (
    CHECKPOINT_FILE_FORMAT,
    equivocation_from_file,
    equivocation_to_file,
    make_checkpoint,
    sign_checkpoint,
    to_file,
)
from ledger.crypto import TAG_BLOCK, sign_object
from ledger.errors import CheckpointError
from node.audit import audit_group
from tests.audit.conftest import Chain, key

HEIGHT = 5  # before any membership change: the genesis voters node-a, node-b, node-c


def invoke(*args: str) -> Any:
    return CliRunner().invoke(audit_group, list(args), catch_exceptions=False)


def block_at(chain: Chain, height: int) -> dict[str, Any]:
    return next(b for b in chain.blocks if b["header"]["height"] == height)


def cp_at(chain: Chain, height: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return next(c for c in chain.checkpoints if c[0]["height"] == height)


def fork(chain: Chain, height: int = HEIGHT, *, signer: str = "node-c",
         proposer_key: str | None = None) -> dict[str, Any]:
    """The evidence a voter would keep: the real block's checkpoint signed by node-a and
    ``signer``'s checkpoint of the proposer's other version of the block (time + 1 ms)."""
    g = chain.genesis
    real = block_at(chain, height)
    header, sig = real["header"], real["sig"]
    other = dict(header, time=header["time"] + 1)
    other_sig = sign_object(key(proposer_key or header["proposer"]), TAG_BLOCK, g.chain_id, other)
    cp, _ = cp_at(chain, height)
    cp2 = make_checkpoint(g.chain_id, height, block_hash(g.hash_alg, other), cp["tree_size"],
                          cp["root"], other["time"])
    return equivocation_to_file(
        g.hash_alg, detected_by="node-a", detected_at=1_767_225_700_000,
        detail="two checkpoints at one height",
        first=(cp, [{"node": "node-a", "sig": sign_checkpoint(key("node-a"), g.chain_id, cp)}]),
        second=(cp2, [{"node": signer, "sig": sign_checkpoint(key(signer), g.chain_id, cp2)}]),
        headers=[(header, sig), (other, other_sig)],
    )


def write(tmp: Path, obj: Any, name: str = "evidence.json") -> str:
    path = tmp / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def refused(chain: Chain, tmp: Path, obj: Any, why: str) -> None:
    result = invoke("consistency", write(tmp, obj), "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "EQUIVOCATION" not in result.stdout and "PROPOSER" not in result.stdout
    assert "NOT evidence of equivocation" in result.stderr and why in result.stderr, \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line (DESIGN §6)


def test_evidence_file_round_trips(chain: Chain) -> None:
    ev = fork(chain)
    parsed = equivocation_from_file(json.loads(json.dumps(ev)))
    assert parsed.first.checkpoint["height"] == parsed.second.checkpoint["height"] == HEIGHT
    assert len(parsed.headers) == 2 and parsed.detected_by == "node-a"
    for bad in ({**ev, "format": "courtledger-checkpoint/1"}, {**ev, "extra": 1},
                {k: v for k, v in ev.items() if k != "second"},
                {**ev, "headers": ev["headers"] * 2}):
        with pytest.raises(CheckpointError):
            equivocation_from_file(bad)


def test_proven_equivocation_prints_both_checkpoints_and_names_the_proposer(
        chain: Chain, tmp_path: Path) -> None:
    ev = fork(chain)
    proposer = block_at(chain, HEIGHT)["header"]["proposer"]
    path = write(tmp_path, ev)
    result = invoke("consistency", path, "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1, result.stderr
    assert result.stdout.startswith("EQUIVOCATION: two checkpoints at height 5")
    assert f"PROPOSER {proposer} signed both blocks" in result.stdout
    assert result.stdout.count(f'"format": "{CHECKPOINT_FILE_FORMAT}"') == 2
    for side in ("first", "second"):
        assert ev[side]["checkpoint"]["block"] in result.stdout
    assert "equivocation" in result.stderr and proposer in result.stderr
    out = json.loads(invoke("consistency", path, "--consortium", str(chain.genesis_file),
                            "--json").stdout)
    assert out["ok"] is False and out["proposer"] == proposer
    assert out["first_signers"] == ["node-a"] and out["second_signers"] == ["node-c"]
    assert len(out["headers"]) == 2


def test_without_headers_the_fork_is_proven_but_no_proposer_named(chain: Chain,
                                                                   tmp_path: Path) -> None:
    ev = fork(chain)
    ev["headers"] = []
    result = invoke("consistency", write(tmp_path, ev), "--consortium", str(chain.genesis_file))
    assert result.exit_code == 1 and "EQUIVOCATION" in result.stdout
    assert "proposer is not named" in result.stdout and "PROPOSER" not in result.stdout


def test_forged_unsigned_outsider_and_other_chain_evidence_is_refused(
        chain: Chain, other_chain: Chain, tmp_path: Path) -> None:
    ev = fork(chain)
    forged = copy.deepcopy(ev)
    sig = forged["second"]["signatures"][0]["sig"]
    forged["second"]["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    refused(chain, tmp_path, forged, "no valid signature by a voter")
    unsigned = copy.deepcopy(ev)
    unsigned["first"]["signatures"] = []
    refused(chain, tmp_path, unsigned, "no valid signature by a voter")
    outsider = fork(chain, signer="mallory")
    refused(chain, tmp_path, outsider, "no valid signature by a voter")
    # A real fork of another chain (its own voters signed it) proves nothing about this one.
    theirs = fork(other_chain)
    refused(chain, tmp_path, theirs, "another chain")
    # Checkpoints edited after signing: the signature no longer matches.
    edited = copy.deepcopy(ev)
    edited["second"]["checkpoint"]["root"] = "00" * 32
    refused(chain, tmp_path, edited, "no valid signature by a voter")


def test_non_contradicting_evidence_is_refused(chain: Chain, tmp_path: Path) -> None:
    g = chain.genesis
    a, sa = cp_at(chain, HEIGHT)
    b, sb = cp_at(chain, HEIGHT + 1)
    ev = equivocation_to_file(g.hash_alg, detected_by="node-a", detected_at=0, detail="?",
                              first=(a, sa), second=(b, sb))
    refused(chain, tmp_path, ev, "do not contradict")
    same = equivocation_to_file(g.hash_alg, detected_by="node-a", detected_at=0, detail="?",
                                first=(a, sa), second=(a, sa))
    refused(chain, tmp_path, same, "do not contradict")


def test_bad_headers_are_refused(chain: Chain, tmp_path: Path) -> None:
    # The second header signed by node-b, not by the proposer it names.
    not_proposers = fork(chain, proposer_key="node-b")
    refused(chain, tmp_path, not_proposers, "is not proposer")
    # A header that is neither checkpoint's block.
    stray = fork(chain)
    stray["headers"][1] = fork(chain, HEIGHT + 1)["headers"][1]
    refused(chain, tmp_path, stray, "is not the block of either checkpoint")
    # A header naming a node outside the consortium (signed by that outsider).
    g = chain.genesis
    ev = fork(chain)
    other = dict(block_at(chain, HEIGHT)["header"], time=block_at(chain, HEIGHT)["header"]["time"]
                 + 1, proposer="mallory")
    cp, _ = cp_at(chain, HEIGHT)
    cp2 = make_checkpoint(g.chain_id, HEIGHT, block_hash(g.hash_alg, other), cp["tree_size"],
                          cp["root"], other["time"])
    ev = equivocation_to_file(
        g.hash_alg, detected_by="node-a", detected_at=0, detail="?",
        first=(cp, [{"node": "node-a", "sig": sign_checkpoint(key("node-a"), g.chain_id, cp)}]),
        second=(cp2, [{"node": "node-c", "sig": sign_checkpoint(key("node-c"), g.chain_id, cp2)}]),
        headers=[(other, sign_object(key("mallory"), TAG_BLOCK, g.chain_id, other))])
    refused(chain, tmp_path, ev, "not a node of the consortium")


def test_two_checkpoint_files_offline(chain: Chain, tmp_path: Path) -> None:
    g = str(chain.genesis_file)
    ev = fork(chain)
    a = write(tmp_path, ev["first"], "a.json")
    b = write(tmp_path, ev["second"], "b.json")
    result = invoke("consistency", a, b, "--consortium", g)
    assert result.exit_code == 1 and "EQUIVOCATION" in result.stdout
    assert result.stdout.count(f'"format": "{CHECKPOINT_FILE_FORMAT}"') == 2
    # Two checkpoints of one history: no equivocation, and nothing more is claimed.
    c1, s1 = cp_at(chain, HEIGHT)
    c2, s2 = cp_at(chain, HEIGHT + 3)
    x = write(tmp_path, to_file("sha256", c1, s1), "x.json")
    y = write(tmp_path, to_file("sha256", c2, s2), "y.json")
    result = invoke("consistency", x, y, "--consortium", g)
    assert result.exit_code == 0 and "No equivocation" in result.stdout
    # An unsigned contradicting one proves nothing.
    unsigned = dict(ev["second"], signatures=[])
    z = write(tmp_path, unsigned, "z.json")
    result = invoke("consistency", a, z, "--consortium", g)
    assert result.exit_code == 1 and "EQUIVOCATION" not in result.stdout
    assert "NOT evidence" in result.stderr
    # Tree sizes still need --node; a missing file is usage.
    assert invoke("consistency", "1", "2", "--consortium", g).exit_code == 2
    assert invoke("consistency", a, str(tmp_path / "missing.json"),
                  "--consortium", g).exit_code == 2


def test_voters_after_a_membership_change_come_from_voters_from(chain: Chain,
                                                                 tmp_path: Path) -> None:
    """node-d votes only after the add: its signature counts with the membership proofs of a
    later receipt (``--voters-from``), not with the genesis voters alone."""
    from ledger.store import LedgerStore

    height = chain.heights["after_add"]
    ev = fork(chain, height, signer="node-d")
    path = write(tmp_path, ev)
    refused(chain, tmp_path, ev, "no valid signature by a voter")
    store = LedgerStore.open(chain.data, chain.genesis)
    try:
        receipt = json.loads(json.dumps(store.receipt(chain.entry_ids[-1])))
    finally:
        store.close()
    rpath = write(tmp_path, receipt, "receipt.json")
    result = invoke("consistency", path, "--consortium", str(chain.genesis_file),
                    "--voters-from", rpath, "--json")
    assert result.exit_code == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["second_signers"] == ["node-d"] and out["proposer"] == "node-a"
