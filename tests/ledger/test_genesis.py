"""Genesis → consortium map → genesis block → chain id (DESIGN §2)."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tomli_w

from ledger.crypto import H, hash_object
from ledger.encoding import canonical
from ledger.errors import GenesisError
from ledger.genesis import (
    DEFAULT_PARAMS,
    DEFAULT_ROLES,
    Genesis,
    dump_genesis,
    genesis_from_consortium,
    load_genesis,
    parse_genesis,
)

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_IDS = json.loads((FIXTURES / "chain-ids.json").read_text())


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_golden_chain_id(alg: str) -> None:
    g = load_genesis(FIXTURES / f"genesis-{alg}.toml")
    assert g.hash_alg == alg
    assert g.chain_id.hex() == GOLDEN_IDS[alg]
    # The chain id is the hash of the genesis header, which commits to the consortium map.
    assert g.chain_id == H(alg, canonical(g.header))
    assert g.header["consortium"] == hash_object(alg, g.consortium)


def test_golden_ids_differ_by_hash() -> None:
    assert GOLDEN_IDS["sha256"] != GOLDEN_IDS["sm3"]


def test_genesis_block_shape(h: SimpleNamespace) -> None:
    g: Genesis = h.make_test_genesis()
    block = g.block
    assert block["sig"] == b"" and block["entries"] == []
    header = block["header"]
    assert header["v"] == 1 and header["height"] == 0 and header["prev"] == bytes(32)
    assert header["time"] == g.genesis_time
    assert (header["first_index"], header["count"], header["tree_size"]) == (0, 0, 0)
    assert header["root"] == H("sha256", b"")  # RFC 9162 §2.1.1: MTH({}) = HASH()
    assert header["proposer"] == "" and header["term"] == 0
    assert sorted(header) == sorted(
        [
            "v",
            "height",
            "prev",
            "time",
            "first_index",
            "count",
            "tree_size",
            "root",
            "proposer",
            "term",
            "consortium",
        ]
    )


def test_consortium_map_has_bytes_keys_and_file_order(h: SimpleNamespace) -> None:
    g = h.make_test_genesis()
    c = g.consortium
    assert sorted(c) == sorted(
        ["chain_name", "hash_alg", "genesis_time", "params", "roles", "nodes", "identities"]
    )
    assert isinstance(c["nodes"][0]["public_key"], bytes)
    assert isinstance(c["nodes"][0]["tls_fingerprint"], bytes)
    assert isinstance(c["identities"][0]["public_key"], bytes)
    assert [n["id"] for n in c["nodes"]] == list(h.NODE_NAMES)
    assert c["params"] == DEFAULT_PARAMS.to_map()
    assert c["roles"] == {r: list(k) for r, k in DEFAULT_ROLES.items()}


def test_round_trips(h: SimpleNamespace) -> None:
    for alg in ("sha256", "sm3"):
        g = h.make_test_genesis(alg, golden=True)
        assert parse_genesis(dump_genesis(g)) == g
        again = genesis_from_consortium(g.consortium)
        assert again == g and again.chain_id == g.chain_id


# ----------------------------------------------------------------- every field changes the id


def _golden_doc() -> dict[str, Any]:
    return tomllib.loads((FIXTURES / "genesis-sha256.toml").read_text())


def _hex_flip(s: str) -> str:
    return ("1" if s[0] != "1" else "2") + s[1:]


def _mutations(h: SimpleNamespace) -> list[tuple[str, Any]]:
    """(name, function mutating a TOML doc) for every field of the genesis file."""
    spare_pem = h.fake_pem("spare")
    from ledger.crypto import sha256
    from ledger.genesis import pem_certificate_der

    spare_fp = sha256(pem_certificate_der(spare_pem)).hex()
    spare_key = h.key("spare").public_key().hex()
    muts: list[tuple[str, Any]] = [
        ("chain_name", lambda d: d.update(chain_name="courtledger-test2")),
        ("hash_alg", lambda d: d.update(hash_alg="sm3")),
        ("genesis_time", lambda d: d.update(genesis_time=d["genesis_time"] + 1)),
        ("params.sig_alg", None),  # only one value is accepted today: nothing to change to
        ("params.receipt_quorum", lambda d: d["params"].update(receipt_quorum="two_thirds")),
        ("roles.add_kind", lambda d: d["roles"]["clerk"].append("evidence")),
        ("roles.drop_kind", lambda d: d["roles"]["officer"].pop()),
        ("roles.kind_order", lambda d: d["roles"]["officer"].reverse()),
        ("roles.new_role", lambda d: d["roles"].update(auditor=["report"])),
        ("nodes.order", lambda d: d["nodes"].reverse()),
        (
            "nodes.pem+fp",
            lambda d: d["nodes"][0].update(tls_certificate=spare_pem, tls_fingerprint=spare_fp),
        ),
        ("nodes.public_key", lambda d: d["nodes"][0].update(public_key=spare_key)),
        ("nodes.role", lambda d: d["nodes"][1].update(role="learner")),
        ("nodes.raft_addr", lambda d: d["nodes"][0].update(raft_addr="127.0.0.1:1")),
        ("nodes.id", lambda d: d["nodes"][0].update(id="node-z")),
        ("nodes.court", lambda d: d["nodes"][0].update(court="沪01")),
        ("identities.order", lambda d: d["identities"].reverse()),
        ("identities.id", lambda d: d["identities"][0].update(id="admin-z")),
        ("identities.court", lambda d: d["identities"][0].update(court="沪01")),
        ("identities.roles", lambda d: d["identities"][1]["roles"].append("judge")),
        ("identities.public_key", lambda d: d["identities"][0].update(public_key=spare_key)),
        ("identities.drop", lambda d: d["identities"].pop()),
    ]
    for p in (
        "max_entry_bytes",
        "max_block_bytes",
        "max_block_entries",
        "max_future_ms",
        "max_clock_skew_ms",
    ):
        muts.append((f"params.{p}", lambda d, p=p: d["params"].update({p: d["params"][p] + 1})))
    return muts


def test_every_field_changes_the_chain_id(h: SimpleNamespace) -> None:
    base = parse_genesis(tomli_w.dumps(_golden_doc()))
    assert base.chain_id.hex() == GOLDEN_IDS["sha256"]
    seen = {base.chain_id}
    for name, mutate in _mutations(h):
        if mutate is None:
            continue
        doc = _golden_doc()
        mutate(doc)
        g = parse_genesis(tomli_w.dumps(doc))
        assert g.chain_id not in seen, f"changing {name} did not change the chain id"
        seen.add(g.chain_id)


def test_cosmetic_changes_keep_the_chain_id() -> None:
    # A TOML table is unordered: key order and formatting are not part of the consortium map.
    doc = _golden_doc()
    reordered = {k: doc[k] for k in reversed(list(doc))}
    reordered["params"] = {k: doc["params"][k] for k in reversed(list(doc["params"]))}
    assert parse_genesis(tomli_w.dumps(reordered)).chain_id.hex() == GOLDEN_IDS["sha256"]


# ----------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "where,mutate",
    [
        ("colour", lambda d: d.update(colour="red")),
        ("params", lambda d: d["params"].update(max_widgets=1)),
        ("nodes[0]", lambda d: d["nodes"][0].update(weight=1)),
        ("identities[2]", lambda d: d["identities"][2].update(email="a@b")),
    ],
)
def test_unknown_key_refused(where: str, mutate: Any) -> None:
    doc = _golden_doc()
    mutate(doc)
    with pytest.raises(GenesisError) as err:
        parse_genesis(tomli_w.dumps(doc))
    assert where in str(err.value) and "unknown key" in str(err.value)


BAD = [
    ("missing key 'genesis_time'", lambda d: d.pop("genesis_time")),
    ("hash_alg", lambda d: d.update(hash_alg="md5")),
    ("sig_alg", lambda d: d["params"].update(sig_alg="sm2")),
    ("receipt_quorum", lambda d: d["params"].update(receipt_quorum="all")),
    ("genesis_time", lambda d: d.update(genesis_time=-1)),
    ("max_block_entries", lambda d: d["params"].update(max_block_entries=0)),
    ("max_future_ms", lambda d: d["params"].update(max_future_ms="5")),
    ("unknown entry kind", lambda d: d["roles"]["clerk"].append("gossip")),
    ("not in [roles]", lambda d: d["identities"][0]["roles"].append("janitor")),
    (
        "lowercase hex",
        lambda d: d["nodes"][0].update(public_key=d["nodes"][0]["public_key"].upper()),
    ),
    ("32 bytes", lambda d: d["identities"][0].update(public_key="00" * 31)),
    (
        "not the SHA-256",
        lambda d: d["nodes"][0].update(tls_fingerprint=_hex_flip(d["nodes"][0]["tls_fingerprint"])),
    ),
    ("no PEM", lambda d: d["nodes"][0].update(tls_certificate="hello")),
    ("voter", lambda d: [n.update(role="learner") for n in d["nodes"]]),
    ("role", lambda d: d["nodes"][0].update(role="leader")),
    ("appears twice", lambda d: d["identities"][1].update(id=d["identities"][0]["id"])),
    (
        "appears twice",
        lambda d: d["identities"][1].update(public_key=d["identities"][0]["public_key"]),
    ),
    ("appears twice", lambda d: d["identities"][0].update(public_key=d["nodes"][0]["public_key"])),
    ("appears twice", lambda d: d["nodes"][1].update(id=d["nodes"][0]["id"])),
    ("non-empty", lambda d: d.update(identities=[])),
    ("not an id", lambda d: d["identities"][0].update(id="has space")),
]


@pytest.mark.parametrize("needle,mutate", BAD)
def test_bad_genesis_refused(needle: str, mutate: Any) -> None:
    doc = _golden_doc()
    mutate(doc)
    with pytest.raises(GenesisError) as err:
        parse_genesis(tomli_w.dumps(doc))
    assert needle in str(err.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GenesisError, match="not valid TOML"):
        parse_genesis("chain_name = ")
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "absent.toml")


def test_genesis_is_frozen(h: SimpleNamespace) -> None:
    g = h.make_test_genesis()
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.chain_name = "x"  # type: ignore[misc]
