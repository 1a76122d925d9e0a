"""Checkpoints: cosigned tree heads (DESIGN §2 "Checkpoints").

A checkpoint is ``{v: 1, chain, height, block, tree_size, root, time}``: the block's hash, the
log's size and root at that block, and the block's header time. Nothing in it is node-specific,
so every voter signs identical bytes and signatures from different voters over one tree head
can be merged (the transparency-dev "witness" habit). Each voter signs with its node key
(tag ``courtledger:checkpoint:v1\\x00``). A checkpoint counts once it holds valid signatures from
``receipt_quorum`` of the voters in force at its height: ``majority`` (⌊n/2⌋+1) or
``two_thirds`` (⌊2n/3⌋+1). Duplicate signatures by one node count once; signatures by
non-voters count for nothing.

Equivocation (DESIGN §2) is two validly signed checkpoints with the same ``tree_size`` and
different roots, or the same ``height`` and different blocks; and two headers of one ``term``
and ``height`` with different hashes signed by one proposer. Both objects are kept as evidence.

The checkpoint file (``courtledger-checkpoint/1``) is the JSON form anyone can verify offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.crypto import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    TAG_BLOCK,
    TAG_CHECKPOINT,
    Signer,
    check_hash_alg,
    hash_object,
    sign_object,
    verify_object,
)
from ledger.errors import (
    CheckpointError,
    EquivocationError,
    HashAlgorithmError,
    SignatureError,
)

__all__ = [
    "CHECKPOINT_FILE_FORMAT",
    "CHECKPOINT_KEYS",
    "CheckpointFile",
    "Signature",
    "check_checkpoint",
    "checkpoint_from_json",
    "checkpoint_to_json",
    "detect_equivocation",
    "detect_header_equivocation",
    "from_file",
    "has_quorum",
    "make_checkpoint",
    "merge_signatures",
    "quorum_size",
    "require_quorum",
    "sign_checkpoint",
    "signatures_from_json",
    "signatures_to_json",
    "to_file",
    "verify_checkpoint_signatures",
]

CHECKPOINT_FILE_FORMAT = "courtledger-checkpoint/1"
CHECKPOINT_KEYS = frozenset({"v", "chain", "height", "block", "tree_size", "root", "time"})
_HASH_FIELDS = ("chain", "block", "root")
_INT_FIELDS = ("height", "tree_size", "time")
_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")
_MAX_INT = 2**63 - 1

#: One signature as stored and exchanged: ``{"node": <node id>, "sig": <64 bytes>}``.
Signature = Mapping[str, Any]


def make_checkpoint(
    chain_id: bytes, height: int, block_hash: bytes, tree_size: int, root: bytes, time: int
) -> dict[str, Any]:
    """Build the checkpoint of block ``height`` (DESIGN §2): exactly the fields voters sign."""
    cp = {
        "v": 1,
        "chain": bytes(chain_id),
        "height": height,
        "block": bytes(block_hash),
        "tree_size": tree_size,
        "root": bytes(root),
        "time": time,
    }
    check_checkpoint(cp)
    return cp


def check_checkpoint(cp: Any) -> None:
    """Refuse anything but a well-formed checkpoint map; raise :class:`CheckpointError`."""
    if not isinstance(cp, Mapping):
        raise CheckpointError("a checkpoint is a map")
    keys = set(cp)
    if keys != CHECKPOINT_KEYS:
        missing = sorted(CHECKPOINT_KEYS - keys)
        extra = sorted(str(k) for k in keys - CHECKPOINT_KEYS)
        raise CheckpointError(f"checkpoint fields wrong: missing {missing}, unexpected {extra}")
    if cp["v"] != 1 or isinstance(cp["v"], bool):
        raise CheckpointError(f"checkpoint version {cp['v']!r} is not 1")
    for name in _HASH_FIELDS:
        value = cp[name]
        if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
            raise CheckpointError(f"checkpoint {name} is not a {DIGEST_SIZE}-byte hash")
    for name in _INT_FIELDS:
        value = cp[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
            raise CheckpointError(f"checkpoint {name} {value!r} is not a non-negative integer")
    if cp["tree_size"] < cp["height"]:
        # Every block after genesis holds at least one entry (DESIGN §2 "Blocks": count ≥ 1).
        raise CheckpointError(
            f"checkpoint tree size {cp['tree_size']} is smaller than its height {cp['height']}"
        )


def sign_checkpoint(signer: Signer, chain_id: bytes, cp: Mapping[str, Any]) -> bytes:
    """Sign ``cp`` with a node key, over ``TAG_CHECKPOINT + chain_id + canonical(cp)``."""
    check_checkpoint(cp)
    if cp["chain"] != chain_id:
        raise CheckpointError("refusing to sign a checkpoint of another chain")
    return sign_object(signer, TAG_CHECKPOINT, chain_id, dict(cp))


def quorum_size(n: int, rule: str) -> int:
    """Signatures needed from ``n`` voters: ``majority`` ⌊n/2⌋+1, ``two_thirds`` ⌊2n/3⌋+1.

    DESIGN §2 ``receipt_quorum``. With ``two_thirds`` any two quorums share more than a third
    of the voters, so a rogue leader cannot get two different blocks cosigned at one height
    unless more than a third of the voters sign both (it is prevented, not just detected).
    """
    if rule == "majority":
        return n // 2 + 1
    if rule == "two_thirds":
        return (2 * n) // 3 + 1
    raise CheckpointError(f"unknown receipt_quorum {rule!r}; expected majority or two_thirds")


def _voter_keys(voters: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for node_id, public_key in voters:
        if node_id in keys:
            raise CheckpointError(f"voter {node_id!r} listed twice")
        keys[node_id] = bytes(public_key)
    return keys


def verify_checkpoint_signatures(
    cp: Mapping[str, Any], sigs: Iterable[Signature], voters: Iterable[tuple[str, bytes]]
) -> set[str]:
    """The ids of the ``voters`` whose signature over ``cp`` is valid.

    ``voters`` are the voters in force at the checkpoint's height, as ``(node_id, public_key)``.
    A node that signed twice counts once; a signature by a node that is not a voter, or one
    that does not verify, counts for nothing (it is ignored, not an error: a relay may pass on
    anything, and only the count of valid voter signatures decides).
    """
    check_checkpoint(cp)
    keys = _voter_keys(voters)
    valid: set[str] = set()
    for entry in sigs:
        if not isinstance(entry, Mapping):
            continue
        node, sig = entry.get("node"), entry.get("sig")
        if not isinstance(node, str) or node in valid or node not in keys:
            continue
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
            continue
        try:
            verify_object(keys[node], TAG_CHECKPOINT, cp["chain"], dict(cp), sig)
        except SignatureError:
            continue
        valid.add(node)
    return valid


def has_quorum(
    cp: Mapping[str, Any],
    sigs: Iterable[Signature],
    voters: Iterable[tuple[str, bytes]],
    rule: str,
) -> bool:
    """Whether ``sigs`` hold valid signatures from ``rule``'s quorum of ``voters``."""
    voter_list = list(voters)
    return len(verify_checkpoint_signatures(cp, sigs, voter_list)) >= quorum_size(
        len(voter_list), rule
    )


