"""Checkpoints: signing, quorum counting, the JSON file format and equivocation evidence.

Budget: under 1 s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.checkpoints import (
    detect_equivocation,
    detect_header_equivocation,
    from_file,
    has_quorum,
    make_checkpoint,
    merge_signatures,
    quorum_size,
    require_quorum,
    sign_checkpoint,
    to_file,
    verify_checkpoint_signatures,
)
from ledger.crypto import TAG_BLOCK, Ed25519Signer, sign_object
from ledger.errors import CheckpointError, EquivocationError

CHAIN = bytes(range(32))


def _signer(i: int) -> Ed25519Signer:
    return Ed25519Signer(bytes([i + 1]) * 32)


def _voters(n: int) -> list[tuple[str, bytes]]:
    return [(f"node-{i}", _signer(i).public_key()) for i in range(n)]


def _cp(height: int = 5, tree_size: int = 40, root: bytes = b"\x02" * 32) -> dict[str, Any]:
    return make_checkpoint(CHAIN, height, b"\x01" * 32, tree_size, root, 1_767_225_600_000)


def _sigs(cp: dict[str, Any], ids: list[int]) -> list[dict[str, Any]]:
    return [{"node": f"node-{i}", "sig": sign_checkpoint(_signer(i), CHAIN, cp)} for i in ids]


def test_quorum_sizes() -> None:
    assert [quorum_size(n, "majority") for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]
    # ⌊2n/3⌋+1 (DESIGN §2): 3 of 3, 3 of 4, 4 of 5, 5 of 6, 5 of 7.
    assert [quorum_size(n, "two_thirds") for n in range(1, 8)] == [1, 2, 3, 3, 4, 5, 5]
    with pytest.raises(CheckpointError):
        quorum_size(3, "most")


def test_checkpoint_has_exactly_the_design_fields() -> None:
    cp = _cp()
    assert set(cp) == {"v", "chain", "height", "block", "tree_size", "root", "time"}
    with pytest.raises(CheckpointError):
        make_checkpoint(CHAIN, 5, b"\x01" * 31, 40, b"\x02" * 32, 0)
    with pytest.raises(CheckpointError, match="smaller than its height"):
        make_checkpoint(CHAIN, 5, b"\x01" * 32, 4, b"\x02" * 32, 0)


def test_valid_signatures_counted_once_per_voter() -> None:
    cp = _cp()
    voters = _voters(4)
    sigs = _sigs(cp, [0, 1, 2])
    assert verify_checkpoint_signatures(cp, sigs, voters) == {"node-0", "node-1", "node-2"}
    assert has_quorum(cp, sigs, voters, "majority")
    assert has_quorum(cp, sigs, voters, "two_thirds")  # 3 of 4


def test_duplicates_and_non_voters_do_not_reach_a_quorum() -> None:
    cp = _cp()
    voters = _voters(3)
    one = _sigs(cp, [0])
    # The same node's signature five times, plus a signature by a node that is not a voter
    # (node-7 has a real key and signs correctly): still one valid voter.
    outsider = {"node": "node-7", "sig": sign_checkpoint(_signer(7), CHAIN, cp)}
    sigs = one * 5 + [outsider]
    assert verify_checkpoint_signatures(cp, sigs, voters) == {"node-0"}
    assert not has_quorum(cp, sigs, voters, "majority")
    # A non-voter's signature filed under a voter's name does not verify either.
    forged = {"node": "node-1", "sig": outsider["sig"]}
    assert not has_quorum(cp, [*one, forged], voters, "majority")
    with pytest.raises(CheckpointError, match="needs 2"):
        require_quorum(cp, [*one, forged], voters, "majority")


def test_two_thirds_needs_more_than_majority() -> None:
    cp = _cp()
    voters = _voters(4)
    sigs = _sigs(cp, [0, 2])
    assert not has_quorum(cp, sigs, voters, "majority")  # 2 of 4 is not a majority
    sigs = _sigs(cp, [0, 1, 2])
    assert require_quorum(cp, sigs, voters, "two_thirds") == {"node-0", "node-1", "node-2"}
    voters6 = _voters(6)
    four = _sigs(cp, [0, 1, 2, 3])
    assert has_quorum(cp, four, voters6, "majority")
    assert not has_quorum(cp, four, voters6, "two_thirds")  # needs 5 of 6


def test_signature_over_another_checkpoint_or_chain_fails() -> None:
    cp = _cp()
    other = _cp(tree_size=41)
    voters = _voters(1)
    assert verify_checkpoint_signatures(cp, _sigs(other, [0]), voters) == set()
    with pytest.raises(CheckpointError, match="another chain"):
        sign_checkpoint(_signer(0), b"\x09" * 32, cp)


def test_checkpoint_file_round_trip_and_strictness() -> None:
    cp = _cp()
    sigs = _sigs(cp, [0, 1])
    obj = json.loads(json.dumps(to_file("sha256", cp, sigs)))
    assert obj["format"] == "courtledger-checkpoint/1"
    assert obj["checkpoint"]["chain"] == CHAIN.hex()
    parsed = from_file(obj)
    assert parsed.checkpoint == cp and parsed.signatures == sigs and parsed.hash_alg == "sha256"

    def broken(mutate: Any) -> dict[str, Any]:
        o = json.loads(json.dumps(obj))
        mutate(o)
        return o

    cases = {
        "format": lambda o: o.update(format="courtledger-checkpoint/2"),
        "hash_alg": lambda o: o.update(hash_alg="md5"),
        "extra top key": lambda o: o.update(note="hi"),
        "extra checkpoint key": lambda o: o["checkpoint"].update(extra=1),
        "missing checkpoint key": lambda o: o["checkpoint"].pop("time"),
        "uppercase hex": lambda o: o["checkpoint"].update(root=CHAIN.hex().upper()),
        "short hash": lambda o: o["checkpoint"].update(block="00" * 31),
        "string height": lambda o: o["checkpoint"].update(height="5"),
        "bool height": lambda o: o["checkpoint"].update(height=True),
        "negative time": lambda o: o["checkpoint"].update(time=-1),
        "float size": lambda o: o["checkpoint"].update(tree_size=40.0),
        "version": lambda o: o["checkpoint"].update(v=2),
        "short sig": lambda o: o["signatures"][0].update(sig="ab" * 63),
        "sig extra key": lambda o: o["signatures"][0].update(extra=1),
        "empty node": lambda o: o["signatures"][0].update(node=""),
        "signatures not a list": lambda o: o.update(signatures={}),
    }
    for name, mutate in cases.items():
        with pytest.raises(CheckpointError):
            from_file(broken(mutate))
            pytest.fail(f"{name} was accepted")


def test_merge_keeps_distinct_signatures() -> None:
    cp = _cp()
    good = _sigs(cp, [0])
    bad = [{"node": "node-0", "sig": b"\x00" * 64}]
    merged = merge_signatures(bad, good + good)
    assert len(merged) == 2  # the bad one cannot push out the good one
    assert verify_checkpoint_signatures(cp, merged, _voters(1)) == {"node-0"}


def test_checkpoint_equivocation() -> None:
    a = _cp(height=5, tree_size=40, root=b"\x02" * 32)
    assert detect_equivocation(a, dict(a)) is None
    assert detect_equivocation(a, _cp(height=6, tree_size=41)) is None
    same_size = _cp(height=5, tree_size=40, root=b"\x03" * 32)
    err = detect_equivocation(a, same_size)
    assert isinstance(err, EquivocationError) and err.evidence == (a, same_size)
    other_block = dict(a, block=b"\x07" * 32)
    assert isinstance(detect_equivocation(a, other_block), EquivocationError)
    other_height_same_size = _cp(height=6, tree_size=40)
    assert isinstance(detect_equivocation(a, other_height_same_size), EquivocationError)
    other_chain = dict(same_size, chain=b"\x05" * 32)
    assert detect_equivocation(a, other_chain) is None


def test_header_equivocation() -> None:
    proposer = _signer(0)
    base = {"v": 1, "height": 9, "term": 3, "proposer": "node-0", "time": 1, "root": b"\x00" * 32}
    other = dict(base, time=2)
    sa = sign_object(proposer, TAG_BLOCK, CHAIN, base)
    sb = sign_object(proposer, TAG_BLOCK, CHAIN, other)
    pk = proposer.public_key()
    err = detect_header_equivocation("sha256", CHAIN, pk, base, sa, other, sb)
    assert isinstance(err, EquivocationError)
    assert detect_header_equivocation("sha256", CHAIN, pk, base, sa, base, sa) is None
    next_term = dict(other, term=4)
    sn = sign_object(proposer, TAG_BLOCK, CHAIN, next_term)
    assert detect_header_equivocation("sha256", CHAIN, pk, base, sa, next_term, sn) is None
    # A header signed by someone else is no evidence against this proposer.
    forged = sign_object(_signer(1), TAG_BLOCK, CHAIN, other)
    with pytest.raises(CheckpointError, match="not the proposer"):
        detect_header_equivocation("sha256", CHAIN, pk, base, sa, other, forged)


def test_hostile_checkpoint_files_only_raise_checkpoint_errors() -> None:
    import random

    cp = _cp()
    good = json.loads(json.dumps(to_file("sha256", cp, _sigs(cp, [0, 1]))))
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    junk = [None, -1, 2**64, 1.5, True, "", "0g", "00" * 33, [], {}, {"a": 1}, [None]]
    for _ in range(500):
        bad = json.loads(json.dumps(good))
        node: Any = bad
        for _ in range(rng.randrange(1, 3)):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            k = rng.choice(keys)
            if isinstance(node[k], dict | list) and rng.random() < 0.5:
                node = node[k]
                continue
            node[k] = rng.choice(junk)
            break
        try:
            from_file(bad)
        except CheckpointError:
            continue
        except Exception as exc:  # the point of the test: nothing else escapes
            pytest.fail(f"seed {seed}: {type(exc).__name__}: {exc} for {bad!r}")
