"""Blocks: headers, proposer signatures, ``block_hash`` and block validity (DESIGN §2, "Blocks").

header (map): ``v`` = 1, ``height``, ``prev`` (hash of the previous header), ``time`` (ms, never
decreasing), ``first_index``, ``count`` (≥ 1 after genesis), ``tree_size`` (= first_index +
count), ``root`` (the Merkle log root at tree_size), ``proposer`` (node id), ``term`` (Raft term).
block (map): ``header``, ``sig`` (the proposer's node key over ``courtledger:block:v1\\x00 +
chain_id + canonical(header)``), ``entries`` (envelopes). ``block_hash = H(canonical(header))``.

:func:`check_block` is consensus-critical and pure, like entry validity: a function of the
consortium state after the previous block, the previous header, the block, the Merkle log and
the set of entry ids already in the chain. :func:`examine_block` is the same check that does not
stop at the first problem, for auditors (``ledger.chain``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledger.consortium import ConsortiumState
from ledger.crypto import (
    DIGEST_SIZE,
    SIGNATURE_SIZE,
    TAG_BLOCK,
    Signer,
    hash_object,
    sign_object,
    verify_object,
)
from ledger.encoding import canonical
from ledger.entries import (
    IsKnown,
    VerifiedSignatures,
    check_entry,
    encode_envelope,
    entry_claims,
    entry_id,
)
from ledger.errors import EncodingError, SignatureError, ValidityError
from ledger.merkle import MerkleLog, leaf_hash

HEADER_KEYS = (
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
)
_INT_FIELDS = ("height", "time", "first_index", "count", "tree_size", "term")


class AppendLog(Protocol):
    """What block validity needs of a Merkle log: append leaf hashes and read the root.

    :class:`ledger.merkle.MerkleLog` (in memory or over the store) is one.
    """

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf hash; return its index."""
        ...

    def root(self, size: int | None = None) -> bytes:
        """The root at ``size`` leaves (default: now)."""
        ...

    @property
    def size(self) -> int:
        """Leaves in the log."""
        ...


# ============================================================================ building


def make_header(
    *,
    height: int,
    prev: bytes,
    time: int,
    first_index: int,
    count: int,
    root: bytes,
    proposer: str,
    term: int,
) -> dict[str, Any]:
    """A block header (DESIGN §2); ``tree_size`` is ``first_index + count``."""
    return {
        "v": 1,
        "height": height,
        "prev": bytes(prev),
        "time": time,
        "first_index": first_index,
        "count": count,
        "tree_size": first_index + count,
        "root": bytes(root),
        "proposer": proposer,
        "term": term,
    }


def block_hash(alg: str, header: Mapping[str, Any]) -> bytes:
    """``H(canonical(header))``: what the next block's ``prev`` and checkpoints name."""
    return hash_object(alg, header)


def sign_block(
    signer: Signer, chain_id: bytes, header: Mapping[str, Any], entries: Sequence[Any]
) -> dict[str, Any]:
    """The block ``{header, sig, entries}``, signed with the proposer's node key."""
    return {
        "header": dict(header),
        "sig": sign_object(signer, TAG_BLOCK, chain_id, header),
        "entries": list(entries),
    }


def entry_leaf(alg: str, envelope: Mapping[str, Any]) -> bytes:
    """The entry's Merkle leaf hash, ``H(0x00 || canonical(envelope))`` (DESIGN §2)."""
    return leaf_hash(encode_envelope(envelope), alg)


def _array_head(n: int) -> bytes:
    # MessagePack's smallest array family (DESIGN §2): fixarray, array 16, array 32.
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _block_size(header: Any, sig: Any, encoded_entries: list[bytes]) -> int:
    """``len(canonical(block))`` from already-encoded entries (keys: entries < header < sig)."""
    return (
        1
        + len(b"\xa7entries")
        + len(_array_head(len(encoded_entries)))
        + sum(len(e) for e in encoded_entries)
        + len(b"\xa6header")
        + len(canonical(header))
        + len(b"\xa3sig")
        + len(canonical(sig))
    )


def preview_root(log: MerkleLog, leaves: Iterable[bytes]) -> bytes:
    """The root ``log`` would have after appending ``leaves``, leaving ``log`` unchanged.

    For the block builder: it reads O(log n) stored nodes and writes nothing to the log's store.
    """
    shadow = log.shadow()
    for leaf in leaves:
        shadow.append(leaf)
    return shadow.root()


def build_block(
    signer: Signer,
    chain_id: bytes,
    prev_header: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    *,
    log: MerkleLog,
    time: int,
    proposer: str,
    term: int,
) -> dict[str, Any]:
    """Build and sign the block after ``prev_header`` holding ``entries`` (``log`` unchanged).

    ``log`` must be the log as of ``prev_header``; the new root is computed on an overlay.
    """
    alg = log.alg
    root = preview_root(log, (entry_leaf(alg, e) for e in entries))
    header = make_header(
        height=prev_header["height"] + 1,
        prev=block_hash(alg, prev_header),
        time=time,
        first_index=prev_header["tree_size"],
        count=len(entries),
        root=root,
        proposer=proposer,
        term=term,
    )
    return sign_block(signer, chain_id, header, entries)


