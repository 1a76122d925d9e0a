"""Who may sign what at a given height: the consortium state (DESIGN §2, "Entries").

A :class:`ConsortiumState` is the genesis consortium with every ``identity`` and ``membership``
entry of blocks ``1 … height`` applied. The state that judges block ``h`` is the one after block
``h − 1``: changes take effect from the NEXT block (DESIGN §2), so the entries of one block are
all judged against the same state, in any order, on every node and in every auditor.

States are values: :meth:`ConsortiumState.apply_block` returns a new state and never changes the
old one, which the chain verifier keeps for checkpoints at earlier heights. A block without
identity or membership entries returns the same object (cheap: most blocks are documents).

Identity keys: a public key belongs to one identity ever, and ids are never reused (entries'
validity refuses both). A rotated key still names its identity, with status ``rotated``; a
revoked identity's keys have status ``revoked``. Only a key whose status is ``active`` signs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ledger.genesis import ADMIN_ROLE, Genesis, NodeSpec, Params

ACTIVE = "active"
ROTATED = "rotated"
REVOKED = "revoked"


@dataclass(frozen=True)
class Identity:
    """An identity as known at some height.

    ``public_key`` is the key this record was found by (:meth:`ConsortiumState.identity_by_key`)
    or the current key (:meth:`ConsortiumState.identity`). ``status`` is that key's status:
    ``active``, ``rotated`` (the identity moved to another key) or ``revoked``.
    ``compromised_since`` (ms) is set by a revocation that says since when the key was unsafe.
    """

    id: str
    court: str
    roles: tuple[str, ...]
    public_key: bytes
    status: str = ACTIVE
    compromised_since: int | None = None
    added_height: int = 0

    @property
    def active(self) -> bool:
        """Whether this key may sign now."""
        return self.status == ACTIVE

    @property
    def is_admin(self) -> bool:
        """Whether this identity holds the ``admin`` role."""
        return ADMIN_ROLE in self.roles


@dataclass(frozen=True)
class MembershipChange:
    """One applied ``membership`` entry, for the chain's membership history."""

    height: int
    op: str
    node: str
    court: str
    entry_id: bytes | None = None


