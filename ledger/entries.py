"""Entries: build, sign, decode and check payloads and envelopes (DESIGN §2, "Entries").

payload (map): ``v`` = 1, ``kind``, ``court`` (法院代字 of the signer's court), ``case`` (案号,
optional), ``time`` (ms, declared by the signer), ``nonce`` (16 bytes), ``signer`` (public key),
``body`` (map, per kind). envelope (map): ``payload``, ``sig`` over
``courtledger:entry:v1\\x00 + chain_id + canonical(payload)``. ``entry_id = H(canonical(payload))``.

Two checks, kept apart on purpose (DESIGN §2):

* :func:`check_entry` — **validity**. Consensus-critical and pure: a function of the consortium
  state before the block, the block's time and height, and the set of entry ids already in the
  chain. Every node and every auditor computes the same answer; a change here is a fork.
* :func:`admit` — **admission**. What the node accepting a submission refuses at the door
  (案号 and ``doc_no`` normal form, event field types, time against the local clock). It is free
  to evolve because a refusal never makes a block invalid: a block holding an entry that
  admission would now refuse is still valid.

Also here: the ``identity``, ``membership`` and ``report`` body rules, membership approvals
(:func:`sign_approval`), and the JSON form of envelopes for the internal API
(:func:`envelope_from_json`, :func:`envelope_to_json`, DESIGN §5's field table).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ledger.consortium import ConsortiumState, Identity
from ledger.crypto import (
    DIGEST_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    TAG_ENTRY,
    TAG_MEMBERSHIP,
    H,
    Signer,
    hash_object,
    sha256,
    sign_object,
    verify_object,
    verify_signature,
)
from ledger.encoding import canonical, decode
from ledger.errors import (
    AdmissionError,
    EncodingError,
    GenesisError,
    SignatureError,
    ValidityError,
)
from ledger.genesis import ADMIN_ROLE, KINDS, Params, pem_certificate_der

NONCE_SIZE = 16

#: Keys a payload may hold, and those it must hold (``case`` is optional).
PAYLOAD_KEYS = frozenset({"v", "kind", "court", "case", "time", "nonce", "signer", "body"})
PAYLOAD_REQUIRED = PAYLOAD_KEYS - {"case"}

IDENTITY_OPS = ("add", "rotate", "revoke")
MEMBERSHIP_OPS = ("add_learner", "promote", "remove", "update_keys")

#: Allowed keys of an ``identity`` body per op: (required, optional).
_IDENTITY_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "add": (frozenset({"op", "id", "court", "roles", "public_key"}), frozenset({"approvals"})),
    "rotate": (
        frozenset({"op", "id", "court", "public_key", "new_public_key"}),
        frozenset({"roles", "approvals"}),
    ),
    "revoke": (
        frozenset({"op", "id", "court", "public_key"}),
        frozenset({"roles", "compromised_since", "approvals"}),
    ),
}

#: Allowed keys of a ``membership`` body per op: (required, optional).
_MEMBERSHIP_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "add_learner": (
        frozenset(
            {
                "op",
                "id",
                "court",
                "public_key",
                "tls_certificate",
                "tls_fingerprint",
                "raft_addr",
            }
        ),
        frozenset({"admin", "approvals"}),
    ),
    "promote": (frozenset({"op", "id", "court"}), frozenset({"approvals"})),
    "remove": (frozenset({"op", "id", "court"}), frozenset({"approvals"})),
    "update_keys": (
        frozenset({"op", "id", "court", "public_key", "tls_certificate", "tls_fingerprint"}),
        frozenset({"raft_addr", "approvals"}),
    ),
}

REPORT_KEYS = frozenset({"height", "now", "ruleset", "calendar", "findings", "count"})

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")

IsKnown = Callable[[bytes], bool]


class VerifiedSignatures:
    """Entry signatures this process has already verified, so a signature is checked once.

    The leader checks each submission's signature at admission and again when it applies the
    block holding it; a node that admitted an entry and forwarded it checks it again on apply.
    An Ed25519 verification is the largest cost of an entry, so :func:`check_entry` consults
    this set before verifying and records each signature that verified.

    Sound because the key is ``(entry id, signature)`` and the entry id is ``H(canonical
    payload)``: the same id means the same payload bytes (collision resistance, which every
    entry id already relies on), hence the same signer key and the same signed message
    ``TAG_ENTRY + chain_id + payload``; one instance serves one chain (one ``chain_id``). The
    verification is deterministic, so its answer for those bytes cannot change. Bounded (the
    oldest are forgotten first) and safe to share between the worker threads of admission and
    apply. A forgotten signature is simply verified again: this is a cache, never a rule.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: dict[tuple[bytes, bytes], None] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, eid: bytes, sig: bytes) -> bool:
        """True if this exact signature of entry ``eid`` verified here before."""
        with self._lock:
            if (eid, sig) in self._seen:
                self.hits += 1
                return True
            return False

    def add(self, eid: bytes, sig: bytes) -> None:
        """Record that ``sig`` verified for entry ``eid``."""
        with self._lock:
            self._seen[(eid, sig)] = None
            while len(self._seen) > self.capacity:
                del self._seen[next(iter(self._seen))]  # dicts keep insertion order: FIFO


