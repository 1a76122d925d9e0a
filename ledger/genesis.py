"""Genesis file → consortium map → genesis block → chain id (DESIGN §2, "Genesis and the chain id").

The genesis file (``genesis.toml``) names the chain, its hash, its limits, which role may sign
which kind of entry, the first nodes and the first identities. It becomes the ``consortium``
map by fixed rules, so that any implementation derives the same bytes:

* exactly the keys DESIGN §2 lists, at every level; any other key is refused, naming it;
* ``public_key`` and ``tls_fingerprint`` become bytes (they are lowercase hex in the file);
  everything else is kept as written; lists keep their file order.

The genesis block's header commits to ``H(canonical(consortium))`` and the chain id is
``H(canonical(genesis header))``. Whoever pins the chain id therefore pins every genesis key.

Public names: :class:`Params`, :class:`NodeSpec`, :class:`IdentitySpec`, :class:`Genesis`,
:func:`parse_genesis`, :func:`load_genesis`, :func:`dump_genesis`,
:func:`genesis_from_consortium`, :data:`DEFAULT_ROLES`, :data:`DEFAULT_PARAMS`, :data:`KINDS`.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import tomli_w

from ledger.crypto import (
    DIGEST_SIZE,
    HASH_ALGS,
    PUBLIC_KEY_SIZE,
    SIG_ALGS,
    H,
    check_hash_alg,
    hash_object,
    sha256,
)
from ledger.encoding import canonical
from ledger.errors import GenesisError, HashAlgorithmError

#: Every entry kind the ledger knows (DESIGN §2, "Entries"). A role may only list these.
KINDS: tuple[str, ...] = ("document", "event", "evidence", "identity", "membership", "report")

#: Rules for counting checkpoint signatures (DESIGN §2, ``receipt_quorum``).
QUORUM_RULES: tuple[str, ...] = ("majority", "two_thirds")

#: Raft roles of a node.
NODE_ROLES: tuple[str, ...] = ("voter", "learner")

#: The role whose identities approve consortium changes and administer their court.
ADMIN_ROLE = "admin"

#: The roles ``courtledger init`` writes (DESIGN §2).
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("identity", "membership"),
    "clerk": ("document",),
    "officer": ("document", "event", "evidence"),
    "judge": ("document", "event"),
    "inspector": ("report",),
}

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX_RE = re.compile(r"^[0-9a-f]*$")
_PEM_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


@dataclass(frozen=True)
class Params:
    """The chain's limits (genesis ``[params]``); all fixed for the life of the chain."""

    sig_alg: str = "ed25519"
    max_entry_bytes: int = 64 * 1024
    max_block_bytes: int = 8 * 1024 * 1024
    max_block_entries: int = 1000
    max_future_ms: int = 5 * 60 * 1000
    max_clock_skew_ms: int = 30 * 1000
    receipt_quorum: str = "majority"

    def to_map(self) -> dict[str, Any]:
        """The ``params`` part of the consortium map."""
        return {
            "sig_alg": self.sig_alg,
            "max_entry_bytes": self.max_entry_bytes,
            "max_block_bytes": self.max_block_bytes,
            "max_block_entries": self.max_block_entries,
            "max_future_ms": self.max_future_ms,
            "max_clock_skew_ms": self.max_clock_skew_ms,
            "receipt_quorum": self.receipt_quorum,
        }


#: The limits ``courtledger init`` writes.
DEFAULT_PARAMS = Params()


@dataclass(frozen=True)
class NodeSpec:
    """A court's node: its signing key, TLS identity, Raft role and address.

    ``public_key`` signs blocks and checkpoints; ``tls_fingerprint`` is the SHA-256 of the DER
    certificate in ``tls_certificate`` (PEM). ``role`` is ``voter`` or ``learner``.
    """

    id: str
    court: str
    public_key: bytes
    tls_certificate: str
    tls_fingerprint: bytes
    role: str
    raft_addr: str

    def to_map(self) -> dict[str, Any]:
        """This node as an element of the consortium map's ``nodes`` list."""
        return {
            "id": self.id,
            "court": self.court,
            "public_key": self.public_key,
            "tls_certificate": self.tls_certificate,
            "tls_fingerprint": self.tls_fingerprint,
            "role": self.role,
            "raft_addr": self.raft_addr,
        }