def require_quorum(
    cp: Mapping[str, Any],
    sigs: Iterable[Signature],
    voters: Iterable[tuple[str, bytes]],
    rule: str,
) -> set[str]:
    """Like :func:`has_quorum` but return the cosigners, or raise :class:`CheckpointError`."""
    voter_list = list(voters)
    need = quorum_size(len(voter_list), rule)
    valid = verify_checkpoint_signatures(cp, sigs, voter_list)
    if len(valid) < need:
        raise CheckpointError(
            f"checkpoint at height {cp['height']} has {len(valid)} valid voter signatures "
            f"({', '.join(sorted(valid)) or 'none'}); {rule} of {len(voter_list)} voters "
            f"needs {need}"
        )
    return valid


# ---------------------------------------------------------------------------------------------
# Equivocation.


def detect_equivocation(a: Mapping[str, Any], b: Mapping[str, Any]) -> EquivocationError | None:
    """Return the evidence if checkpoints ``a`` and ``b`` contradict each other, else ``None``.

    DESIGN §2: the same ``tree_size`` with different roots, or the same ``height`` with
    different blocks. Because every block after genesis holds at least one entry, one tree size
    also belongs to one height and one block; any disagreement there is equivocation too. The
    caller checks that both are validly signed (by whom decides who is to blame).
    """
    check_checkpoint(a)
    check_checkpoint(b)
    if a["chain"] != b["chain"]:
        return None  # two chains: nothing to compare
    evidence = (dict(a), dict(b))
    if a["height"] == b["height"] and a != b:
        return EquivocationError(
            f"two checkpoints at height {a['height']}: blocks {a['block'].hex()} and "
            f"{b['block'].hex()}",
            evidence=evidence,
        )
    if a["tree_size"] == b["tree_size"] and a != b:
        return EquivocationError(
            f"two checkpoints of tree size {a['tree_size']}: roots {a['root'].hex()} and "
            f"{b['root'].hex()}",
            evidence=evidence,
        )
    return None