# =========================================================================== building


def new_nonce() -> bytes:
    """16 random bytes from the operating system: makes each payload (and its id) unique."""
    return os.urandom(NONCE_SIZE)


def make_payload(
    kind: str,
    court: str,
    signer_public_key: bytes,
    body: Mapping[str, Any],
    time: int,
    case: str | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """Build a payload (DESIGN §2). ``case`` is omitted when None; ``nonce`` is fresh if None."""
    payload: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "court": court,
        "time": time,
        "nonce": new_nonce() if nonce is None else bytes(nonce),
        "signer": bytes(signer_public_key),
        "body": dict(body),
    }
    if case is not None:
        payload["case"] = case
    return payload


def sign_entry(signer: Signer, chain_id: bytes, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Sign ``payload`` for the chain ``chain_id`` and return the envelope ``{payload, sig}``."""
    return {"payload": dict(payload), "sig": sign_object(signer, TAG_ENTRY, chain_id, payload)}


def entry_id(alg: str, payload: Mapping[str, Any]) -> bytes:
    """``H(canonical(payload))``: the entry's identity and idempotency key."""
    return hash_object(alg, payload)


def membership_change(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``change`` that approvals sign: the body without ``approvals``."""
    return {k: v for k, v in body.items() if k != "approvals"}


def sign_approval(
    signer: Signer, identity_id: str, chain_id: bytes, change: Mapping[str, Any]
) -> dict[str, Any]:
    """An approval ``{"identity", "sig"}`` of a membership or identity change (DESIGN §2).

    The signature is over ``courtledger:membership:v1\\x00 + chain_id + canonical(change)``,
    where ``change`` is the body without ``approvals`` (stripped here if present).
    """
    sig = sign_object(signer, TAG_MEMBERSHIP, chain_id, membership_change(change))
    return {"identity": identity_id, "sig": sig}


# =========================================================================== decoding


def decode_envelope(data: bytes, params: Params) -> dict[str, Any]:
    """Decode the canonical bytes of one envelope, within ``params.max_entry_bytes``.

    Raises :class:`EncodingError` for bytes that are not canonical or too large, and
    :class:`ValidityError` for a value that is not an envelope of the right shape (the full
    validity check, with the chain state, is :func:`check_entry`).
    """
    if len(data) > params.max_entry_bytes:
        raise EncodingError(
            f"entry of {len(data)} bytes exceeds max_entry_bytes {params.max_entry_bytes}"
        )
    value = decode(data, max_size=params.max_entry_bytes)
    _check_envelope_shape(value)
    return value  # type: ignore[no-any-return]


# =========================================================================== validity


def _invalid(what: str, height: int | None, index: int | None) -> ValidityError:
    return ValidityError(what, height=height, index=index)


def _check_envelope_shape(env: Any) -> None:
    """The envelope and payload structure: keys and field types (no chain state needed)."""
    if not isinstance(env, dict):
        raise ValidityError("an envelope is a map {payload, sig}")
    if set(env) != {"payload", "sig"}:
        raise ValidityError(f"an envelope has exactly the keys payload, sig; got {sorted(env)}")
    sig = env["sig"]
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
        raise ValidityError(f"sig must be {SIGNATURE_SIZE} bytes")
    p = env["payload"]
    if not isinstance(p, dict):
        raise ValidityError("payload must be a map")
    extra = set(p) - PAYLOAD_KEYS
    if extra:
        raise ValidityError(f"payload has unknown field(s) {sorted(extra)}")
    missing = PAYLOAD_REQUIRED - set(p)
    if missing:
        raise ValidityError(f"payload lacks required field(s) {sorted(missing)}")
    if p["v"] != 1 or isinstance(p["v"], bool):
        raise ValidityError(f"payload version {p['v']!r} is not 1")
    if not isinstance(p["kind"], str) or p["kind"] not in KINDS:
        raise ValidityError(f"unknown kind {p['kind']!r}; expected one of {KINDS}")
    if not isinstance(p["court"], str) or not p["court"]:
        raise ValidityError("court must be a non-empty string")
    if "case" in p and (not isinstance(p["case"], str) or not p["case"]):
        raise ValidityError("case, when present, must be a non-empty string")
    if isinstance(p["time"], bool) or not isinstance(p["time"], int) or p["time"] < 0:
        raise ValidityError("time must be a non-negative integer (ms since the epoch)")
    if not isinstance(p["nonce"], bytes) or len(p["nonce"]) != NONCE_SIZE:
        raise ValidityError(f"nonce must be {NONCE_SIZE} bytes")
    if not isinstance(p["signer"], bytes) or len(p["signer"]) != PUBLIC_KEY_SIZE:
        raise ValidityError(f"signer must be a {PUBLIC_KEY_SIZE}-byte public key")
    if not isinstance(p["body"], dict):
        raise ValidityError("body must be a map")


#: canonical({"payload": p, "sig": s}) is these bytes around canonical(p) and the 64-byte s
#: (keys sorted: "payload" < "sig"; fixmap of 2, fixstr keys, bin8 of 64).
_ENVELOPE_HEAD = b"\x82\xa7payload"
_ENVELOPE_SIG = b"\xa3sig\xc4\x40"


def encode_envelope(envelope: Mapping[str, Any]) -> bytes:
    """``canonical(envelope)``, encoding the payload once (the hot path of block checks).

    Raises :class:`EncodingError` for a value outside the data model.
    """
    sig = envelope.get("sig") if isinstance(envelope, dict) else None
    if (
        isinstance(envelope, dict)
        and len(envelope) == 2
        and "payload" in envelope
        and isinstance(sig, bytes)
        and len(sig) == SIGNATURE_SIZE
    ):
        return _ENVELOPE_HEAD + canonical(envelope["payload"]) + _ENVELOPE_SIG + sig
    return canonical(envelope)


def check_entry(
    state: ConsortiumState,
    chain_id: bytes,
    envelope: Mapping[str, Any],
    *,
    block_time: int,
    height: int,
    index: int | None = None,
    is_known: IsKnown = lambda _id: False,
    encoded: bytes | None = None,
    verified: VerifiedSignatures | None = None,
) -> bytes:
    """Validity of one envelope in a block at ``height`` timed ``block_time``; return its id.

    ``state`` is the consortium in force for this block (after block ``height − 1``);
    ``is_known(entry_id)`` says whether an entry id is already in the chain. ``encoded`` may
    carry :func:`encode_envelope` of ``envelope`` if the caller has it (saves re-encoding).
    ``verified`` (optional) skips the signature check of a signature this process verified
    before (:class:`VerifiedSignatures`): the outcome is the same, only cheaper.
    Raises :class:`ValidityError` carrying ``height`` and ``index`` with the reason. Pure and
    deterministic: this is what every node and every auditor replays (DESIGN §2, Validity).
    """
    try:
        return _check_entry(state, chain_id, envelope, block_time, height, is_known, encoded,
                            verified)
    except ValidityError as exc:
        raise _invalid(exc.detail, height, index) from None


def _check_entry(
    state: ConsortiumState,
    chain_id: bytes,
    envelope: Mapping[str, Any],
    block_time: int,
    height: int,
    is_known: IsKnown,
    encoded: bytes | None,
    verified: VerifiedSignatures | None,
) -> bytes:
    # 1. Shape, canonical bytes and size (params.max_entry_bytes bounds the whole envelope).
    _check_envelope_shape(envelope)
    sig = envelope["sig"]
    try:
        env_bytes = encoded if encoded is not None else encode_envelope(envelope)
    except EncodingError as exc:
        raise ValidityError(f"not encodable canonically: {exc.detail}") from None
    payload_bytes = env_bytes[len(_ENVELOPE_HEAD) : -(len(_ENVELOPE_SIG) + SIGNATURE_SIZE)]
    size = len(env_bytes)
    limit = state.params.max_entry_bytes
    if size > limit:
        raise ValidityError(f"entry of {size} bytes exceeds max_entry_bytes {limit}")
    payload = envelope["payload"]
    kind = payload["kind"]

    # 2. The signer: an identity active at this height, whose roles allow the kind, in `court`.
    ident = state.identity_by_key(payload["signer"])
    if ident is None:
        raise ValidityError(f"signer key {payload['signer'].hex()[:16]}… is not an identity")
    if not ident.active:
        raise ValidityError(f"signer {ident.id} signed with a {ident.status} key")
    if kind not in state.kinds_of(ident):
        raise ValidityError(
            f"signer {ident.id} (roles {', '.join(ident.roles)}) may not sign {kind} entries"
        )
    if payload["court"] != ident.court:
        raise ValidityError(
            f"court {payload['court']} is not the signer's court {ident.court} ({ident.id})"
        )

    # 3. Not already in the chain (entry id = idempotency key).
    eid = H(state.hash_alg, payload_bytes)  # = entry_id(alg, payload)
    if is_known(eid):
        raise ValidityError(f"entry {eid.hex()} is already in the chain")

    # 4. Time: at most max_future_ms after the block's time (the leader's clock).
    if payload["time"] > block_time + state.params.max_future_ms:
        raise ValidityError(
            f"time {payload['time']} is more than max_future_ms "
            f"({state.params.max_future_ms}) after the block time {block_time}"
        )

    # 5. The signature over tag + chain id + canonical(payload).
    if verified is None or not verified.seen(eid, sig):
        try:
            verify_signature(payload["signer"], TAG_ENTRY + bytes(chain_id) + payload_bytes, sig)
        except SignatureError as exc:
            raise ValidityError(f"entry signature: {exc.detail}") from None
        if verified is not None:
            verified.add(eid, sig)

    # 6. The bodies the ledger itself interprets.
    body = payload["body"]
    if kind == "identity":
        _check_identity_body(state, chain_id, ident, body)
    elif kind == "membership":
        _check_membership_body(state, chain_id, body)
    elif kind == "report":
        _check_report_body(body, height)
    return eid


# --------------------------------------------------------------------------- body helpers


def _keys(
    body: Mapping[str, Any], table: Mapping[str, tuple[frozenset[str], frozenset[str]]], kind: str
) -> str:
    op = body.get("op")
    if not isinstance(op, str) or op not in table:
        raise ValidityError(f"{kind} op {op!r}; expected one of {tuple(table)}")
    required, optional = table[op]
    missing = required - set(body)
    if missing:
        raise ValidityError(f"{kind} {op} lacks {sorted(missing)}")
    extra = set(body) - required - optional
    if extra:
        raise ValidityError(f"{kind} {op} has unknown field(s) {sorted(extra)}")
    return op


def _ident(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValidityError(f"{what} {value!r} is not an id (letters, digits, . _ -)")
    return value


def _nonempty_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidityError(f"{what} must be a non-empty string")
    return value


def _key(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_SIZE:
        raise ValidityError(f"{what} must be a {PUBLIC_KEY_SIZE}-byte public key")
    return value


def _fresh_key(state: ConsortiumState, value: Any, what: str) -> bytes:
    key = _key(value, what)
    # DESIGN §2: a public key belongs to one identity ever (and nodes' keys are never reused).
    if state.key_known(key):
        raise ValidityError(f"{what} is already used by an identity or node; keys are never reused")
    return key


def _fresh_id(state: ConsortiumState, value: Any, what: str) -> str:
    ident = _ident(value, what)
    if state.id_used(ident):
        raise ValidityError(f"{what} {ident!r} was already used; ids are never reused")
    return ident


def _roles(state: ConsortiumState, value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValidityError(f"{what} must be a non-empty list of role names")
    for role in value:
        if not isinstance(role, str) or role not in state.roles:
            raise ValidityError(f"{what}: role {role!r} is not in the genesis [roles] table")
    if len(set(value)) != len(value):
        raise ValidityError(f"{what} lists a role twice")
    return tuple(value)


def _check_approvals(
    state: ConsortiumState, chain_id: bytes, body: Mapping[str, Any], why: str
) -> None:
    """Approvals by admins of a majority of the voting courts at this height (DESIGN §2)."""
    approvals = body.get("approvals")
    if not isinstance(approvals, list) or not approvals:
        raise ValidityError(f"{why} needs approvals by admins of a majority of voting courts")
    voting = set(state.voting_courts())
    change = membership_change(body)
    seen: set[str] = set()
    courts: set[str] = set()
    for i, approval in enumerate(approvals):
        where = f"approval {i}"
        if not isinstance(approval, dict) or set(approval) != {"identity", "sig"}:
            raise ValidityError(f"{where} must be a map {{identity, sig}}")
        who = approval["identity"]
        if not isinstance(who, str):
            raise ValidityError(f"{where}: identity must be a string")
        if who in seen:
            raise ValidityError(f"{where}: {who} approves twice")
        seen.add(who)
        ident = state.identity(who)
        if ident is None:
            raise ValidityError(f"{where}: no identity {who!r}")
        if not ident.active:
            raise ValidityError(f"{where}: {who} is {ident.status}")
        if ADMIN_ROLE not in ident.roles:
            raise ValidityError(f"{where}: {who} is not an admin")
        if ident.court not in voting:
            raise ValidityError(f"{where}: {who}'s court {ident.court} runs no voter")
        sig = approval["sig"]
        if not isinstance(sig, bytes):
            raise ValidityError(f"{where}: sig must be bytes")
        try:
            verify_object(ident.public_key, TAG_MEMBERSHIP, chain_id, change, sig)
        except SignatureError as exc:
            raise ValidityError(f"{where} by {who}: {exc.detail}") from None
        courts.add(ident.court)
    need = state.court_majority()
    if len(courts) < need:
        raise ValidityError(
            f"{why} approved by admins of {len(courts)} of {len(voting)} voting courts; "
            f"a majority needs {need}"
        )


def _check_identity_body(
    state: ConsortiumState, chain_id: bytes, signer: Identity, body: Mapping[str, Any]
) -> None:
    op = _keys(body, _IDENTITY_KEYS, "identity")
    court = _nonempty_str(body["court"], "identity court")
    target: Identity | None = None
    if op == "add":
        _fresh_id(state, body["id"], "identity id")
        _roles(state, body["roles"], "identity roles")
        _fresh_key(state, body["public_key"], "identity public_key")
    else:
        target = state.identity(_ident(body["id"], "identity id"))
        if target is None:
            raise ValidityError(f"identity {body['id']!r} does not exist")
        if not target.active:
            raise ValidityError(f"identity {target.id} is {target.status}")
        if court != target.court:
            raise ValidityError(f"identity {target.id} belongs to {target.court}, not {court}")
        if _key(body["public_key"], "identity public_key") != target.public_key:
            raise ValidityError(f"public_key is not {target.id}'s current key")
        if "roles" in body and (
            not isinstance(body["roles"], list) or tuple(body["roles"]) != target.roles
        ):
            raise ValidityError(f"roles differ from {target.id}'s roles; {op} keeps them")
        if op == "rotate":
            _fresh_key(state, body["new_public_key"], "identity new_public_key")
        elif "compromised_since" in body:
            cs = body["compromised_since"]
            if isinstance(cs, bool) or not isinstance(cs, int) or cs < 0:
                raise ValidityError("compromised_since must be a non-negative integer (ms)")
    # Who may authorise it: an admin of that court; a court without an admin yet, or a change
    # to an admin's key, needs admins of a majority of voting courts instead (DESIGN §2).
    if not state.admins_of(court):
        _check_approvals(state, chain_id, body, f"identity {op} for {court}, which has no admin,")
    elif target is not None and target.is_admin:
        _check_approvals(state, chain_id, body, f"identity {op} of admin {target.id}")
    else:
        if court != signer.court:
            raise ValidityError(
                f"identity {op} for court {court} signed by {signer.id} of {signer.court}"
            )
        if "approvals" in body:
            _check_approvals(state, chain_id, body, f"identity {op}")


def _check_tls(body: Mapping[str, Any]) -> None:
    pem = body["tls_certificate"]
    if not isinstance(pem, str):
        raise ValidityError("tls_certificate must be a PEM string")
    fp = body["tls_fingerprint"]
    if not isinstance(fp, bytes) or len(fp) != DIGEST_SIZE:
        raise ValidityError(f"tls_fingerprint must be {DIGEST_SIZE} bytes")
    try:
        der = pem_certificate_der(pem)
    except GenesisError as exc:
        raise ValidityError(exc.detail) from None
    if sha256(der) != fp:
        raise ValidityError("tls_fingerprint is not the SHA-256 of tls_certificate's DER")


def _check_membership_body(
    state: ConsortiumState, chain_id: bytes, body: Mapping[str, Any]
) -> None:
    op = _keys(body, _MEMBERSHIP_KEYS, "membership")
    court = _nonempty_str(body["court"], "membership court")
    if op == "add_learner":
        node_id = _fresh_id(state, body["id"], "node id")
        node_key = _fresh_key(state, body["public_key"], "node public_key")
        _check_tls(body)
        _nonempty_str(body["raft_addr"], "raft_addr")
        if "admin" in body:
            admin = body["admin"]
            if not isinstance(admin, dict) or set(admin) != {"id", "roles", "public_key"}:
                raise ValidityError("admin must be a map {id, roles, public_key}")
            if state.admins_of(court):
                raise ValidityError(f"court {court} already has an admin; add identities instead")
            admin_id = _fresh_id(state, admin["id"], "admin id")
            if admin_id == node_id:
                raise ValidityError("admin id equals the node id; ids are never shared")
            roles = _roles(state, admin["roles"], "admin roles")
            if ADMIN_ROLE not in roles:
                raise ValidityError(f"admin roles must include {ADMIN_ROLE!r}")
            if _fresh_key(state, admin["public_key"], "admin public_key") == node_key:
                raise ValidityError("admin public_key equals the node key; one key, one purpose")
    else:
        node = state.node(_ident(body["id"], "node id"))
        if node is None:
            raise ValidityError(f"node {body['id']!r} is not a member")
        if node.court != court:
            raise ValidityError(f"node {node.id} belongs to {node.court}, not {court}")
        if op == "promote" and node.role != "learner":
            raise ValidityError(f"node {node.id} is already a voter")
        if op == "remove" and node.role == "voter" and len(state.voters()) == 1:
            raise ValidityError(f"node {node.id} is the last voter")
        if op == "update_keys":
            key = _key(body["public_key"], "node public_key")
            if key != node.public_key:
                _fresh_key(state, key, "node public_key")
            _check_tls(body)
            if "raft_addr" in body:
                _nonempty_str(body["raft_addr"], "raft_addr")
    _check_approvals(state, chain_id, body, f"membership {op} of {body['id']}")


def _check_report_body(body: Mapping[str, Any], height: int) -> None:
    if set(body) != REPORT_KEYS:
        raise ValidityError(f"a report body has exactly the keys {sorted(REPORT_KEYS)}")
    for name in ("height", "now", "count"):
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidityError(f"report {name} must be a non-negative integer")
    if body["height"] >= height:
        raise ValidityError(
            f"report inspects height {body['height']}, not before its own block {height}"
        )
    for name in ("ruleset", "findings"):
        value = body[name]
        # Hex str, not bytes: DESIGN §5's JSON table lists the only byte fields, and these are
        # not among them.
        if not isinstance(value, str) or not _HEX64_RE.match(value):
            raise ValidityError(f"report {name} must be a 64-digit lowercase hex hash")
    cal = body["calendar"]
    if not isinstance(cal, str) or "==" not in cal:
        raise ValidityError("report calendar must be '<package>==<version>'")


def entry_claims(payload: Mapping[str, Any]) -> Iterator[str]:
    """The one-per-block names an entry claims: new ids and keys, and the identity it changes.

    Entries of one block are judged against the same state, so two of them adding the same id or
    key, or changing the same identity, would both pass alone; a block refuses such a pair.
    """
    body = payload.get("body")
    if not isinstance(body, dict):
        return
    kind = payload.get("kind")
    if kind == "identity":
        yield f"id:{body.get('id')}"
        new_key = {"add": "public_key", "rotate": "new_public_key"}.get(str(body.get("op")))
        if new_key is not None and isinstance(body.get(new_key), bytes):
            yield f"key:{body[new_key].hex()}"
    elif kind == "membership":
        yield f"id:{body.get('id')}"
        if isinstance(body.get("public_key"), bytes):
            yield f"key:{body['public_key'].hex()}"
        admin = body.get("admin")
        if isinstance(admin, dict):
            yield f"id:{admin.get('id')}"
            if isinstance(admin.get("public_key"), bytes):
                yield f"key:{admin['public_key'].hex()}"


# =========================================================================== admission


def admit(
    envelope: Mapping[str, Any],
    *,
    state: ConsortiumState,
    chain_id: bytes,
    now_ms: int,
    is_known: IsKnown = lambda _id: False,
    verified: VerifiedSignatures | None = None,
) -> bytes:
    """The node's checks on a submission; return its entry id.

    Admission (raises :class:`AdmissionError`): 案号 and ``doc_no`` in normal form, document
    and evidence body fields, event bodies per domain/events.md, time against the local clock.
    Then validity against the current state as if in the next block timed ``now_ms`` (raises
    :class:`ValidityError`). Admission may change between releases without a fork: it never
    enters :func:`check_entry`.
    """
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("payload"), Mapping):
        raise AdmissionError("not an envelope {payload, sig}")
    payload = envelope["payload"]
    _admit_payload(payload, state, now_ms)
    return check_entry(
        state,
        chain_id,
        envelope,
        block_time=now_ms,
        height=state.height + 1,
        index=None,
        is_known=is_known,
        verified=verified,
    )


def _admit_payload(payload: Mapping[str, Any], state: ConsortiumState, now_ms: int) -> None:
    from ledger.caseno import check_normalised
    from ledger.eventschema import check_event_body

    if "case" in payload:
        check_normalised(payload["case"], "case")
    time = payload.get("time")
    skew = state.params.max_clock_skew_ms
    if isinstance(time, int) and not isinstance(time, bool) and time > now_ms + skew:
        raise AdmissionError(
            f"time {time} is ahead of this node's clock {now_ms} by more than {skew} ms"
        )
    body = payload.get("body")
    kind = payload.get("kind")
    if not isinstance(body, Mapping):
        raise AdmissionError("body must be a map")
    if kind == "document":
        _admit_document(body)
    elif kind == "evidence":
        _admit_evidence(body)
    elif kind == "event":
        check_event_body(body)
        occurred = body.get("occurred_at")
        # domain/events.md: an occurred_at later than the block time plus one hour is refused
        # at admission (and reported as LATE-02 if it is on chain anyway).
        if isinstance(occurred, int) and occurred > now_ms + 3_600_000:
            raise AdmissionError(f"occurred_at {occurred} is more than an hour in the future")


def _need(body: Mapping[str, Any], name: str, types: type | tuple[type, ...], kind: str) -> Any:
    value = body.get(name)
    if value is None or isinstance(value, bool) and types is int or not isinstance(value, types):
        raise AdmissionError(f"{kind} body: {name} is required and must be {_tname(types)}")
    return value


def _tname(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


def _digest(body: Mapping[str, Any], name: str, kind: str, *, required: bool) -> None:
    if name not in body and not required:
        return
    value = body.get(name)
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise AdmissionError(f"{kind} body: {name} must be {DIGEST_SIZE} bytes")


def _admit_document(body: Mapping[str, Any]) -> None:
    """domain/README.md: ``doc_type``, ``doc_no``, ``sha256``, ``size``, ``media_type``,
    optional ``title`` (and ``sm3``, DESIGN §2)."""
    from ledger.caseno import check_normalised

    _need(body, "doc_type", str, "document")
    check_normalised(_need(body, "doc_no", str, "document"), "doc_no")
    _digest(body, "sha256", "document", required=True)
    _digest(body, "sm3", "document", required=False)
    if _need(body, "size", int, "document") < 0:
        raise AdmissionError("document body: size must not be negative")
    _need(body, "media_type", str, "document")
    if "title" in body and not isinstance(body["title"], str):
        raise AdmissionError("document body: title must be a string")


def _admit_evidence(body: Mapping[str, Any]) -> None:
    """domain/README.md: ``sha256``, ``media_type``, ``size``, ``captured_at``, ``location``
    {``lat_e6``, ``lon_e6``}, ``device``, ``officers``, optional ``notary``."""
    _digest(body, "sha256", "evidence", required=True)
    _digest(body, "sm3", "evidence", required=False)
    _need(body, "media_type", str, "evidence")
    if _need(body, "size", int, "evidence") < 0:
        raise AdmissionError("evidence body: size must not be negative")
    _need(body, "captured_at", int, "evidence")
    if "location" in body:
        loc = body["location"]
        if (
            not isinstance(loc, Mapping)
            or set(loc) != {"lat_e6", "lon_e6"}
            or not all(isinstance(loc[k], int) and not isinstance(loc[k], bool) for k in loc)
        ):
            raise AdmissionError("evidence body: location must be {lat_e6, lon_e6} integers")
    if "device" in body and not isinstance(body["device"], str):
        raise AdmissionError("evidence body: device must be a string")
    officers = body.get("officers", [])
    if not isinstance(officers, list) or not all(isinstance(o, str) for o in officers):
        raise AdmissionError("evidence body: officers must be a list of strings")


# =========================================================================== JSON (DESIGN §5)

#: DESIGN §5: exactly these fields are bytes, written as lowercase hex in JSON.
JSON_HEX_PAYLOAD = frozenset({"nonce", "signer"})
JSON_HEX_BODY = frozenset({"sha256", "sm3", "public_key", "new_public_key", "tls_fingerprint"})
JSON_HEX_BODY_LISTS = frozenset({"doc_refs", "evidence_refs", "links"})
_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")


class JSONEntryError(AdmissionError):
    """A JSON envelope that does not follow DESIGN §5's field table."""

    code = "bad_json"


def _from_hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value):
        raise JSONEntryError(f"{where} must be lowercase hex")
    return bytes.fromhex(value)


def _plain_from_json(value: Any, where: str) -> Any:
    """A JSON value with no byte fields: str, int, bool, lists and maps of them."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, list):
        return [_plain_from_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain_from_json(v, f"{where}.{k}") for k, v in value.items()}
    if value is None:
        raise JSONEntryError(f"{where} is null; omit an absent field instead")
    if isinstance(value, float):
        raise JSONEntryError(f"{where} is a float; use integers")
    raise JSONEntryError(f"{where} has an unsupported JSON type {type(value).__name__}")


def _body_from_json(body: Any) -> Any:
    if not isinstance(body, dict):
        raise JSONEntryError("payload.body must be an object")
    out: dict[str, Any] = {}
    for name, value in body.items():
        where = f"payload.body.{name}"
        if name in JSON_HEX_BODY:
            out[name] = _from_hex(value, where)
        elif name in JSON_HEX_BODY_LISTS:
            if not isinstance(value, list):
                raise JSONEntryError(f"{where} must be a list of hex strings")
            out[name] = [_from_hex(v, f"{where}[{i}]") for i, v in enumerate(value)]
        elif name == "admin" and isinstance(value, dict):
            admin = _plain_from_json(value, where)
            if "public_key" in admin:
                admin["public_key"] = _from_hex(value["public_key"], f"{where}.public_key")
            out[name] = admin
        elif name == "approvals" and isinstance(value, list):
            approvals = []
            for i, a in enumerate(value):
                if not isinstance(a, dict):
                    raise JSONEntryError(f"{where}[{i}] must be an object")
                item = _plain_from_json(a, f"{where}[{i}]")
                if "sig" in item:
                    item["sig"] = _from_hex(a["sig"], f"{where}[{i}].sig")
                approvals.append(item)
            out[name] = approvals
        else:
            out[name] = _plain_from_json(value, where)
    return out


def envelope_from_json(obj: Any) -> dict[str, Any]:
    """Convert the JSON form ``{"payload": {...}, "sig": "<hex>"}`` to an envelope.

    Exactly DESIGN §5's fields are hex-decoded to bytes; every other string stays a str.
    Raises :class:`JSONEntryError` (an :class:`AdmissionError`) naming the offending field.
    """
    if not isinstance(obj, dict) or set(obj) != {"payload", "sig"}:
        raise JSONEntryError('an entry is {"payload": {...}, "sig": "<hex>"}')
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise JSONEntryError("payload must be an object")
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name in JSON_HEX_PAYLOAD:
            out[name] = _from_hex(value, f"payload.{name}")
        elif name == "body":
            out[name] = _body_from_json(value)
        else:
            out[name] = _plain_from_json(value, f"payload.{name}")
    return {"payload": out, "sig": _from_hex(obj["sig"], "sig")}


def _plain_to_json(value: Any, where: str) -> Any:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, list):
        return [_plain_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _plain_to_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, bytes):
        raise JSONEntryError(f"{where} is bytes, which DESIGN §5's JSON form does not allow there")
    raise JSONEntryError(f"{where} has an unsupported type {type(value).__name__}")


def _to_hex(value: Any, where: str) -> str:
    if not isinstance(value, bytes):
        raise JSONEntryError(f"{where} must be bytes")
    return value.hex()


def envelope_to_json(env: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of an envelope (inverse of :func:`envelope_from_json`)."""
    payload = env["payload"]
    out: dict[str, Any] = {}
    for name, value in payload.items():
        if name in JSON_HEX_PAYLOAD:
            out[name] = _to_hex(value, f"payload.{name}")
        elif name == "body":
            body: dict[str, Any] = {}
            for bname, bvalue in value.items():
                where = f"payload.body.{bname}"
                if bname in JSON_HEX_BODY:
                    body[bname] = _to_hex(bvalue, where)
                elif bname in JSON_HEX_BODY_LISTS:
                    body[bname] = [_to_hex(v, f"{where}[{i}]") for i, v in enumerate(bvalue)]
                elif bname == "admin" and isinstance(bvalue, dict):
                    admin = {k: v for k, v in bvalue.items() if k != "public_key"}
                    body[bname] = _plain_to_json(admin, where)
                    if "public_key" in bvalue:
                        body[bname]["public_key"] = _to_hex(bvalue["public_key"], where)
                elif bname == "approvals" and isinstance(bvalue, list):
                    items = []
                    for i, a in enumerate(bvalue):
                        item = _plain_to_json({k: v for k, v in a.items() if k != "sig"}, where)
                        if "sig" in a:
                            item["sig"] = _to_hex(a["sig"], f"{where}[{i}].sig")
                        items.append(item)
                    body[bname] = items
                else:
                    body[bname] = _plain_to_json(bvalue, where)
            out[name] = body
        else:
            out[name] = _plain_to_json(value, f"payload.{name}")
    return {"payload": out, "sig": _to_hex(env["sig"], "sig")}


__all__ = [
    "IDENTITY_OPS",
    "KINDS",
    "MEMBERSHIP_OPS",
    "NONCE_SIZE",
    "JSONEntryError",
    "admit",
    "VerifiedSignatures",
    "check_entry",
    "decode_envelope",
    "encode_envelope",
    "entry_claims",
    "entry_id",
    "envelope_from_json",
    "envelope_to_json",
    "make_payload",
    "membership_change",
    "new_nonce",
    "sign_approval",
    "sign_entry",
]
