"""Receipts and consistency proofs: JSON that anyone verifies offline (DESIGN §2).

A receipt (``courtledger-receipt/1``) proves that one signed entry was anchored in the chain no
later than a checkpoint's time: the entry's canonical bytes, its inclusion path under the
checkpoint's root, and the checkpoint's signatures by a quorum of the voters in force at its
height. Voters change by ``membership`` entries, so a receipt past a change carries, in
``consortium``, each membership entry since genesis with its inclusion proof under a checkpoint
signed by the voters in force before it. The verifier starts from a PINNED genesis (chain id,
``hash_alg``, genesis voters, ``receipt_quorum``: never from the receipt), applies the
membership entries in order to learn the voters at the receipt's height, and checks the rest.

Every failure is a :class:`ReceiptError` whose ``field`` names the part of the receipt that
failed (``entry``, ``checkpoint.chain``, ``consortium[2].signatures``, ...).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.checkpoints import (
    checkpoint_from_json,
    checkpoint_to_json,
    from_file,
    quorum_size,
    signatures_from_json,
    signatures_to_json,
    to_file,
    verify_checkpoint_signatures,
)
from ledger.consortium import ConsortiumState
from ledger.crypto import DIGEST_SIZE, TAG_ENTRY, hash_object, verify_object
from ledger.encoding import decode
from ledger.errors import (
    CheckpointError,
    EncodingError,
    ProofError,
    ReceiptError,
    SignatureError,
)
from ledger.genesis import Genesis
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion

__all__ = [
    "CONSISTENCY_FORMAT",
    "RECEIPT_FORMAT",
    "ConsistencyFacts",
    "ReceiptFacts",
    "build_consistency",
    "build_receipt",
    "verify_consistency_proof",
    "verify_receipt",
    "voters_after",
]

RECEIPT_FORMAT = "courtledger-receipt/1"
CONSISTENCY_FORMAT = "courtledger-consistency/1"
_RECEIPT_KEYS = {
    "format",
    "hash_alg",
    "entry",
    "entry_id",
    "leaf_index",
    "inclusion_path",
    "checkpoint",
    "signatures",
    "consortium",
}
_ELEMENT_KEYS = {"entry", "leaf_index", "inclusion_path", "checkpoint", "signatures"}
#: A receipt's entry is one envelope; nothing legitimate is near this size.
_MAX_ENTRY_BYTES = 16 * 1024 * 1024


class ReceiptSource(Protocol):
    """What :func:`build_receipt` needs of the store (``ledger.store.LedgerStore``)."""

    alg: str

    @property
    def log(self) -> Any: ...

    def entry(self, entry_id: bytes) -> tuple[dict[str, Any], int, int] | None: ...

    def entry_bytes(self, leaf: int) -> bytes: ...

    def checkpoint(self, height: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None: ...

    def checkpoint_at_or_after(
        self, height: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None: ...

    def membership_entries(self, below_height: int | None = None) -> list[tuple[int, int]]: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Building (node side).


def build_receipt(
    store: ReceiptSource, entry_id: bytes, *, consortium_proofs: bool = True
) -> dict[str, Any]:
    """The receipt JSON of a stored entry.

    The checkpoint is the one of the block holding the entry when the store has it, else the
    first stored checkpoint above (the receipt then proves "no later than" that one). The
    caller decides whether that checkpoint's signatures already make a quorum. With
    ``consortium_proofs`` every membership entry below the checkpoint's height is included with
    its proof under its own block's checkpoint (signed by the voters in force before it).
    """
    found = store.entry(entry_id)
    if found is None:
        raise ReceiptError(f"no entry {bytes(entry_id).hex()} in the chain", field="entry_id")
    _, height, leaf = found
    signed = store.checkpoint(height) or store.checkpoint_at_or_after(height)
    if signed is None:
        raise ReceiptError(
            f"entry {bytes(entry_id).hex()} (height {height}) has no checkpoint yet",
            field="checkpoint",
        )
    cp, sigs = signed
    consortium: list[dict[str, Any]] = []
    if consortium_proofs:
        for m_height, m_leaf in store.membership_entries(below_height=cp["height"]):
            m_signed = store.checkpoint(m_height)
            if m_signed is None:
                raise ReceiptError(
                    f"the membership change at height {m_height} has no stored checkpoint",
                    field="consortium",
                )
            m_cp, m_sigs = m_signed
            consortium.append(
                {
                    "entry": _b64(store.entry_bytes(m_leaf)),
                    "leaf_index": m_leaf,
                    "inclusion_path": [
                        p.hex() for p in store.log.inclusion_proof(m_leaf, m_cp["tree_size"])
                    ],
                    "checkpoint": checkpoint_to_json(m_cp),
                    "signatures": signatures_to_json(m_sigs),
                }
            )
    return {
        "format": RECEIPT_FORMAT,
        "hash_alg": store.alg,
        "entry": _b64(store.entry_bytes(leaf)),
        "entry_id": bytes(entry_id).hex(),
        "leaf_index": leaf,
        "inclusion_path": [p.hex() for p in store.log.inclusion_proof(leaf, cp["tree_size"])],
        "checkpoint": checkpoint_to_json(cp),
        "signatures": signatures_to_json(sigs),
        "consortium": consortium,
    }


class ConsistencySource(Protocol):
    """What :func:`build_consistency` needs of the store."""

    alg: str

    @property
    def log(self) -> Any: ...

    def checkpoint(self, height: int) -> tuple[dict[str, Any], list[dict[str, Any]]] | None: ...


def build_consistency(
    store: ConsistencySource, first_height: int, second_height: int
) -> dict[str, Any]:
    """The ``courtledger-consistency/1`` JSON between two stored checkpoints."""
    first, second = store.checkpoint(first_height), store.checkpoint(second_height)
    if first is None or second is None:
        missing = first_height if first is None else second_height
        raise ReceiptError(f"no stored checkpoint at height {missing}", field="checkpoint")
    old, new = first[0]["tree_size"], second[0]["tree_size"]
    if old > new:
        raise ReceiptError("the first checkpoint is later than the second", field="first")
    return {
        "format": CONSISTENCY_FORMAT,
        "first": to_file(store.alg, *first),
        "second": to_file(store.alg, *second),
        "path": [p.hex() for p in store.log.consistency_proof(old, new)],
    }


# ---------------------------------------------------------------------------------------------
# Verifying (anyone, offline).


@dataclass(frozen=True)
class ReceiptFacts:
    """What a verified receipt proves.

    The entry ``entry_id`` (``kind``, signed by ``signer`` for ``court``, about ``case``) is
    leaf ``leaf_index`` of the log, anchored no later than ``checkpoint_time`` in block
    ``height`` or earlier, as cosigned by ``cosigners`` (a quorum of the voters then).
    """

    entry_id: bytes
    kind: str
    court: str
    case: str | None
    signer: bytes
    declared_time: int
    leaf_index: int
    height: int
    tree_size: int
    root: bytes
    block_hash: bytes
    checkpoint_time: int
    cosigners: tuple[str, ...]
    voters: tuple[str, ...]
    envelope: dict[str, Any]


def _fail(field: str, detail: str) -> ReceiptError:
    return ReceiptError(detail, field=field)


def _exact(obj: Any, keys: set[str], field: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _fail(field, "is not an object")
    if set(obj) != keys:
        missing = sorted(keys - set(obj))
        extra = sorted(str(k) for k in set(obj) - keys)
        raise _fail(field, f"fields wrong: missing {missing}, unexpected {extra}")
    return obj


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _fail(field, "is not a non-negative integer")
    return value


def _hash_hex(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * DIGEST_SIZE or value != value.lower():
        raise _fail(field, f"is not {DIGEST_SIZE} bytes of lowercase hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _fail(field, "is not hex") from None


def _path(value: Any, field: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 64:
        raise _fail(field, "is not a list of at most 64 hashes")
    return [_hash_hex(v, f"{field}[{i}]") for i, v in enumerate(value)]


def _envelope(value: Any, field: str) -> tuple[dict[str, Any], bytes]:
    """Decode a base64 (RFC 4648 §4, padded) canonical envelope."""
    if not isinstance(value, str) or len(value) > _MAX_ENTRY_BYTES * 4 // 3 + 4:
        raise _fail(field, "is not a base64 string of a sensible size")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _fail(field, "is not RFC 4648 base64") from None
    if _b64(data) != value:
        raise _fail(field, "is not canonical base64 (RFC 4648 §4 with padding)")
    try:
        env = decode(data, max_size=_MAX_ENTRY_BYTES)
    except EncodingError as exc:
        raise _fail(field, f"is not a canonical envelope: {exc.detail}") from None
    if not isinstance(env, dict) or set(env) != {"payload", "sig"}:
        raise _fail(field, "is not an envelope {payload, sig}")
    payload = env["payload"]
    if not isinstance(payload, dict):
        raise _fail(field, "payload is not a map")
    for name, kind in (("kind", str), ("court", str), ("signer", bytes), ("time", int)):
        if not isinstance(payload.get(name), kind):
            raise _fail(field, f"payload.{name} is missing or mistyped")
    return env, data


def _check_entry_signature(env: Mapping[str, Any], chain_id: bytes, field: str) -> None:
    try:
        verify_object(env["payload"]["signer"], TAG_ENTRY, chain_id, env["payload"], env["sig"])
    except SignatureError as exc:
        raise _fail(field, f"entry signature: {exc.detail}") from None


def _checkpoint(value: Any, chain_id: bytes, field: str) -> dict[str, Any]:
    try:
        cp = checkpoint_from_json(value, field)
    except CheckpointError as exc:
        raise _fail(field, exc.detail) from None
    if cp["chain"] != chain_id:
        raise _fail(
            f"{field}.chain",
            f"checkpoint of chain {cp['chain'].hex()}, not the pinned {chain_id.hex()}",
        )
    return cp


def _quorum(
    cp: Mapping[str, Any],
    sigs_json: Any,
    state: ConsortiumState,
    rule: str,
    field: str,
) -> set[str]:
    try:
        sigs = signatures_from_json(sigs_json, field)
    except CheckpointError as exc:
        raise _fail(field, exc.detail) from None
    voters = [(n.id, n.public_key) for n in state.voters()]
    valid = verify_checkpoint_signatures(cp, sigs, voters)
    need = quorum_size(len(voters), rule)
    if len(valid) < need:
        raise _fail(
            field,
            f"{len(valid)} valid signatures by voters in force at height {cp['height']} "
            f"({', '.join(sorted(valid)) or 'none'}); {rule} of {len(voters)} needs {need}",
        )
    return valid


def _inclusion(
    alg: str,
    data: bytes,
    leaf_index: int,
    path: Sequence[bytes],
    cp: Mapping[str, Any],
    field: str,
) -> None:
    try:
        verify_inclusion(alg, leaf_hash(data, alg), leaf_index, cp["tree_size"], path, cp["root"])
    except ProofError as exc:
        raise _fail(field, exc.diagnostics()) from None


def voters_after(
    genesis: Genesis, consortium: Any, below_height: int, *, field: str = "consortium"
) -> ConsortiumState:
    """The consortium state in force at ``below_height``, learned from a receipt's proofs.

    Starts from the pinned genesis and applies each membership entry of ``consortium`` in
    order. Each must be included under a checkpoint of the pinned chain, below
    ``below_height``, at increasing heights, signed by a quorum of the voters in force before
    it. A change takes effect from the block after its own (DESIGN §2).
    """
    alg, chain_id = genesis.hash_alg, genesis.chain_id
    rule = genesis.params.receipt_quorum
    state = ConsortiumState.from_genesis(genesis)
    if not isinstance(consortium, list):
        raise _fail(field, "is not a list")
    last = 0
    for i, element in enumerate(consortium):
        where = f"{field}[{i}]"
        element = _exact(element, _ELEMENT_KEYS, where)
        env, data = _envelope(element["entry"], f"{where}.entry")
        payload = env["payload"]
        if payload["kind"] != "membership" or not isinstance(payload.get("body"), dict):
            raise _fail(f"{where}.entry", "is not a membership entry")
        _check_entry_signature(env, chain_id, f"{where}.entry")
        cp = _checkpoint(element["checkpoint"], chain_id, f"{where}.checkpoint")
        if not last < cp["height"] < below_height:
            raise _fail(
                f"{where}.checkpoint",
                f"height {cp['height']} is not after {last} and below {below_height}",
            )
        leaf_index = _int(element["leaf_index"], f"{where}.leaf_index")
        path = _path(element["inclusion_path"], f"{where}.inclusion_path")
        _inclusion(alg, data, leaf_index, path, cp, f"{where}.inclusion_path")
        _quorum(cp, element["signatures"], state, rule, f"{where}.signatures")
        try:
            state = state.apply_payloads(cp["height"], cp["time"], [payload])
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(f"{where}.entry", f"membership change cannot be applied: {exc}") from None
        last = cp["height"]
    return state


def verify_receipt(receipt: Any, genesis: Genesis) -> ReceiptFacts:
    """Verify a receipt offline against a pinned genesis; return what it proves.

    Raises :class:`ReceiptError` (``field`` names the failing part) for anything wrong.
    """
    alg, chain_id = genesis.hash_alg, genesis.chain_id
    r = _exact(receipt, _RECEIPT_KEYS, "receipt")
    if r["format"] != RECEIPT_FORMAT:
        raise _fail("format", f"{r['format']!r} is not {RECEIPT_FORMAT!r}")
    if r["hash_alg"] != alg:
        # The pinned genesis decides the hash; a receipt claiming another is not for this chain.
        raise _fail("hash_alg", f"{r['hash_alg']!r} but the pinned chain uses {alg!r}")
    env, data = _envelope(r["entry"], "entry")
    payload = env["payload"]
    eid = hash_object(alg, payload)
    if _hash_hex(r["entry_id"], "entry_id") != eid:
        raise _fail("entry_id", f"is not H(canonical(payload)) = {eid.hex()}")
    _check_entry_signature(env, chain_id, "entry")
    cp = _checkpoint(r["checkpoint"], chain_id, "checkpoint")
    leaf_index = _int(r["leaf_index"], "leaf_index")
    path = _path(r["inclusion_path"], "inclusion_path")
    _inclusion(alg, data, leaf_index, path, cp, "inclusion_path")
    state = voters_after(genesis, r["consortium"], cp["height"])
    cosigners = _quorum(cp, r["signatures"], state, genesis.params.receipt_quorum, "signatures")
    case = payload.get("case")
    return ReceiptFacts(
        entry_id=eid,
        kind=payload["kind"],
        court=payload["court"],
        case=case if isinstance(case, str) else None,
        signer=payload["signer"],
        declared_time=payload["time"],
        leaf_index=leaf_index,
        height=cp["height"],
        tree_size=cp["tree_size"],
        root=cp["root"],
        block_hash=cp["block"],
        checkpoint_time=cp["time"],
        cosigners=tuple(sorted(cosigners)),
        voters=tuple(n.id for n in state.voters()),
        envelope=env,
    )


@dataclass(frozen=True)
class ConsistencyFacts:
    """A verified consistency proof: the log at ``second`` extends the log at ``first``."""

    first_height: int
    first_size: int
    second_height: int
    second_size: int
    first_cosigners: tuple[str, ...]
    second_cosigners: tuple[str, ...]


def verify_consistency_proof(
    obj: Any,
    genesis: Genesis,
    *,
    first_state: ConsortiumState | None = None,
    second_state: ConsortiumState | None = None,
) -> ConsistencyFacts:
    """Verify a ``courtledger-consistency/1`` object against a pinned genesis.

    Both checkpoints must be of the pinned chain and carry a quorum of the voters in force at
    their heights: the genesis voters unless the caller learned later ones (e.g. with
    :func:`voters_after` from a receipt's ``consortium``) and passes them as states.
    """
    o = _exact(obj, {"format", "first", "second", "path"}, "consistency")
    if o["format"] != CONSISTENCY_FORMAT:
        raise _fail("format", f"{o['format']!r} is not {CONSISTENCY_FORMAT!r}")
    genesis_state = ConsortiumState.from_genesis(genesis)
    rule = genesis.params.receipt_quorum
    parsed = []
    for name, state in (("first", first_state), ("second", second_state)):
        try:
            f = from_file(o[name])
        except CheckpointError as exc:
            raise _fail(name, exc.detail) from None
        if f.hash_alg != genesis.hash_alg:
            raise _fail(
                f"{name}.hash_alg", f"{f.hash_alg!r}, the pinned chain uses {genesis.hash_alg!r}"
            )
        cp = _checkpoint(checkpoint_to_json(f.checkpoint), genesis.chain_id, f"{name}.checkpoint")
        cosigners = _quorum(
            cp, o[name]["signatures"], state or genesis_state, rule, f"{name}.signatures"
        )
        parsed.append((cp, cosigners))
    (a, a_sig), (b, b_sig) = parsed
    if a["height"] > b["height"]:
        raise _fail("first", "is later than the second checkpoint")
    path = _path(o["path"], "path")
    try:
        verify_consistency(
            genesis.hash_alg, a["tree_size"], b["tree_size"], a["root"], b["root"], path
        )
    except ProofError as exc:
        raise _fail("path", exc.diagnostics()) from None
    return ConsistencyFacts(
        first_height=a["height"],
        first_size=a["tree_size"],
        second_height=b["height"],
        second_size=b["tree_size"],
        first_cosigners=tuple(sorted(a_sig)),
        second_cosigners=tuple(sorted(b_sig)),
    )