def detect_header_equivocation(
    alg: str,
    chain_id: bytes,
    proposer_key: bytes,
    a: Mapping[str, Any],
    a_sig: bytes,
    b: Mapping[str, Any],
    b_sig: bytes,
) -> EquivocationError | None:
    """Evidence that one proposer signed two different headers of one term and height.

    DESIGN §2. Both signatures must verify under ``proposer_key`` (a header signed by someone
    else proves nothing against this proposer); then the same ``term``, ``height`` and
    ``proposer`` with different header hashes is equivocation.
    """
    for name, header, sig in (("first", a, a_sig), ("second", b, b_sig)):
        try:
            verify_object(proposer_key, TAG_BLOCK, chain_id, dict(header), sig)
        except SignatureError:
            raise CheckpointError(
                f"the {name} header's signature is not the proposer's; not evidence"
            ) from None
    same_slot = (
        a.get("term") == b.get("term")
        and a.get("height") == b.get("height")
        and a.get("proposer") == b.get("proposer")
    )
    if not same_slot:
        return None
    ha, hb = hash_object(alg, dict(a)), hash_object(alg, dict(b))
    if ha == hb:
        return None
    return EquivocationError(
        f"proposer {a.get('proposer')!r} signed two headers at term {a.get('term')}, height "
        f"{a.get('height')}: {ha.hex()} and {hb.hex()}",
        evidence=((dict(a), a_sig), (dict(b), b_sig)),
    )


# ---------------------------------------------------------------------------------------------
# The checkpoint file (JSON).


@dataclass(frozen=True)
class CheckpointFile:
    """A parsed ``courtledger-checkpoint/1`` file: the chain hash, checkpoint and signatures."""

    hash_alg: str
    checkpoint: dict[str, Any]
    signatures: list[dict[str, Any]]


def _hex(value: bytes) -> str:
    return bytes(value).hex()


