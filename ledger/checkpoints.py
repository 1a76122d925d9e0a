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
The equivocation file (``courtledger-equivocation/1``) is what a voter keeps when it catches a
contradiction: two checkpoint files and, when it has them, the proposer's two signed headers
(see :func:`equivocation_to_file` and :func:`verify_equivocation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.blocks import HEADER_KEYS, header_shape_problem
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
    "EQUIVOCATION_FILE_FORMAT",
    "CheckpointFile",
    "EquivocationFile",
    "EquivocationFinding",
    "Signature",
    "check_checkpoint",
    "check_header",
    "checkpoint_from_json",
    "checkpoint_to_json",
    "detect_equivocation",
    "detect_header_equivocation",
    "equivocation_from_file",
    "equivocation_to_file",
    "from_file",
    "header_from_json",
    "header_to_json",
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
    "verify_equivocation",
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


# ---------------------------------------------------------------------------------------------
# The equivocation file (JSON): the evidence a voter keeps, for anyone to check offline.

EQUIVOCATION_FILE_FORMAT = "courtledger-equivocation/1"
_HEADER_HASH_FIELDS = ("prev", "root")
_HEADER_INT_FIELDS = ("height", "time", "first_index", "count", "tree_size", "term")
_EVIDENCE_KEYS = {"format", "hash_alg", "detected_by", "detected_at", "detail", "first", "second"}


def header_to_json(header: Mapping[str, Any]) -> dict[str, Any]:
    """A block header (DESIGN §2 "Blocks") as JSON: ``prev`` and ``root`` as lowercase hex."""
    return {k: (_hex(header[k]) if k in _HEADER_HASH_FIELDS else header[k]) for k in HEADER_KEYS}


def header_from_json(obj: Any, where: str = "header") -> dict[str, Any]:
    """Parse a JSON block header strictly (exact fields, lowercase hex, integers).

    The result is the header map whose canonical bytes the proposer signed, so its hash can
    be compared with a checkpoint's ``block``.
    """
    obj = _exact_keys(obj, set(HEADER_KEYS), where)
    header = check_header(
        {k: (_from_hex(obj[k], f"{where}.{k}", DIGEST_SIZE) if k in _HEADER_HASH_FIELDS
             else obj[k]) for k in HEADER_KEYS},
        where,
    )
    return header


def check_header(header: Any, where: str = "header") -> dict[str, Any]:
    """Refuse anything but a well-formed block header map: the shape block validity requires
    (:func:`ledger.blocks.header_shape_problem`), integers that fit the canonical encoding and
    a named proposer. Form only, no signature check."""
    problem = header_shape_problem(header)
    if problem is not None:
        raise CheckpointError(f"{where}: {problem}")
    if any(header[name] > _MAX_INT for name in _HEADER_INT_FIELDS):
        raise CheckpointError(f"{where} has an integer beyond 2^63 - 1")
    if not header["proposer"]:
        raise CheckpointError(f"{where}.proposer is not a node id")
    return dict(header)


@dataclass(frozen=True)
class EquivocationFile:
    """A parsed ``courtledger-equivocation/1`` file (form only; see :func:`verify_equivocation`).

    ``first`` and ``second`` are two checkpoint files; ``headers`` holds zero, one or two
    ``(header, proposer signature)`` pairs, each the block header one of the checkpoints names.
    """

    hash_alg: str
    detected_by: str
    detected_at: int
    detail: str
    first: CheckpointFile
    second: CheckpointFile
    headers: list[tuple[dict[str, Any], bytes]]


@dataclass(frozen=True)
class EquivocationFinding:
    """What a verified equivocation file proves.

    ``first_signers``/``second_signers``: the voters whose signature over each checkpoint is
    valid; ``double_signers``: voters who signed both (each of them signed two histories);
    ``proposer``: the node that signed both headers, when the headers prove it.
    """

    detail: str
    first_signers: tuple[str, ...]
    second_signers: tuple[str, ...]
    double_signers: tuple[str, ...]
    proposer: str | None
    header_detail: str | None


def equivocation_to_file(
    hash_alg: str,
    *,
    detected_by: str,
    detected_at: int,
    detail: str,
    first: tuple[Mapping[str, Any], Iterable[Signature]],
    second: tuple[Mapping[str, Any], Iterable[Signature]],
    headers: Iterable[tuple[Mapping[str, Any], bytes]] = (),
) -> dict[str, Any]:
    """The ``courtledger-equivocation/1`` JSON object (docs/operations.md shows one).

    ``{"format", "hash_alg", "detected_by", "detected_at" (ms), "detail", "first": <checkpoint
    file>, "second": <checkpoint file>, "headers": [{"header": <JSON header>, "sig": "<hex>"}]}``
    """
    return {
        "format": EQUIVOCATION_FILE_FORMAT,
        "hash_alg": check_hash_alg(hash_alg),
        "detected_by": detected_by,
        "detected_at": detected_at,
        "detail": detail,
        "first": to_file(hash_alg, first[0], first[1]),
        "second": to_file(hash_alg, second[0], second[1]),
        "headers": [{"header": header_to_json(h), "sig": _hex(s)} for h, s in headers],
    }


def equivocation_from_file(obj: Any) -> EquivocationFile:
    """Parse a ``courtledger-equivocation/1`` JSON object strictly; raise CheckpointError."""
    if not isinstance(obj, Mapping):
        raise CheckpointError("an equivocation file is a JSON object")
    keys = set(obj)
    if not _EVIDENCE_KEYS <= keys or not keys <= _EVIDENCE_KEYS | {"headers"}:
        missing = sorted(_EVIDENCE_KEYS - keys)
        extra = sorted(str(k) for k in keys - _EVIDENCE_KEYS - {"headers"})
        raise CheckpointError(
            f"equivocation file fields wrong: missing {missing}, unexpected {extra}")
    if obj["format"] != EQUIVOCATION_FILE_FORMAT:
        raise CheckpointError(f"format {obj['format']!r} is not {EQUIVOCATION_FILE_FORMAT!r}")
    for name in ("detected_by", "detail"):
        if not isinstance(obj[name], str):
            raise CheckpointError(f"equivocation file {name} is not a string")
    at = obj["detected_at"]
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= _MAX_INT:
        raise CheckpointError("equivocation file detected_at is not a time in ms")
    try:
        first = from_file(obj["first"])
        second = from_file(obj["second"])
    except CheckpointError as exc:
        raise CheckpointError(f"equivocation file: {exc.detail}") from None
    if first.hash_alg != obj["hash_alg"] or second.hash_alg != obj["hash_alg"]:
        raise CheckpointError("equivocation file: the checkpoint files' hash_alg differ from it")
    raw = obj.get("headers", [])
    if not isinstance(raw, list) or len(raw) > 2:
        raise CheckpointError("equivocation file headers is not a list of at most two")
    headers = []
    for i, item in enumerate(raw):
        item = _exact_keys(item, {"header", "sig"}, f"headers[{i}]")
        headers.append((header_from_json(item["header"], f"headers[{i}].header"),
                        _from_hex(item["sig"], f"headers[{i}].sig", SIGNATURE_SIZE)))
    return EquivocationFile(
        hash_alg=first.hash_alg, detected_by=obj["detected_by"], detected_at=at,
        detail=obj["detail"], first=first, second=second, headers=headers,
    )


def verify_equivocation(
    ev: EquivocationFile,
    *,
    chain_id: bytes,
    hash_alg: str,
    voters_first: Iterable[tuple[str, bytes]],
    voters_second: Iterable[tuple[str, bytes]],
    node_key: Callable[[str, int], bytes | None],
) -> EquivocationFinding:
    """Check an equivocation file against a pinned chain; raise CheckpointError if it is not
    evidence.

    DESIGN §2: each checkpoint must carry at least one valid signature by a voter in force at
    its height (``voters_first``/``voters_second``, from the pinned genesis). An honest voter
    signs only the checkpoint of a block it has itself verified and applied, so two
    voter-signed checkpoints that contradict each other (:func:`detect_equivocation`) prove
    that the consortium's signed history forked: a proposer fed different blocks to different
    voters, or a voter signed what it never applied (``double_signers`` names any voter that
    signed both). A quorum is not required: with one lying leader among three voters only one
    side can reach it.

    Each header, when present, must be the block one of the checkpoints names (its hash), of
    that height, and verify under the key ``node_key(proposer, height)`` of the node it names;
    two such headers of one term and height prove that this proposer signed both
    (:func:`detect_header_equivocation`).
    """
    if ev.hash_alg != hash_alg:
        raise CheckpointError(f"the evidence's hash_alg {ev.hash_alg!r} is not the pinned "
                              f"chain's {hash_alg!r}")
    signers: list[set[str]] = []
    for name, cf, voters in (("first", ev.first, voters_first),
                             ("second", ev.second, voters_second)):
        cp = cf.checkpoint
        if cp["chain"] != chain_id:
            raise CheckpointError(f"the {name} checkpoint is of another chain "
                                  f"({cp['chain'].hex()}), not the pinned one")
        valid = verify_checkpoint_signatures(cp, cf.signatures, voters)
        if not valid:
            raise CheckpointError(
                f"the {name} checkpoint (height {cp['height']}) carries no valid signature by "
                "a voter in force at its height; not evidence")
        signers.append(valid)
    a, b = ev.first.checkpoint, ev.second.checkpoint
    found = detect_equivocation(a, b)
    if found is None:
        raise CheckpointError(
            f"the two checkpoints (height {a['height']}, tree size {a['tree_size']}; height "
            f"{b['height']}, tree size {b['tree_size']}) do not contradict each other; "
            "not equivocation")
    proposer, header_detail = _check_headers(ev, chain_id, hash_alg, node_key)
    return EquivocationFinding(
        detail=found.detail,
        first_signers=tuple(sorted(signers[0])),
        second_signers=tuple(sorted(signers[1])),
        double_signers=tuple(sorted(signers[0] & signers[1])),
        proposer=proposer,
        header_detail=header_detail,
    )


def _check_headers(
    ev: EquivocationFile,
    chain_id: bytes,
    hash_alg: str,
    node_key: Callable[[str, int], bytes | None],
) -> tuple[str | None, str | None]:
    """Verify the evidence's headers; the proposer they convict (if both) and a sentence."""
    by_block = {ev.first.checkpoint["block"]: ev.first.checkpoint,
                ev.second.checkpoint["block"]: ev.second.checkpoint}
    seen: set[bytes] = set()
    keys: list[bytes] = []
    for i, (header, sig) in enumerate(ev.headers):
        bh = hash_object(hash_alg, header)
        cp = by_block.get(bh)
        if cp is None or bh in seen:
            raise CheckpointError(f"headers[{i}] is not the block of either checkpoint "
                                  f"(hash {bh.hex()}); not evidence")
        seen.add(bh)
        if header["height"] != cp["height"]:
            raise CheckpointError(f"headers[{i}] height {header['height']} is not its "
                                  f"checkpoint's height {cp['height']}")
        key = node_key(header["proposer"], header["height"])
        if key is None:
            raise CheckpointError(f"headers[{i}] names proposer {header['proposer']!r}, not a "
                                  f"node of the consortium at height {header['height']}")
        try:
            verify_object(key, TAG_BLOCK, chain_id, header, sig)
        except SignatureError:
            raise CheckpointError(f"headers[{i}]'s signature is not proposer "
                                  f"{header['proposer']!r}'s; not evidence") from None
        keys.append(key)
    if len(ev.headers) < 2:
        return None, None
    (ha, sa), (hb, sb) = ev.headers
    if ha["proposer"] != hb["proposer"]:
        return None, (f"the two blocks have different proposers ({ha['proposer']}, "
                      f"{hb['proposer']})")
    found = detect_header_equivocation(hash_alg, chain_id, keys[0], ha, sa, hb, sb)
    if found is None:
        return None, f"the two headers are of different terms ({ha['term']}, {hb['term']})"
    return str(ha["proposer"]), found.detail