# ============================================================================ validity


@dataclass
class BlockResult:
    """What :func:`examine_block` found.

    ``problems`` lists every failure (each a :class:`ValidityError` with height and index).
    ``entry_ids[i]`` is entry ``i``'s id, or None if it could not be computed. ``valid[i]`` says
    whether entry ``i`` passed validity on its own. ``appended`` is whether the block's leaves
    went into the log. ``header_ok`` is whether the header had the right shape (keys and
    types), so that a verifier can follow the chain past this block.
    """

    height: int | None
    problems: list[ValidityError] = field(default_factory=list)
    entry_ids: list[bytes | None] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    appended: bool = False
    header_ok: bool = False

    @property
    def ok(self) -> bool:
        """No problem at all."""
        return not self.problems


def header_shape_problem(header: Any) -> str | None:
    """Why ``header`` is not a well-formed block header map (DESIGN §2 "Blocks"), or None."""
    if not isinstance(header, dict):
        return "header must be a map"
    if set(header) != set(HEADER_KEYS):
        return f"header keys must be exactly {list(HEADER_KEYS)}; got {sorted(header)}"
    if header["v"] != 1 or isinstance(header["v"], bool):
        return f"header version {header['v']!r} is not 1"
    for name in _INT_FIELDS:
        value = header[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"header {name} must be a non-negative integer"
    for name in ("prev", "root"):
        if not isinstance(header[name], bytes) or len(header[name]) != DIGEST_SIZE:
            return f"header {name} must be {DIGEST_SIZE} bytes"
    if not isinstance(header["proposer"], str):
        return "header proposer must be a string"
    return None


def examine_block(
    state: ConsortiumState,
    chain_id: bytes,
    prev_header: Mapping[str, Any],
    block: Any,
    *,
    log: AppendLog,
    is_known: IsKnown,
    stop_at_first: bool = False,
    verified: VerifiedSignatures | None = None,
) -> BlockResult:
    """Check ``block`` as the successor of ``prev_header``, collecting every problem.

    ``state`` is the consortium after the previous block. The block's leaves are appended to
    ``log`` whenever its entries can be encoded (so an auditor can keep checking later roots),
    except with ``stop_at_first``, where they are appended only if everything else held.
    """
    alg = state.hash_alg
    params = state.params
    height_guess = prev_header.get("height", -1) + 1 if isinstance(prev_header, Mapping) else None
    result = BlockResult(height=height_guess)

    def problem(what: str, index: int | None = None) -> bool:
        result.problems.append(ValidityError(what, height=result.height, index=index))
        return stop_at_first

    if not isinstance(block, dict) or set(block) != {"header", "sig", "entries"}:
        problem("a block is a map with exactly header, sig, entries")
        return result
    header, sig, entries = block["header"], block["sig"], block["entries"]
    shape = header_shape_problem(header)
    if shape is not None:
        problem(shape)
        return result
    result.height = header["height"]
    result.header_ok = True
    if not isinstance(entries, list):
        problem("entries must be a list")
        return result

    # --- the header against the previous one (hash link, height, time, log positions) -----
    if header["height"] != prev_header["height"] + 1:
        if problem(f"height {header['height']} does not follow {prev_header['height']}"):
            return result
    if header["prev"] != block_hash(alg, prev_header):
        if problem("prev is not the hash of the previous header (hash link broken)"):
            return result
    if header["time"] < prev_header["time"]:
        if problem(f"time {header['time']} is before the previous block's {prev_header['time']}"):
            return result
    if header["term"] < prev_header["term"]:
        # Raft terms never decrease along the log (Raft §5.3: entries keep their term and
        # logs are ordered by term).
        if problem(f"term {header['term']} is below the previous block's {prev_header['term']}"):
            return result
    if header["first_index"] != prev_header["tree_size"]:
        if problem(
            f"first_index {header['first_index']} is not the previous tree_size "
            f"{prev_header['tree_size']}"
        ):
            return result
    if header["count"] != len(entries) or header["count"] < 1:
        if problem(f"count {header['count']} but {len(entries)} entries (at least 1 needed)"):
            return result
    if header["tree_size"] != header["first_index"] + header["count"]:
        if problem("tree_size is not first_index + count"):
            return result
    if len(entries) > params.max_block_entries:
        if problem(f"{len(entries)} entries exceed max_block_entries {params.max_block_entries}"):
            return result
    try:
        encoded = [encode_envelope(env) for env in entries]
    except EncodingError:
        encoded = []  # an entry outside the data model: reported per entry below
    try:
        size = _block_size(header, sig, encoded) if encoded else len(canonical(block))
    except EncodingError as exc:
        problem(f"block is not encodable canonically: {exc.detail}")
        return result
    if size > params.max_block_bytes:
        if problem(f"block of {size} bytes exceeds max_block_bytes {params.max_block_bytes}"):
            return result

    # --- the proposer: a voter in force at this height, whose node key signed the header ---
    node = state.node(header["proposer"])
    if node is None or node.role != "voter":
        if problem(f"proposer {header['proposer']!r} is not a voting node at this height"):
            return result
    elif not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
        if problem(f"block sig must be {SIGNATURE_SIZE} bytes"):
            return result
    else:
        try:
            verify_object(node.public_key, TAG_BLOCK, chain_id, header, sig)
        except SignatureError as exc:
            if problem(f"proposer {node.id}'s block signature: {exc.detail}"):
                return result

    # --- every entry valid at this height, judged against the same state ------------------
    in_block: set[bytes] = set()
    claims: dict[str, int] = {}
    memberships: list[int] = []

    def known(eid: bytes) -> bool:
        return eid in in_block or is_known(eid)

    leaves: list[bytes] = []
    for i, env in enumerate(entries):
        eid: bytes | None = None
        try:
            env_bytes = encoded[i] if encoded else encode_envelope(env)
            leaves.append(leaf_hash(env_bytes, alg))
        except EncodingError as exc:
            problem(f"entry is not encodable canonically: {exc.detail}", i)
            result.entry_ids.append(None)
            result.valid.append(False)
            if stop_at_first:
                return result
            continue
        ok = True
        try:
            eid = check_entry(
                state,
                chain_id,
                env,
                block_time=header["time"],
                height=header["height"],
                index=i,
                is_known=known,
                encoded=env_bytes,
                verified=verified,
            )
        except ValidityError as exc:
            ok = False
            result.problems.append(exc)
            if stop_at_first:
                return result
            payload = env.get("payload") if isinstance(env, dict) else None
            if isinstance(payload, dict):
                try:
                    eid = entry_id(alg, payload)
                except EncodingError:
                    eid = None
        if ok:
            payload = env["payload"]
            if payload["kind"] == "membership":
                memberships.append(i)
                if len(memberships) > 1:
                    ok = False
                    # DESIGN §2: a block holds at most one membership entry (one change at a
                    # time, Raft §4.1 / etcd's single-step changes).
                    if problem(f"second membership entry (first at {memberships[0]})", i):
                        return result
            for claim in entry_claims(payload) if ok else ():
                if claim in claims:
                    ok = False
                    if problem(
                        f"{claim.split(':')[0]} also claimed by entry {claims[claim]} "
                        "in the same block",
                        i,
                    ):
                        return result
                    break
            if ok:
                for claim in entry_claims(payload):
                    claims[claim] = i
        if eid is not None:
            in_block.add(eid)
        result.entry_ids.append(eid)
        result.valid.append(ok)

    # --- the Merkle root after appending the leaves (RFC 9162 §2.1.1) ---------------------
    if stop_at_first and result.problems:
        return result
    for leaf in leaves:
        log.append(leaf)
    result.appended = True
    if len(leaves) == len(entries):
        if log.size != header["tree_size"]:
            problem(
                f"log holds {log.size} leaves after this block, header says tree_size "
                f"{header['tree_size']}"
            )
        elif log.root() != header["root"]:
            problem("root is not the Merkle root of the log after this block's entries")
    return result


def check_block(
    state: ConsortiumState,
    chain_id: bytes,
    prev_header: Mapping[str, Any],
    block: Any,
    *,
    log: AppendLog,
    is_known: IsKnown,
    verified: VerifiedSignatures | None = None,
) -> list[bytes]:
    """Validity of ``block`` after ``prev_header``; return its entry ids in order.

    Raises the first :class:`ValidityError` (with height and, for an entry, its index).
    ``state`` is the consortium after the previous block; ``log`` is the Merkle log as of the
    previous block. On success the block's leaves have been appended to ``log``. If only the
    root is wrong they have been appended too (the caller discards that log: a committed block
    that fails validity stops the node, DESIGN §3); on any other failure ``log`` is untouched.
    ``verified`` spares re-verifying entry signatures this process checked already (admission).
    """
    result = examine_block(
        state, chain_id, prev_header, block, log=log, is_known=is_known, stop_at_first=True,
        verified=verified,
    )
    if result.problems:
        raise result.problems[0]
    return [eid for eid in result.entry_ids if eid is not None]


__all__ = [
    "HEADER_KEYS",
    "AppendLog",
    "BlockResult",
    "block_hash",
    "build_block",
    "check_block",
    "header_shape_problem",
    "entry_leaf",
    "examine_block",
    "make_header",
    "preview_root",
    "sign_block",
]