class ConsortiumState:
    """The identities, nodes, roles and params in force for the block after :attr:`height`."""

    __slots__ = (
        "chain_name",
        "hash_alg",
        "genesis_time",
        "params",
        "roles",
        "height",
        "_identities",
        "_key_owner",
        "_nodes",
        "_used_ids",
        "_used_node_keys",
        "_onboarded",
    )

    def __init__(
        self,
        *,
        chain_name: str,
        hash_alg: str,
        genesis_time: int,
        params: Params,
        roles: Mapping[str, tuple[str, ...]],
        height: int,
        identities: dict[str, Identity],
        key_owner: dict[bytes, str],
        nodes: dict[str, NodeSpec],
        used_ids: set[str],
        used_node_keys: set[bytes],
        onboarded: dict[str, int],
    ) -> None:
        self.chain_name = chain_name
        self.hash_alg = hash_alg
        self.genesis_time = genesis_time
        self.params = params
        self.roles = roles
        self.height = height
        self._identities = identities
        self._key_owner = key_owner
        self._nodes = nodes
        self._used_ids = used_ids
        self._used_node_keys = used_node_keys
        self._onboarded = onboarded

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ConsortiumState:
        """The state in force for block 1."""
        identities = {
            i.id: Identity(i.id, i.court, i.roles, i.public_key) for i in genesis.identities
        }
        nodes = {n.id: n for n in genesis.nodes}
        onboarded: dict[str, int] = {}
        for court in [i.court for i in genesis.identities] + [n.court for n in genesis.nodes]:
            onboarded.setdefault(court, genesis.genesis_time)
        return cls(
            chain_name=genesis.chain_name,
            hash_alg=genesis.hash_alg,
            genesis_time=genesis.genesis_time,
            params=genesis.params,
            roles=dict(genesis.roles),
            height=0,
            identities=identities,
            key_owner={i.public_key: i.id for i in genesis.identities},
            nodes=nodes,
            used_ids={*identities, *nodes},
            used_node_keys={n.public_key for n in genesis.nodes},
            onboarded=onboarded,
        )

    def _copy(self, height: int) -> ConsortiumState:
        return ConsortiumState(
            chain_name=self.chain_name,
            hash_alg=self.hash_alg,
            genesis_time=self.genesis_time,
            params=self.params,
            roles=self.roles,
            height=height,
            identities=dict(self._identities),
            key_owner=dict(self._key_owner),
            nodes=dict(self._nodes),
            used_ids=set(self._used_ids),
            used_node_keys=set(self._used_node_keys),
            onboarded=dict(self._onboarded),
        )

    def advance(self, height: int) -> ConsortiumState:
        """The same state, in force after block ``height`` (no changes in that block)."""
        if height == self.height:
            return self
        new = object.__new__(ConsortiumState)
        for slot in ConsortiumState.__slots__:
            object.__setattr__(new, slot, getattr(self, slot))
        new.height = height
        return new

    def apply_block(self, block: Mapping[str, Any]) -> ConsortiumState:
        """The state after a VALID ``block``; ``self`` is unchanged.

        Only ``identity`` and ``membership`` entries change anything. The block must already
        have passed validity (``ledger.blocks.check_block``): this applies, it does not judge.
        """
        header = block["header"]
        payloads = [env["payload"] for env in block["entries"]]
        return self.apply_payloads(header["height"], header["time"], payloads)

    def apply_payloads(
        self, height: int, time: int, payloads: Iterable[Mapping[str, Any]]
    ) -> ConsortiumState:
        """The state after block ``height`` (timed ``time``) whose VALID payloads are given.

        The chain verifier calls this with only the entries that passed validity, so that one
        bad entry does not stop it from following the chain.
        """
        changes = [p for p in payloads if p.get("kind") in ("identity", "membership")]
        if not changes:
            return self.advance(height)
        new = self._copy(height)
        for payload in changes:
            body = payload["body"]
            if payload["kind"] == "identity":
                new._apply_identity(body, height, time)
            else:
                new._apply_membership(body, time)
        return new

    def _apply_identity(self, body: Mapping[str, Any], height: int, time: int) -> None:
        op, ident_id = body["op"], body["id"]
        if op == "add":
            key = bytes(body["public_key"])
            self._identities[ident_id] = Identity(
                ident_id, body["court"], tuple(body["roles"]), key, added_height=height
            )
            self._key_owner[key] = ident_id
            self._used_ids.add(ident_id)
            self._onboarded.setdefault(body["court"], time)
        elif op == "rotate":
            new_key = bytes(body["new_public_key"])
            self._identities[ident_id] = replace(self._identities[ident_id], public_key=new_key)
            self._key_owner[new_key] = ident_id
        elif op == "revoke":
            self._identities[ident_id] = replace(
                self._identities[ident_id],
                status=REVOKED,
                compromised_since=body.get("compromised_since"),
            )

    def _apply_membership(self, body: Mapping[str, Any], time: int) -> None:
        op, node_id = body["op"], body["id"]
        if op == "add_learner":
            self._nodes[node_id] = NodeSpec(
                id=node_id,
                court=body["court"],
                public_key=bytes(body["public_key"]),
                tls_certificate=body["tls_certificate"],
                tls_fingerprint=bytes(body["tls_fingerprint"]),
                role="learner",
                raft_addr=body["raft_addr"],
            )
            self._used_ids.add(node_id)
            self._used_node_keys.add(bytes(body["public_key"]))
            self._onboarded.setdefault(body["court"], time)
            admin = body.get("admin")
            if admin is not None:
                key = bytes(admin["public_key"])
                self._identities[admin["id"]] = Identity(
                    admin["id"], body["court"], tuple(admin["roles"]), key, added_height=self.height
                )
                self._key_owner[key] = admin["id"]
                self._used_ids.add(admin["id"])
        elif op == "promote":
            self._nodes[node_id] = replace(self._nodes[node_id], role="voter")
        elif op == "remove":
            del self._nodes[node_id]
        elif op == "update_keys":
            node = self._nodes[node_id]
            self._nodes[node_id] = replace(
                node,
                public_key=bytes(body["public_key"]),
                tls_certificate=body["tls_certificate"],
                tls_fingerprint=bytes(body["tls_fingerprint"]),
                raft_addr=body.get("raft_addr", node.raft_addr),
            )
            self._used_node_keys.add(bytes(body["public_key"]))

    # ------------------------------------------------------------------ queries

    def identity(self, identity_id: str) -> Identity | None:
        """The identity with this id (current key and status), or None."""
        return self._identities.get(identity_id)

    def identities(self) -> list[Identity]:
        """Every identity ever added, in order of addition."""
        return list(self._identities.values())

    def identity_by_key(self, public_key: bytes) -> Identity | None:
        """The identity that owns (or owned) ``public_key``, seen through that key.

        The result's ``status`` is ``active`` only if the key is the identity's current key and
        the identity is not revoked; a former key reads ``rotated``.
        """
        owner = self._key_owner.get(bytes(public_key))
        if owner is None:
            return None
        ident = self._identities[owner]
        if ident.public_key == public_key:
            return ident
        status = REVOKED if ident.status == REVOKED else ROTATED
        return replace(ident, public_key=bytes(public_key), status=status)

    def key_known(self, public_key: bytes) -> bool:
        """Whether ``public_key`` was ever used by an identity or a node (never reusable)."""
        key = bytes(public_key)
        return key in self._key_owner or key in self._used_node_keys

    def id_used(self, any_id: str) -> bool:
        """Whether an identity or node ever had this id (ids are never reused)."""
        return any_id in self._used_ids

    def node(self, node_id: str) -> NodeSpec | None:
        """The current member node with this id, or None (removed or never added)."""
        return self._nodes.get(node_id)

    def nodes(self) -> list[NodeSpec]:
        """Current member nodes, voters and learners, in order of addition."""
        return list(self._nodes.values())

    def voters(self) -> list[NodeSpec]:
        """Current voters in order of addition (genesis file order first)."""
        return [n for n in self._nodes.values() if n.role == "voter"]

    def voting_courts(self) -> list[str]:
        """The distinct courts that run a voter, sorted (their admins approve changes)."""
        return sorted({n.court for n in self._nodes.values() if n.role == "voter"})

    def admins_of(self, court: str) -> list[Identity]:
        """The active identities with the ``admin`` role in ``court``."""
        return [
            i for i in self._identities.values() if i.court == court and i.active and i.is_admin
        ]

    def courts(self) -> list[str]:
        """Every court that has an identity or a node, sorted."""
        return sorted(self._onboarded)

    def onboarded_at(self, court: str) -> int | None:
        """Time (ms) of the block holding the court's first identity or node, or genesis time."""
        return self._onboarded.get(court)

    def kinds_of(self, identity: Identity) -> set[str]:
        """The entry kinds the identity's roles allow (per the genesis ``[roles]`` table)."""
        kinds: set[str] = set()
        for role in identity.roles:
            kinds.update(self.roles.get(role, ()))
        return kinds

    def quorum_size(self, rule: str | None = None) -> int:
        """Signatures needed from current voters: ``majority`` ⌊n/2⌋+1, ``two_thirds`` ⌊2n/3⌋+1.

        ``rule`` defaults to the genesis ``params.receipt_quorum``.
        """
        return quorum_size(len(self.voters()), rule or self.params.receipt_quorum)

    def court_majority(self) -> int:
        """How many voting courts make a majority for approvals (⌊n/2⌋+1)."""
        return len(self.voting_courts()) // 2 + 1


def quorum_size(n: int, rule: str) -> int:
    """The quorum of ``n`` voters under ``rule`` (DESIGN §2 ``receipt_quorum``)."""
    if rule == "majority":
        return n // 2 + 1
    if rule == "two_thirds":
        return (2 * n) // 3 + 1
    raise ValueError(f"unknown quorum rule {rule!r}")


__all__ = [
    "ACTIVE",
    "REVOKED",
    "ROTATED",
    "ConsortiumState",
    "Identity",
    "MembershipChange",
    "quorum_size",
]
