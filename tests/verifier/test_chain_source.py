"""Inspection over a LevelDB chain (``--data DIR``) gives the findings of the events file, with
block heights in the cited entries; a ``report`` entry on that chain reproduces."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from casebook import NOW, compliant
from click.testing import CliRunner

from ledger.blocks import build_block, entry_leaf
from ledger.crypto import Ed25519Signer, sha256
from ledger.genesis import (
    DEFAULT_ROLES,
    IdentitySpec,
    NodeSpec,
    dump_genesis,
    make_genesis,
    pem_certificate_der,
)
from ledger.merkle import MerkleLog
from ledger.store import LedgerStore
from verifier.cli import inspect
from verifier.engine import inspect_records
from verifier.periods import DAY_MS
from verifier.records import Record

LATER = NOW + 400 * DAY_MS


def build(tmp: Path, records: list[Record]) -> tuple[Path, Path]:
    signer = Ed25519Signer(hashlib.sha256(b"test node").digest())
    pem = ("-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"cert").decode()
           + "\n-----END CERTIFICATE-----\n")
    node = NodeSpec(id="node-0", court="吉0102", public_key=signer.public_key(),
                    tls_certificate=pem, tls_fingerprint=sha256(pem_certificate_der(pem)),
                    role="voter", raft_addr="127.0.0.1:7000")
    ident = IdentitySpec("officer-0", "吉0102", ("officer",),
                         Ed25519Signer(b"\x05" * 32).public_key())
    recs = sorted(records, key=lambda r: r.recorded_at)
    genesis = make_genesis(chain_name="t", hash_alg="sha256",
                           genesis_time=recs[0].recorded_at - 1000, nodes=[node],
                           identities=[ident], roles=DEFAULT_ROLES)
    gpath = tmp / "genesis.toml"
    gpath.write_text(dump_genesis(genesis), encoding="utf-8")
    store = LedgerStore.open(tmp / "db", genesis, create=True)
    log, prev = MerkleLog("sha256"), genesis.header
    for i, r in enumerate(recs):  # one entry per block: block time = recording time
        entries: list[dict[str, Any]] = [{"payload": dict(r.payload), "sig": b"\x00" * 64}]
        block = build_block(signer, genesis.chain_id, prev, entries, log=log,
                            time=max(prev["time"], r.recorded_at), proposer="node-0", term=1)
        log.append(entry_leaf("sha256", entries[0]))
        store.append_block(block, raft_index=i + 1)
        prev = block["header"]
    store.close()
    return tmp / "db", gpath


def test_data_dir_matches_events_file(tmp_path: Path) -> None:
    recs = compliant().records()
    db, gpath = build(tmp_path, recs)
    r = CliRunner().invoke(inspect, ["--data", str(db), "--genesis", str(gpath), "--now",
                                     str(LATER), "--json"])
    assert r.exit_code == 0, r.output
    from_chain = json.loads(r.output)
    expected = [f.to_json() for f in inspect_records(recs, LATER).findings()]
    assert from_chain and len(from_chain) == len(expected)
    for a, b in zip(from_chain, expected, strict=True):
        assert [e["id"] for e in a["entries"]] == [e["id"] for e in b["entries"]]
        assert all("height" in e for e in a["entries"])
        assert (a["rule"], a["due"]) == (b["rule"], b["due"])


def test_data_dir_needs_its_genesis(tmp_path: Path) -> None:
    r = CliRunner().invoke(inspect, ["--data", str(tmp_path / "nothing")])
    assert r.exit_code == 2