@dataclass(frozen=True)
class IdentitySpec:
    """A person or system that signs entries for a court (法院), with its roles and key."""

    id: str
    court: str
    roles: tuple[str, ...]
    public_key: bytes

    def to_map(self) -> dict[str, Any]:
        """This identity as an element of the consortium map's ``identities`` list."""
        return {
            "id": self.id,
            "court": self.court,
            "roles": list(self.roles),
            "public_key": self.public_key,
        }


@dataclass(frozen=True)
class Genesis:
    """A parsed, validated genesis file.

    ``roles`` maps a role to the entry kinds it may sign, in file order. Derived values:
    :attr:`consortium` (the consortium map), :attr:`header`, :attr:`block` (the genesis block)
    and :attr:`chain_id` (``H(canonical(header))``, bytes).
    """

    chain_name: str
    hash_alg: str
    genesis_time: int
    params: Params
    roles: Mapping[str, tuple[str, ...]]
    nodes: tuple[NodeSpec, ...]
    identities: tuple[IdentitySpec, ...]

    @cached_property
    def consortium(self) -> dict[str, Any]:
        """The consortium map of DESIGN §2 (fresh nested containers; do not mutate)."""
        return {
            "chain_name": self.chain_name,
            "hash_alg": self.hash_alg,
            "genesis_time": self.genesis_time,
            "params": self.params.to_map(),
            "roles": {role: list(kinds) for role, kinds in self.roles.items()},
            "nodes": [n.to_map() for n in self.nodes],
            "identities": [i.to_map() for i in self.identities],
        }

    @cached_property
    def header(self) -> dict[str, Any]:
        """The genesis block header (DESIGN §2): height 0, no entries, the empty log's root."""
        return {
            "v": 1,
            "height": 0,
            "prev": bytes(DIGEST_SIZE),
            "time": self.genesis_time,
            "first_index": 0,
            "count": 0,
            "tree_size": 0,
            # RFC 9162 §2.1.1: the hash of an empty list is the hash of the empty string.
            "root": H(self.hash_alg, b""),
            "proposer": "",
            "term": 0,
            "consortium": hash_object(self.hash_alg, self.consortium),
        }

    @property
    def block(self) -> dict[str, Any]:
        """The genesis block: the header, an empty signature and no entries."""
        return {"header": dict(self.header), "sig": b"", "entries": []}

    @cached_property
    def chain_id(self) -> bytes:
        """``H(canonical(genesis header))``: the chain's identity, pinned by verifiers."""
        return hash_object(self.hash_alg, self.header)

    def voters(self) -> list[NodeSpec]:
        """The genesis voters in file order."""
        return [n for n in self.nodes if n.role == "voter"]


# --------------------------------------------------------------------------- parsing helpers


def _fail(where: str, what: str) -> GenesisError:
    return GenesisError(f"{where}: {what}")


def _check_keys(obj: Mapping[str, Any], where: str, required: tuple[str, ...]) -> None:
    # DESIGN §2: exactly these keys. An unknown key is refused rather than ignored, because an
    # ignored key would still be unsigned by the chain id and could mislead a reader.
    for key in obj:
        if key not in required:
            raise _fail(where, f"unknown key {key!r}")
    for key in required:
        if key not in obj:
            raise _fail(where, f"missing key {key!r}")


