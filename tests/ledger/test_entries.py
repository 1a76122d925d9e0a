"""Entries: validity (consensus-critical) and admission (node-side), kept apart (DESIGN §2)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.consortium import ConsortiumState
from ledger.crypto import H, sha256
from ledger.encoding import canonical
from ledger.entries import (
    VerifiedSignatures,
    admit,
    check_entry,
    decode_envelope,
    entry_id,
    envelope_from_json,
    envelope_to_json,
    make_payload,
    new_nonce,
    sign_approval,
    sign_entry,
)
from ledger.errors import AdmissionError, EncodingError, ValidityError
from ledger.genesis import pem_certificate_der

T = 1_767_225_600_000 + 10_000  # a block time shortly after genesis


def check(world: Any, state: ConsortiumState, env: dict[str, Any], **kw: Any) -> bytes:
    args: dict[str, Any] = {"block_time": T, "height": state.height + 1, "index": 0}
    args.update(kw)
    return check_entry(state, world.chain_id, env, **args)


def refused(world: Any, state: ConsortiumState, env: dict[str, Any], needle: str, **kw: Any):
    with pytest.raises(ValidityError) as err:
        check(world, state, env, **kw)
    assert needle in err.value.detail, err.value.detail
    return err.value


@pytest.fixture
def state(world: Any) -> ConsortiumState:
    return ConsortiumState.from_genesis(world.genesis)


# ------------------------------------------------------------------------------- the basics


def test_valid_document(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    eid = check(world, state, env)
    assert eid == entry_id("sha256", env["payload"]) == H("sha256", canonical(env["payload"]))


def test_valid_on_sm3_chain(sm3_world: Any, sm3_genesis: Any) -> None:
    state = ConsortiumState.from_genesis(sm3_genesis)
    env = sm3_world.document()
    eid = check(sm3_world, state, env)
    assert eid == H("sm3", canonical(env["payload"]))


def test_make_payload_shape(h: SimpleNamespace) -> None:
    pk = h.key("clerk-0").public_key()
    p = make_payload("document", "吉0102", pk, {"x": 1}, 5)
    assert set(p) == {"v", "kind", "court", "time", "nonce", "signer", "body"}
    assert len(p["nonce"]) == 16 and p["v"] == 1
    assert "case" in make_payload("document", "吉0102", pk, {}, 5, case="（2026）吉0102执1号")
    assert new_nonce() != new_nonce()


def test_error_locates_height_and_index(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    env["sig"] = bytes(64)
    err = refused(world, state, env, "signature", height=7, index=3)
    assert (err.height, err.index) == (7, 3)
    assert "height 7, entry 3" in err.diagnostics()


# ------------------------------------------------------------------------ signature refusals


def test_wrong_signature(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    sig = bytearray(env["sig"])
    sig[5] ^= 1
    env["sig"] = bytes(sig)
    refused(world, state, env, "entry signature")


def test_payload_changed_after_signing(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    env["payload"]["body"]["size"] += 1
    refused(world, state, env, "entry signature")


def test_verified_signatures_spare_a_second_check_and_nothing_else(
    world: Any, state: ConsortiumState
) -> None:
    """Admission, then apply: the second check finds the signature verified already; a
    different signature for the same payload, or the same one refused before, is checked."""
    seen = VerifiedSignatures()
    env = world.document()
    eid = check(world, state, env, verified=seen)
    assert len(seen) == 1 and seen.hits == 0
    assert check(world, state, env, verified=seen) == eid
    assert seen.hits == 1
    # Same payload (same entry id), a forged signature: never taken from the set.
    forged = dict(env, sig=bytes(64))
    refused(world, state, forged, "entry signature", verified=seen)
    refused(world, state, forged, "entry signature", verified=seen)
    assert len(seen) == 1 and seen.hits == 1
    # A refusal for another reason than the signature records nothing either.
    late = world.document()
    refused(world, state, late, "max_future_ms", block_time=late["payload"]["time"] - 10**7,
            verified=seen)
    assert len(seen) == 1


def test_verified_signatures_forget_the_oldest_beyond_capacity(
    world: Any, state: ConsortiumState
) -> None:
    seen = VerifiedSignatures(capacity=2)
    envs = [world.document() for _ in range(3)]
    ids = [check(world, state, e, verified=seen) for e in envs]
    assert len(seen) == 2
    assert not seen.seen(ids[0], envs[0]["sig"]) and seen.seen(ids[2], envs[2]["sig"])
    # A forgotten signature is verified again, with the same outcome.
    assert check(world, state, envs[0], verified=seen) == ids[0]


def test_signature_for_another_chain(world: Any, state: ConsortiumState) -> None:
    env = world.document(chain_id=H("sha256", b"another chain"))
    refused(world, state, env, "entry signature")


def test_signature_by_another_key(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    env = world.document()
    payload = dict(env["payload"])
    env2 = sign_entry(h.key("clerk-1"), world.chain_id, payload)  # signer field says clerk-0
    refused(world, state, env2, "entry signature")


# ------------------------------------------------------------------- signer, role and court


def test_signer_without_the_role(world: Any, state: ConsortiumState) -> None:
    env = world.entry("clerk-0", "event", {"type": "CASE_CLOSED"})
    refused(world, state, env, "may not sign event")
    env = world.entry("officer-0", "report", {})
    refused(world, state, env, "may not sign report")


def test_signer_of_another_court(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    env = world.document("clerk-0", court=h.COURTS[1])
    refused(world, state, env, "not the signer's court")


def test_unknown_signer(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    stranger = h.key("stranger")
    payload = make_payload("document", h.COURTS[0], stranger.public_key(), {}, T)
    refused(world, state, sign_entry(stranger, world.chain_id, payload), "is not an identity")


def test_node_key_cannot_sign_entries(world: Any, h: SimpleNamespace, state: ConsortiumState):
    node = h.key("node-a")
    payload = make_payload("document", h.COURTS[0], node.public_key(), {}, T)
    refused(world, state, sign_entry(node, world.chain_id, payload), "is not an identity")


# --------------------------------------------------------------------------- shape refusals


def test_unknown_kind(world: Any, state: ConsortiumState) -> None:
    refused(world, state, world.entry("clerk-0", "gossip", {}), "unknown kind")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda p: p.update(v=2), "version"),
        (lambda p: p.update(extra=1), "unknown field"),
        (lambda p: p.pop("nonce"), "lacks required"),
        (lambda p: p.update(nonce=b"short"), "nonce"),
        (lambda p: p.update(time=-1), "time"),
        (lambda p: p.update(time=True), "time"),
        (lambda p: p.update(body=[1]), "body must be a map"),
        (lambda p: p.update(case=""), "case"),
        (lambda p: p.update(court=""), "court"),
        (lambda p: p.update(signer=b"x" * 31), "signer"),
    ],
)
def test_malformed_payload(
    world: Any, h: SimpleNamespace, state: ConsortiumState, mutate: Any, needle: str
) -> None:
    env = world.document()
    payload = dict(env["payload"])
    mutate(payload)
    env = sign_entry(h.key("clerk-0"), world.chain_id, payload)
    refused(world, state, env, needle)


def test_malformed_envelope(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    refused(world, state, {**env, "x": 1}, "exactly the keys")
    refused(world, state, {**env, "sig": b"x"}, "sig must be 64")
    refused(world, state, {"payload": env["payload"], "sig": None}, "sig must be 64")
    unencodable = {**env["payload"], "body": {"x": 1.5}}
    refused(world, state, {"payload": unencodable, "sig": env["sig"]}, "not encodable")


def test_encode_envelope_is_canonical(world: Any) -> None:
    from ledger.entries import encode_envelope

    env = world.document()
    assert encode_envelope(env) == canonical(env)
    odd = {"payload": env["payload"], "sig": b"short"}
    assert encode_envelope(odd) == canonical(odd)


def test_oversize_body(h: SimpleNamespace) -> None:
    from ledger.genesis import Params

    w = h.World(h.make_test_genesis(params=Params(max_entry_bytes=2048)))
    st = ConsortiumState.from_genesis(w.genesis)
    ok = w.entry("clerk-0", "document", {"title": "x" * 1500})
    check(w, st, ok)
    big = w.entry("clerk-0", "document", {"title": "x" * 2000})
    refused(w, st, big, "exceeds max_entry_bytes 2048")
    with pytest.raises(EncodingError, match="max_entry_bytes"):
        decode_envelope(canonical(big), w.genesis.params)


def test_already_in_chain(world: Any, state: ConsortiumState) -> None:
    env = world.document()
    eid = check(world, state, env)
    refused(world, state, env, "already in the chain", is_known={eid}.__contains__)


def test_time_bound_by_block_time(world: Any, state: ConsortiumState) -> None:
    future = world.genesis.params.max_future_ms
    check(world, state, world.document(time=T + future))
    refused(world, state, world.document(time=T + future + 1), "max_future_ms")


# --------------------------------------------------------------------- identities over time


def _apply(state: ConsortiumState, *envs: dict[str, Any], time: int = T) -> ConsortiumState:
    return state.apply_payloads(state.height + 1, time, [e["payload"] for e in envs])


def test_revoked_key_valid_before_refused_after(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    clerk = h.key("clerk-0").public_key()
    revoke = world.entry(
        "admin-0",
        "identity",
        {
            "op": "revoke",
            "id": "clerk-0",
            "court": h.COURTS[0],
            "public_key": clerk,
            "compromised_since": T - 5,
        },
    )
    check(world, state, revoke)
    doc_same_block = world.document("clerk-0")
    check(world, state, doc_same_block)  # takes effect from the NEXT block
    after = _apply(state, revoke)
    refused(world, after, world.document("clerk-0"), "signed with a revoked key")
    assert after.identity("clerk-0").compromised_since == T - 5  # type: ignore[union-attr]
    assert state.identity("clerk-0").active  # type: ignore[union-attr]  # old state unchanged
    # A revoked identity cannot be revoked or rotated again.
    again = world.entry(
        "admin-0",
        "identity",
        {"op": "revoke", "id": "clerk-0", "court": h.COURTS[0], "public_key": clerk},
    )
    refused(world, after, again, "is revoked")


def test_rotated_key_valid_before_refused_after(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    old, new = h.key("officer-1"), h.key("officer-1-v2")
    rotate = world.entry(
        "admin-1",
        "identity",
        {
            "op": "rotate",
            "id": "officer-1",
            "court": h.COURTS[1],
            "public_key": old.public_key(),
            "new_public_key": new.public_key(),
        },
    )
    check(world, state, rotate)
    check(world, state, world.entry("officer-1", "evidence", {"sha256": bytes(32)}))
    after = _apply(state, rotate)
    refused(
        world,
        after,
        world.entry("officer-1", "evidence", {"sha256": bytes(32)}),
        "signed with a rotated key",
    )
    payload = make_payload("evidence", h.COURTS[1], new.public_key(), {"n": 1}, T)
    check(world, after, sign_entry(new, world.chain_id, payload))
    seen = after.identity_by_key(old.public_key())
    assert seen is not None and seen.id == "officer-1" and seen.status == "rotated"
    # The old key can never come back: not for this identity, not for another.
    back = world.entry(
        "admin-1",
        "identity",
        {
            "op": "add",
            "id": "officer-9",
            "court": h.COURTS[1],
            "roles": ["officer"],
            "public_key": old.public_key(),
        },
    )
    refused(world, after, back, "never reused")


def test_identity_add_rules(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    def add(signer: str, ident: str, court: str, roles: list[str], key: str) -> dict[str, Any]:
        return world.entry(
            signer,
            "identity",
            {
                "op": "add",
                "id": ident,
                "court": court,
                "roles": roles,
                "public_key": h.key(key).public_key(),
            },
        )

    ok = add("admin-0", "clerk-9", h.COURTS[0], ["clerk"], "clerk-9")
    check(world, state, ok)
    refused(
        world,
        state,
        add("admin-1", "clerk-9", h.COURTS[0], ["clerk"], "clerk-9"),
        "signed by admin-1 of",
    )
    refused(world, state, add("admin-0", "clerk-0", h.COURTS[0], ["clerk"], "x"), "never reused")
    refused(world, state, add("admin-0", "node-a", h.COURTS[0], ["clerk"], "x"), "never reused")
    refused(world, state, add("admin-0", "x-1", h.COURTS[0], ["clerk"], "clerk-1"), "never reused")
    refused(world, state, add("admin-0", "x-1", h.COURTS[0], ["pope"], "x"), "not in the genesis")
    refused(world, state, add("clerk-0", "x-1", h.COURTS[0], ["clerk"], "x"), "may not sign")
    after = _apply(state, ok)
    assert after.identity("clerk-9") is not None and state.identity("clerk-9") is None


def test_identity_body_refusals(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    base = {
        "op": "rotate",
        "id": "clerk-0",
        "court": h.COURTS[0],
        "public_key": h.key("clerk-0").public_key(),
        "new_public_key": h.key("c0b").public_key(),
    }
    check(world, state, world.entry("admin-0", "identity", base))
    for change, needle in [
        ({"op": "merge"}, "identity op"),
        ({"extra": 1}, "unknown field"),
        ({"public_key": h.key("clerk-1").public_key()}, "current key"),
        ({"court": h.COURTS[1]}, "belongs to"),
        ({"id": "nobody"}, "does not exist"),
        ({"roles": ["judge"]}, "roles differ"),
        ({"new_public_key": h.key("clerk-1").public_key()}, "never reused"),
    ]:
        refused(world, state, world.entry("admin-0", "identity", {**base, **change}), needle)


# --------------------------------------------------------------- membership and approvals


def _learner_body(h: SimpleNamespace, court: str = "沪01", **extra: Any) -> dict[str, Any]:
    pem = h.fake_pem("node-d")
    return {
        "op": "add_learner",
        "id": "node-d",
        "court": court,
        "public_key": h.key("node-d").public_key(),
        "tls_certificate": pem,
        "tls_fingerprint": sha256(pem_certificate_der(pem)),
        "raft_addr": "127.0.0.1:7003",
        **extra,
    }


def _approve(world: Any, h: SimpleNamespace, body: dict[str, Any], *admins: str):
    return {**body, "approvals": [sign_approval(h.key(a), a, world.chain_id, body) for a in admins]}


def test_membership_needs_majority_of_court_approvals(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    body = _learner_body(h)
    refused(world, state, world.entry("admin-0", "membership", body), "needs approvals")
    one = _approve(world, h, body, "admin-0")
    refused(
        world,
        state,
        world.entry("admin-0", "membership", one),
        "approved by admins of 1 of 3 voting courts; a majority needs 2",
    )
    two = _approve(world, h, body, "admin-0", "admin-2")
    check(world, state, world.entry("admin-0", "membership", two))
    after = _apply(state, world.entry("admin-0", "membership", two))
    node = after.node("node-d")
    assert node is not None and node.role == "learner"
    assert after.voting_courts() == state.voting_courts()  # learners do not vote


def test_membership_approval_refusals(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    body = _learner_body(h)
    cases = [
        (_approve(world, h, body, "admin-0", "clerk-1"), "clerk-1 is not an admin"),
        (_approve(world, h, body, "admin-0", "admin-0"), "approves twice"),
        (
            {
                **body,
                "approvals": [
                    sign_approval(h.key("admin-0"), "admin-0", world.chain_id, body),
                    sign_approval(
                        h.key("admin-1"),
                        "admin-1",
                        world.chain_id,
                        {**body, "raft_addr": "elsewhere"},
                    ),
                ],
            },
            "approval 1 by admin-1: signature does not verify",
        ),
        (
            {
                **body,
                "approvals": [
                    sign_approval(h.key("admin-0"), "admin-0", world.chain_id, body),
                    sign_approval(h.key("admin-1"), "admin-1", H("sha256", b"x"), body),
                ],
            },
            "signature does not verify",
        ),
        ({**body, "approvals": [{"identity": "ghost", "sig": bytes(64)}]}, "no identity"),
        ({**body, "approvals": [{"identity": "admin-0"}]}, "must be a map"),
    ]
    for b, needle in cases:
        refused(world, state, world.entry("admin-0", "membership", b), needle)


def test_membership_op_rules(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    def m(body: dict[str, Any]) -> dict[str, Any]:
        return world.entry("admin-0", "membership", _approve(world, h, body, "admin-0", "admin-1"))

    c0 = h.COURTS[0]
    refused(world, state, m({"op": "promote", "id": "node-a", "court": c0}), "already a voter")
    refused(world, state, m({"op": "promote", "id": "node-x", "court": c0}), "not a member")
    refused(world, state, m({"op": "remove", "id": "node-b", "court": c0}), "belongs to")
    check(world, state, m({"op": "remove", "id": "node-a", "court": c0}))
    refused(world, state, m(_learner_body(h, id="node-a")), "never reused")
    bad_fp = {**_learner_body(h), "tls_fingerprint": bytes(32)}
    refused(world, state, m(bad_fp), "tls_fingerprint is not")
    refused(world, state, m({**_learner_body(h), "x": 1}), "unknown field")
    # A new court's first admin travels with its node.
    admin = {"id": "admin-sh", "roles": ["admin"], "public_key": h.key("admin-sh").public_key()}
    env = m(_learner_body(h, admin=admin))
    check(world, state, env)
    after = _apply(state, env)
    assert [a.id for a in after.admins_of("沪01")] == ["admin-sh"]
    refused(world, state, m(_learner_body(h, court=c0, admin=admin)), "already has an admin")
    # update_keys replaces a node key and certificate (the only way to, DESIGN §2).
    pem = h.fake_pem("node-a-2")
    upd = m(
        {
            "op": "update_keys",
            "id": "node-a",
            "court": c0,
            "public_key": h.key("node-a-2").public_key(),
            "tls_certificate": pem,
            "tls_fingerprint": sha256(pem_certificate_der(pem)),
        }
    )
    check(world, state, upd)
    assert _apply(state, upd).node("node-a").public_key == h.key("node-a-2").public_key()  # type: ignore[union-attr]


def test_membership_promote_changes_voters_next_block(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    def m(st: ConsortiumState, body: dict[str, Any], *admins: str) -> dict[str, Any]:
        return world.entry("admin-0", "membership", _approve(world, h, body, *admins))

    s1 = _apply(state, m(state, _learner_body(h), "admin-0", "admin-1"))
    s2 = _apply(s1, m(s1, {"op": "promote", "id": "node-d", "court": "沪01"}, "admin-0", "admin-1"))
    assert [n.id for n in s2.voters()] == ["node-a", "node-b", "node-c", "node-d"]
    assert s2.voting_courts() == sorted([*h.COURTS, "沪01"])
    assert s2.court_majority() == 3 and s2.quorum_size("majority") == 3
    assert s2.quorum_size("two_thirds") == 3 and state.quorum_size("two_thirds") == 3
    body = {"op": "remove", "id": "node-b", "court": h.COURTS[1]}
    refused(world, s2, m(s2, body, "admin-0", "admin-1"), "approved by admins of 2 of 4")


def test_identity_for_court_without_admin_needs_approvals(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    body = {
        "op": "add",
        "id": "admin-new",
        "court": "沪02",
        "roles": ["admin"],
        "public_key": h.key("admin-new").public_key(),
    }
    refused(world, state, world.entry("admin-0", "identity", body), "which has no admin")
    check(
        world,
        state,
        world.entry("admin-0", "identity", _approve(world, h, body, "admin-1", "admin-2")),
    )


def test_rotating_an_admin_needs_approvals(
    world: Any, h: SimpleNamespace, state: ConsortiumState
) -> None:
    body = {
        "op": "rotate",
        "id": "admin-0",
        "court": h.COURTS[0],
        "public_key": h.key("admin-0").public_key(),
        "new_public_key": h.key("admin-0b").public_key(),
    }
    refused(world, state, world.entry("admin-0", "identity", body), "of admin admin-0")
    check(
        world,
        state,
        world.entry("admin-0", "identity", _approve(world, h, body, "admin-0", "admin-1")),
    )


# ----------------------------------------------------------------------------------- reports


def _report(**over: Any) -> dict[str, Any]:
    body = {
        "height": 0,
        "now": T,
        "ruleset": "ab" * 32,
        "calendar": "chinesecalendar==1.9.0",
        "findings": "cd" * 32,
        "count": 3,
    }
    body.update(over)
    return body


def test_report_body(world: Any, state: ConsortiumState) -> None:
    check(world, state, world.entry("inspector-0", "report", _report()))
    for over, needle in [
        ({"height": 1}, "not before its own block"),
        ({"ruleset": b"\x00" * 32}, "64-digit lowercase hex"),
        ({"findings": "AB" * 32}, "64-digit lowercase hex"),
        ({"calendar": "chinesecalendar"}, "calendar"),
        ({"count": -1}, "non-negative"),
        ({"extra": 1}, "exactly the keys"),
    ]:
        refused(world, state, world.entry("inspector-0", "report", _report(**over)), needle)


# ---------------------------------------------------------------------------------- admission


def test_admission_refuses_non_normalised_case_but_validity_does_not(
    world: Any, state: ConsortiumState
) -> None:
    env = world.entry("clerk-0", "document", _doc_body(), case="(2026)吉0102执1号")
    check(world, state, env)  # valid: the form of a 案号 is admission's business
    with pytest.raises(AdmissionError, match="not normalised"):
        admit(env, state=state, chain_id=world.chain_id, now_ms=T)


def _doc_body(**over: Any) -> dict[str, Any]:
    body = {
        "doc_type": "执行通知书",
        "doc_no": "（2026）吉0102执1号之一",
        "sha256": sha256(b"d"),
        "size": 10,
        "media_type": "application/pdf",
    }
    body.update(over)
    return body


def test_admission(world: Any, state: ConsortiumState) -> None:
    good = world.entry("clerk-0", "document", _doc_body(), case="（2026）吉0102执1号")
    assert admit(good, state=state, chain_id=world.chain_id, now_ms=T) == entry_id(
        "sha256", good["payload"]
    )
    for body, needle in [
        (_doc_body(doc_no="（2026） 吉0102执1号"), "not normalised"),
        (_doc_body(sha256=b"x"), "sha256"),
        (_doc_body(size=-1), "size"),
        ({k: v for k, v in _doc_body().items() if k != "media_type"}, "media_type"),
    ]:
        with pytest.raises(AdmissionError, match=needle):
            admit(
                world.entry("clerk-0", "document", body),
                state=state,
                chain_id=world.chain_id,
                now_ms=T,
            )
    skew = world.genesis.params.max_clock_skew_ms
    late = world.entry("clerk-0", "document", _doc_body(), time=T + skew + 1)
    with pytest.raises(AdmissionError, match="ahead of this node's clock"):
        admit(late, state=state, chain_id=world.chain_id, now_ms=T)
    # Validity failures still surface as ValidityError from admit.
    with pytest.raises(ValidityError, match="may not sign"):
        admit(
            world.entry("clerk-0", "event", _event()),
            state=state,
            chain_id=world.chain_id,
            now_ms=T,
        )


def _event(**over: Any) -> dict[str, Any]:
    body = {
        "type": "CASE_CLOSED",
        "occurred_at": T - 1000,
        "actor": {"officer_id": "o-1", "role": "officer"},
        "fields": {"doc_no": "（2026）吉0102执1号", "mode": "终本"},
    }
    body.update(over)
    return body


def test_admission_of_events_and_evidence(world: Any, state: ConsortiumState) -> None:
    admit(
        world.entry("officer-0", "event", _event()), state=state, chain_id=world.chain_id, now_ms=T
    )
    with pytest.raises(AdmissionError):
        admit(
            world.entry("officer-0", "event", _event(fields={"doc_no": 5})),
            state=state,
            chain_id=world.chain_id,
            now_ms=T,
        )
    with pytest.raises(AdmissionError, match="an hour"):
        admit(
            world.entry("officer-0", "event", _event(occurred_at=T + 3_600_001)),
            state=state,
            chain_id=world.chain_id,
            now_ms=T,
        )
    ev = {
        "sha256": sha256(b"photo"),
        "media_type": "image/jpeg",
        "size": 5,
        "captured_at": T - 5,
        "location": {"lat_e6": 43_800_000, "lon_e6": 125_300_000},
        "device": "cam-1",
        "officers": ["o-1", "o-2"],
    }
    admit(world.entry("officer-0", "evidence", ev), state=state, chain_id=world.chain_id, now_ms=T)
    with pytest.raises(AdmissionError, match="location"):
        admit(
            world.entry("officer-0", "evidence", {**ev, "location": {"lat": 1}}),
            state=state,
            chain_id=world.chain_id,
            now_ms=T,
        )


# --------------------------------------------------------------------------------------- JSON


def test_json_round_trip(world: Any, h: SimpleNamespace) -> None:
    envs = [
        world.document(),
        world.entry(
            "officer-0",
            "event",
            {**_event(), "doc_refs": [sha256(b"a")], "evidence_refs": [], "links": [bytes(32)]},
        ),
        world.entry(
            "admin-0",
            "membership",
            _approve(
                world,
                h,
                _learner_body(h, admin={"id": "a", "roles": ["admin"], "public_key": bytes(32)}),
                "admin-0",
            ),
        ),
    ]
    for env in envs:
        as_json = json.loads(json.dumps(envelope_to_json(env)))
        assert envelope_from_json(as_json) == env
        assert canonical(envelope_from_json(as_json)) == canonical(env)
    j = envelope_to_json(envs[0])
    assert j["payload"]["body"]["sha256"] == sha256(b"document 0").hex()
    assert isinstance(j["payload"]["body"]["doc_no"], str)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda j: j["payload"].update(nonce="AB" * 16), "payload.nonce"),
        (lambda j: j["payload"].update(signer=5), "payload.signer"),
        (lambda j: j["payload"]["body"].update(size=1.5), "float"),
        (lambda j: j["payload"]["body"].update(title=None), "null"),
        (lambda j: j["payload"]["body"].update(sha256="zz"), "payload.body.sha256"),
        (lambda j: j["payload"]["body"].update(doc_refs="00"), "list of hex"),
        (lambda j: j.update(extra=1), "an entry is"),
        (lambda j: j.update(sig="0"), "sig must be lowercase hex"),
    ],
)
def test_json_refusals(world: Any, mutate: Any, needle: str) -> None:
    j = envelope_to_json(world.document())
    mutate(j)
    with pytest.raises(AdmissionError) as err:
        envelope_from_json(j)
    assert needle in err.value.detail


def test_json_refuses_bytes_outside_the_table(world: Any) -> None:
    env = world.entry("clerk-0", "document", {"title": b"bytes"})
    with pytest.raises(AdmissionError, match="payload.body.title is bytes"):
        envelope_to_json(env)


def test_decode_envelope(world: Any) -> None:
    env = world.document()
    assert decode_envelope(canonical(env), world.genesis.params) == env
    with pytest.raises(EncodingError):
        decode_envelope(canonical(env) + b"\x00", world.genesis.params)
    with pytest.raises(ValidityError, match="envelope"):
        decode_envelope(canonical({"payload": {}}), world.genesis.params)


# ------------------------------------------------------------------------ consortium state


def test_consortium_queries(world: Any, h: SimpleNamespace, state: ConsortiumState) -> None:
    assert [n.id for n in state.voters()] == list(h.NODE_NAMES)
    assert state.voting_courts() == sorted(h.COURTS)
    assert [a.id for a in state.admins_of(h.COURTS[0])] == ["admin-0"]
    assert state.admins_of("沪01") == []
    node = state.node("node-b")
    assert node is not None and node.court == h.COURTS[1]
    assert state.node("node-z") is None
    ident = state.identity_by_key(h.key("officer-2").public_key())
    assert ident is not None and ident.id == "officer-2" and ident.active
    assert state.kinds_of(ident) == {"document", "event", "evidence"}
    assert state.identity_by_key(h.key("node-a").public_key()) is None
    assert state.key_known(h.key("node-a").public_key())
    assert state.id_used("node-a") and state.id_used("clerk-1") and not state.id_used("x")
    assert state.onboarded_at(h.COURTS[2]) == world.genesis.genesis_time
    assert state.height == 0


@pytest.mark.parametrize(
    "n,majority,two_thirds", [(1, 1, 1), (2, 2, 2), (3, 2, 3), (4, 3, 3), (5, 3, 4), (7, 4, 5)]
)
def test_quorum_sizes(n: int, majority: int, two_thirds: int) -> None:
    from ledger.consortium import quorum_size

    assert quorum_size(n, "majority") == majority
    assert quorum_size(n, "two_thirds") == two_thirds  # ⌊2n/3⌋ + 1
    with pytest.raises(ValueError):
        quorum_size(n, "all")


def test_apply_never_mutates(world: Any, state: ConsortiumState) -> None:
    same = state.apply_payloads(1, T, [world.document()["payload"]])
    assert same.height == 1 and state.height == 0
    assert same.identities() == state.identities()


# ------------------------------------------------------------------------------------ fuzzing

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=5),
    st.binary(max_size=40),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    if isinstance(obj, dict):
        return {**obj, path[0]: _replace(obj[path[0]], path[1:], value)}
    copy = list(obj)
    copy[path[0]] = _replace(copy[path[0]], path[1:], value)
    return copy


def _samples(world: Any, h: SimpleNamespace) -> list[dict[str, Any]]:
    learner = _approve(
        world,
        h,
        _learner_body(
            h,
            admin={
                "id": "admin-sh",
                "roles": ["admin"],
                "public_key": h.key("admin-sh").public_key(),
            },
        ),
        "admin-0",
        "admin-1",
    )
    return [
        world.document(),
        world.entry("admin-0", "membership", learner),
        world.entry(
            "admin-0",
            "identity",
            {
                "op": "rotate",
                "id": "clerk-0",
                "court": h.COURTS[0],
                "roles": ["clerk"],
                "public_key": h.key("clerk-0").public_key(),
                "new_public_key": h.key("c0b").public_key(),
            },
        ),
        world.entry(
            "admin-0",
            "identity",
            {
                "op": "revoke",
                "id": "admin-0",
                "court": h.COURTS[0],
                "public_key": h.key("admin-0").public_key(),
                "compromised_since": 5,
                "approvals": [{"identity": "admin-1", "sig": bytes(64)}],
            },
        ),
        world.entry("inspector-0", "report", _report()),
    ]


_JUNK_VALUES: list[Any] = [True, -1, 2**64 - 1, "", "x", b"", b"x" * 32, [], [1], {}, {"a": 1}]


def test_every_payload_field_replaced_by_junk(world: Any, h: SimpleNamespace) -> None:
    # Whatever a hostile proposer puts in a block, validity answers with a ValidityError (or
    # accepts): never a raw TypeError or KeyError that would crash every node's apply. Every
    # field at every depth of a sample of each interpreted kind is replaced by each junk
    # value, and the payload signed again so that the checks behind the signature see it.
    state = ConsortiumState.from_genesis(world.genesis)
    keys = {h.key(n).public_key(): h.key(n) for n in ("clerk-0", "admin-0", "inspector-0")}
    checked = 0
    for env in _samples(world, h):
        signer = keys[env["payload"]["signer"]]
        for path in _paths(env["payload"]):
            if path[:1] == ("signer",) or not path:
                continue
            for junk in _JUNK_VALUES:
                payload = _replace(env["payload"], path, junk)
                mutated = sign_entry(signer, world.chain_id, payload)
                try:
                    check(world, state, mutated)
                except ValidityError:
                    pass
                checked += 1
    assert checked > 500


@settings(
    max_examples=150,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_envelopes_only_raise_validity_errors(
    world: Any, h: SimpleNamespace, data: st.DataObject
) -> None:
    state = ConsortiumState.from_genesis(world.genesis)
    env = data.draw(st.sampled_from(_samples(world, h)))
    path = data.draw(st.sampled_from(_paths(env)))
    mutated = _replace(env, path, data.draw(_junk))
    try:
        check(world, state, mutated)
    except ValidityError:
        pass