def checkpoint_to_json(cp: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint as JSON: hashes as lowercase hex, integers as numbers."""
    check_checkpoint(cp)
    return {
        "v": 1,
        "chain": _hex(cp["chain"]),
        "height": cp["height"],
        "block": _hex(cp["block"]),
        "tree_size": cp["tree_size"],
        "root": _hex(cp["root"]),
        "time": cp["time"],
    }


def signatures_to_json(sigs: Iterable[Signature]) -> list[dict[str, Any]]:
    """Signatures as JSON ``[{"node", "sig": "<hex>"}]``."""
    return [{"node": s["node"], "sig": _hex(s["sig"])} for s in sigs]


def to_file(hash_alg: str, cp: Mapping[str, Any], sigs: Iterable[Signature]) -> dict[str, Any]:
    """The ``courtledger-checkpoint/1`` JSON object for ``cp`` and its signatures."""
    return {
        "format": CHECKPOINT_FILE_FORMAT,
        "hash_alg": check_hash_alg(hash_alg),
        "checkpoint": checkpoint_to_json(cp),
        "signatures": signatures_to_json(sigs),
    }


def _from_hex(value: Any, where: str, size: int | None) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value):
        raise CheckpointError(f"{where} is not lowercase hex")
    data = bytes.fromhex(value)
    if size is not None and len(data) != size:
        raise CheckpointError(f"{where} is {len(data)} bytes, expected {size}")
    return data


def _exact_keys(obj: Any, keys: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} is not an object")
    if set(obj) != keys:
        missing = sorted(keys - set(obj))
        extra = sorted(str(k) for k in set(obj) - keys)
        raise CheckpointError(f"{where} fields wrong: missing {missing}, unexpected {extra}")
    return obj


def checkpoint_from_json(obj: Any, where: str = "checkpoint") -> dict[str, Any]:
    """Parse a JSON checkpoint strictly (exact fields, lowercase hex, integers)."""
    obj = _exact_keys(obj, set(CHECKPOINT_KEYS), where)
    cp: dict[str, Any] = {"v": obj["v"]}
    for name in _HASH_FIELDS:
        cp[name] = _from_hex(obj[name], f"{where}.{name}", DIGEST_SIZE)
    for name in _INT_FIELDS:
        cp[name] = obj[name]
    try:
        check_checkpoint(cp)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc.detail}") from None
    return cp


def signatures_from_json(obj: Any, where: str = "signatures") -> list[dict[str, Any]]:
    """Parse JSON signatures strictly: a list of ``{"node": str, "sig": "<64-byte hex>"}``."""
    if not isinstance(obj, list):
        raise CheckpointError(f"{where} is not a list")
    sigs: list[dict[str, Any]] = []
    for i, s in enumerate(obj):
        s = _exact_keys(s, {"node", "sig"}, f"{where}[{i}]")
        if not isinstance(s["node"], str) or not s["node"]:
            raise CheckpointError(f"{where}[{i}].node is not a node id")
        sigs.append({"node": s["node"], "sig": _from_hex(s["sig"], f"{where}[{i}].sig", 64)})
    return sigs


def from_file(obj: Any) -> CheckpointFile:
    """Parse a ``courtledger-checkpoint/1`` JSON object; raise :class:`CheckpointError`.

    Only the form is checked here; whether the signatures make a quorum depends on the voters,
    which come from a pinned genesis (see :func:`require_quorum`).
    """
    obj = _exact_keys(obj, {"format", "hash_alg", "checkpoint", "signatures"}, "checkpoint file")
    if obj["format"] != CHECKPOINT_FILE_FORMAT:
        raise CheckpointError(f"format {obj['format']!r} is not {CHECKPOINT_FILE_FORMAT!r}")
    try:
        alg = check_hash_alg(obj["hash_alg"]) if isinstance(obj["hash_alg"], str) else None
    except HashAlgorithmError:
        alg = None
    if alg is None:
        raise CheckpointError(f"hash_alg {obj['hash_alg']!r} is not sha256 or sm3")
    return CheckpointFile(
        hash_alg=alg,
        checkpoint=checkpoint_from_json(obj["checkpoint"]),
        signatures=signatures_from_json(obj["signatures"]),
    )


def merge_signatures(
    existing: Sequence[Signature], new: Iterable[Signature]
) -> list[dict[str, Any]]:
    """Union of two signature lists without exact duplicates, sorted by node id then signature.

    Distinct signatures by one node are all kept: an invalid one must never push out a valid
    one, and counting (:func:`verify_checkpoint_signatures`) counts each node once anyway.
    """
    merged: dict[tuple[str, bytes], dict[str, Any]] = {}
    for s in [*existing, *new]:
        key = (str(s["node"]), bytes(s["sig"]))
        merged.setdefault(key, {"node": key[0], "sig": key[1]})
    return [merged[k] for k in sorted(merged)]