def _str(obj: Mapping[str, Any], key: str, where: str, *, ident: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _fail(f"{where}.{key}", "must be a non-empty string")
    if ident and not _ID_RE.match(value):
        raise _fail(f"{where}.{key}", f"{value!r} is not an id (letters, digits, . _ -)")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{where}.{key}", "must be an integer")
    if value < minimum or value > 2**63 - 1:
        raise _fail(f"{where}.{key}", f"{value} is out of range (minimum {minimum})")
    return value


def _hex_bytes(value: Any, where: str, size: int, *, from_map: bool) -> bytes:
    if from_map:
        if not isinstance(value, bytes):
            raise _fail(where, "must be bytes")
        raw = value
    else:
        if not isinstance(value, str) or not _HEX_RE.match(value):
            raise _fail(where, "must be lowercase hex")
        raw = bytes.fromhex(value)
    if len(raw) != size:
        raise _fail(where, f"must be {size} bytes, got {len(raw)}")
    return raw


def pem_certificate_der(pem: str) -> bytes:
    """The DER bytes inside a PEM ``CERTIFICATE`` block; raise :class:`GenesisError` if none."""
    match = _PEM_RE.search(pem)
    if not match:
        raise GenesisError("tls_certificate: no PEM CERTIFICATE block")
    try:
        return base64.b64decode("".join(match.group(1).split()), validate=True)
    except binascii.Error as exc:
        raise GenesisError(f"tls_certificate: bad base64 in PEM: {exc}") from exc


def _parse_params(obj: Any) -> Params:
    if not isinstance(obj, Mapping):
        raise _fail("params", "must be a table")
    _check_keys(obj, "params", tuple(Params().to_map()))
    sig_alg = _str(obj, "sig_alg", "params")
    if sig_alg not in SIG_ALGS:
        raise _fail("params.sig_alg", f"{sig_alg!r} is not supported; expected one of {SIG_ALGS}")
    quorum = _str(obj, "receipt_quorum", "params")
    if quorum not in QUORUM_RULES:
        raise _fail("params.receipt_quorum", f"{quorum!r}; expected one of {QUORUM_RULES}")
    return Params(
        sig_alg=sig_alg,
        max_entry_bytes=_int(obj, "max_entry_bytes", "params", minimum=256),
        max_block_bytes=_int(obj, "max_block_bytes", "params", minimum=256),
        max_block_entries=_int(obj, "max_block_entries", "params", minimum=1),
        max_future_ms=_int(obj, "max_future_ms", "params"),
        max_clock_skew_ms=_int(obj, "max_clock_skew_ms", "params"),
        receipt_quorum=quorum,
    )


def _parse_roles(obj: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(obj, Mapping) or not obj:
        raise _fail("roles", "must be a non-empty table of role = [kinds]")
    roles: dict[str, tuple[str, ...]] = {}
    for role, kinds in obj.items():
        where = f"roles.{role}"
        if not isinstance(role, str) or not _ID_RE.match(role):
            raise _fail(where, "a role name is letters, digits, . _ -")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise _fail(where, "must be a list of entry kinds")
        for kind in kinds:
            if kind not in KINDS:
                raise _fail(where, f"unknown entry kind {kind!r}; expected one of {KINDS}")
        if len(set(kinds)) != len(kinds):
            raise _fail(where, "lists a kind twice")
        roles[role] = tuple(kinds)
    return roles


_NODE_KEYS = (
    "id",
    "court",
    "public_key",
    "tls_certificate",
    "tls_fingerprint",
    "role",
    "raft_addr",
)
_IDENTITY_KEYS = ("id", "court", "roles", "public_key")


def parse_node(obj: Any, where: str, *, from_map: bool) -> NodeSpec:
    """Parse one node table (from the TOML file, or from a consortium map if ``from_map``)."""
    if not isinstance(obj, Mapping):
        raise _fail(where, "must be a table")
    _check_keys(obj, where, _NODE_KEYS)
    role = _str(obj, "role", where)
    if role not in NODE_ROLES:
        raise _fail(f"{where}.role", f"{role!r}; expected one of {NODE_ROLES}")
    cert = obj["tls_certificate"]
    if not isinstance(cert, str):
        raise _fail(f"{where}.tls_certificate", "must be a PEM string")
    fingerprint = _hex_bytes(
        obj["tls_fingerprint"], f"{where}.tls_fingerprint", DIGEST_SIZE, from_map=from_map
    )
    # DESIGN §2: tls_fingerprint is the SHA-256 of the DER certificate. Checked here so that
    # a genesis file can never pin a certificate other than the one it carries.
    if sha256(pem_certificate_der(cert)) != fingerprint:
        raise _fail(f"{where}.tls_fingerprint", "is not the SHA-256 of tls_certificate's DER")
    return NodeSpec(
        id=_str(obj, "id", where, ident=True),
        court=_str(obj, "court", where),
        public_key=_hex_bytes(
            obj["public_key"], f"{where}.public_key", PUBLIC_KEY_SIZE, from_map=from_map
        ),
        tls_certificate=cert,
        tls_fingerprint=fingerprint,
        role=role,
        raft_addr=_str(obj, "raft_addr", where),
    )


def parse_identity(
    obj: Any, where: str, roles: Mapping[str, tuple[str, ...]], *, from_map: bool
) -> IdentitySpec:
    """Parse one identity table; every role it names must be in ``roles``."""
    if not isinstance(obj, Mapping):
        raise _fail(where, "must be a table")
    _check_keys(obj, where, _IDENTITY_KEYS)
    id_roles = obj["roles"]
    if not isinstance(id_roles, list) or not id_roles:
        raise _fail(f"{where}.roles", "must be a non-empty list of role names")
    for role in id_roles:
        if not isinstance(role, str) or role not in roles:
            raise _fail(f"{where}.roles", f"role {role!r} is not in [roles]")
    if len(set(id_roles)) != len(id_roles):
        raise _fail(f"{where}.roles", "lists a role twice")
    return IdentitySpec(
        id=_str(obj, "id", where, ident=True),
        court=_str(obj, "court", where),
        roles=tuple(id_roles),
        public_key=_hex_bytes(
            obj["public_key"], f"{where}.public_key", PUBLIC_KEY_SIZE, from_map=from_map
        ),
    )


_TOP_KEYS = ("chain_name", "hash_alg", "genesis_time", "params", "roles", "nodes", "identities")


def _from_mapping(obj: Mapping[str, Any], *, from_map: bool) -> Genesis:
    _check_keys(obj, "genesis", _TOP_KEYS)
    hash_alg = obj["hash_alg"]
    try:
        check_hash_alg(hash_alg if isinstance(hash_alg, str) else repr(hash_alg))
    except HashAlgorithmError as exc:
        raise _fail("hash_alg", f"{hash_alg!r}; expected one of {HASH_ALGS}") from exc
    params = _parse_params(obj["params"])
    roles = _parse_roles(obj["roles"])
    nodes_raw, ids_raw = obj["nodes"], obj["identities"]
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise _fail("nodes", "must be a non-empty list of [[nodes]] tables")
    if not isinstance(ids_raw, list) or not ids_raw:
        raise _fail("identities", "must be a non-empty list of [[identities]] tables")
    nodes = tuple(parse_node(n, f"nodes[{i}]", from_map=from_map) for i, n in enumerate(nodes_raw))
    identities = tuple(
        parse_identity(x, f"identities[{i}]", roles, from_map=from_map)
        for i, x in enumerate(ids_raw)
    )
    if not any(n.role == "voter" for n in nodes):
        raise _fail("nodes", "at least one node must be a voter")
    _check_unique([n.id for n in nodes], "nodes", "id")
    _check_unique([i.id for i in identities], "identities", "id")
    # A public key belongs to one identity ever, and one key serves one purpose (DESIGN §2).
    _check_unique(
        [n.public_key.hex() for n in nodes] + [i.public_key.hex() for i in identities],
        "nodes and identities",
        "public_key",
    )
    _check_unique([n.tls_fingerprint.hex() for n in nodes], "nodes", "tls_fingerprint")
    return Genesis(
        chain_name=_str(obj, "chain_name", "genesis"),
        hash_alg=hash_alg,
        genesis_time=_int(obj, "genesis_time", "genesis"),
        params=params,
        roles=roles,
        nodes=nodes,
        identities=identities,
    )


def _check_unique(values: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise _fail(where, f"{what} {value!r} appears twice")
        seen.add(value)


# --------------------------------------------------------------------------- public API


def parse_genesis(text: str) -> Genesis:
    """Parse and validate the text of a ``genesis.toml``; raise :class:`GenesisError`."""
    try:
        obj = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GenesisError(f"genesis file is not valid TOML: {exc}") from exc
    return _from_mapping(obj, from_map=False)


def load_genesis(path: str | Path) -> Genesis:
    """Read and parse a genesis file; raise :class:`GenesisError` naming the file on failure."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not UTF-8") from exc
    return parse_genesis(text)


def genesis_from_consortium(consortium: Mapping[str, Any]) -> Genesis:
    """Rebuild a :class:`Genesis` from a consortium map (as carried by a chain bundle).

    The same rules as the file apply, except that keys and fingerprints are already bytes.
    ``genesis_from_consortium(g.consortium).chain_id == g.chain_id`` for every genesis ``g``.
    """
    if not isinstance(consortium, Mapping):
        raise GenesisError("consortium: must be a map")
    return _from_mapping(consortium, from_map=True)


def dump_genesis(genesis: Genesis) -> str:
    """The TOML text of ``genesis``; ``parse_genesis(dump_genesis(g)) == g``."""
    doc: dict[str, Any] = {
        "chain_name": genesis.chain_name,
        "hash_alg": genesis.hash_alg,
        "genesis_time": genesis.genesis_time,
        "params": genesis.params.to_map(),
        "roles": {role: list(kinds) for role, kinds in genesis.roles.items()},
        "nodes": [
            {
                **n.to_map(),
                "public_key": n.public_key.hex(),
                "tls_fingerprint": n.tls_fingerprint.hex(),
            }
            for n in genesis.nodes
        ],
        "identities": [
            {**i.to_map(), "public_key": i.public_key.hex()} for i in genesis.identities
        ],
    }
    return tomli_w.dumps(doc, multiline_strings=True)


def make_genesis(
    *,
    chain_name: str,
    hash_alg: str,
    genesis_time: int,
    nodes: list[NodeSpec] | tuple[NodeSpec, ...],
    identities: list[IdentitySpec] | tuple[IdentitySpec, ...],
    params: Params = DEFAULT_PARAMS,
    roles: Mapping[str, tuple[str, ...]] | None = None,
) -> Genesis:
    """Build and validate a :class:`Genesis` from parts (what ``init`` and ``genesis build`` do).

    Validation is the file's: the result is exactly what :func:`parse_genesis` would return for
    :func:`dump_genesis` of it.
    """
    draft = Genesis(
        chain_name=chain_name,
        hash_alg=hash_alg,
        genesis_time=genesis_time,
        params=params,
        roles=dict(roles if roles is not None else DEFAULT_ROLES),
        nodes=tuple(nodes),
        identities=tuple(identities),
    )
    return genesis_from_consortium(draft.consortium)


def genesis_header_is(genesis: Genesis, header: Mapping[str, Any]) -> bool:
    """Whether ``header`` is exactly this genesis's header (byte for byte, canonically)."""
    return canonical(dict(header)) == canonical(genesis.header)


__all__ = [
    "ADMIN_ROLE",
    "DEFAULT_PARAMS",
    "DEFAULT_ROLES",
    "KINDS",
    "NODE_ROLES",
    "QUORUM_RULES",
    "Genesis",
    "IdentitySpec",
    "NodeSpec",
    "Params",
    "dump_genesis",
    "genesis_from_consortium",
    "genesis_header_is",
    "load_genesis",
    "make_genesis",
    "parse_genesis",
    "parse_identity",
    "parse_node",
    "pem_certificate_der",
]
